"""Input scale factor (cellpose-style "diameter" rescaling): resampling helpers, upsampled
training samples that stay aligned with their labels, and checkpoints whose ``meta["scale"]``
makes ``segment`` work at that scale and hand back labels of the movie's own shape."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from napari_cellnet.segmentation import preprocessing as pp
from napari_cellnet.segmentation import windows
from napari_cellnet.segmentation.data import as_movie_list, extract_windows

torch = pytest.importorskip("torch")

from test_inference import T1, save_tiny, tiny_net  # noqa: E402

from napari_cellnet.core.jobs import run_job  # noqa: E402
from napari_cellnet.models.checkpoint import load_checkpoint  # noqa: E402
from napari_cellnet.segmentation.inference import segment  # noqa: E402
from napari_cellnet.segmentation.predict import predict_windows  # noqa: E402
from napari_cellnet.segmentation.training import TrainSegParams, train_segmentation  # noqa: E402

# ----------------------------------------------------------------------------- resampling


def test_label_upsampling_replicates_blocks_and_round_trips():
    lab = np.array([[0, 1, 2], [3, 4, 5]], np.uint16)
    up = pp.resize_labels(lab, (4, 6))
    assert up.dtype == np.int32
    np.testing.assert_array_equal(up, [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2],
                                       [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]])
    np.testing.assert_array_equal(pp.resize_labels(up, (2, 3)), lab)
    up3 = pp.resize_labels(lab, (6, 9))
    assert np.array_equal(up3[::3, ::3], lab) and np.array_equal(up3[2::3, 2::3], lab)
    with pytest.raises(ValueError, match=r"one \(Y, X\) label frame"):
        pp.resize_labels(lab[None], (4, 6))


def test_probability_downsampling_is_the_block_mean_and_upsampling_is_centre_aligned():
    p = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    down = pp.resize_image(p, (2, 2))
    np.testing.assert_array_equal(down, [[[2.5, 4.5], [10.5, 12.5]]])  # (0+1+4+5)/4 ...
    # bilinear 2x upsampling of a ramp puts output pixel centres at (i + 0.5) / 2 - 0.5 input pixels
    ramp = np.tile(np.arange(4, dtype=np.float32), (3, 1))
    up = pp.resize_image(ramp, (6, 8))
    np.testing.assert_allclose(up[0, 1:7], [0.25, 0.75, 1.25, 1.75, 2.25, 2.75], atol=1e-6)
    assert up[0, 0] == 0.0 and up[0, 7] == 3.0  # edge mode: no extrapolation
    np.testing.assert_allclose(pp.resize_image(up, (3, 4))[:, 1:3], ramp[:, 1:3], atol=1e-6)
    same = pp.resize_image(ramp, (3, 4))  # no resampling to the same grid: the pixels unchanged
    assert same.dtype == np.float32 and np.array_equal(same, ramp)
    assert pp.scaled_shape((3, 117, 234), 2.0) == (234, 468)
    assert pp.scaled_shape((10, 10), 1.5) == (15, 15)


@pytest.mark.parametrize("bad", [0, -1, 0.1, 9, float("nan"), "two"])
def test_bad_scale_is_refused_with_the_range(bad):
    with pytest.raises(ValueError, match="scale must be"):
        pp.check_scale(bad)


# ----------------------------------------------------------------------------- training samples


def test_upsampled_window_and_labels_stay_aligned():
    T, Y, X = 3, 30, 34
    img = np.zeros((T, Y, X), np.float32)
    lab = np.zeros((T, Y, X), np.uint16)
    rr, cc = disk((11, 20), 5, shape=(Y, X))
    img[:, rr, cc] = 1.0
    lab[1, rr, cc] = 7
    imgs, labs = as_movie_list(img, lab)
    (s1,), _ = extract_windows(imgs, labs, [(0, 1)], 3)
    (s2,), _ = extract_windows(imgs, labs, [(0, 1)], 3, scale=2.0)
    assert s1.native_labels is None and s1.movie_labels is s1.labels
    assert s2.window.shape == (3, 60, 68) and s2.labels.shape == (60, 68)
    np.testing.assert_array_equal(s2.native_labels, lab[1])
    np.testing.assert_array_equal(s2.labels, np.kron(lab[1], np.ones((2, 2), np.int32)))
    # the bright disk of the upsampled image sits exactly on the upsampled label
    win = s2.window[1]
    w = win / win.sum()
    yy, xx = np.mgrid[:60, :68]
    cy, cx = (w * yy).sum(), (w * xx).sum()
    ly, lx = np.argwhere(s2.labels == 7).mean(axis=0)
    assert abs(cy - ly) < 0.05 and abs(cx - lx) < 0.05
    assert abs(cy - (11 * 2 + 0.5)) < 0.05 and abs(cx - (20 * 2 + 0.5)) < 0.05


# ----------------------------------------------------------------------------- inference


@pytest.fixture(scope="module")
def small_movie():
    from napari_cellnet.datasets import c2c12

    return c2c12()[0][:4, :90, :100]


def test_checkpoint_with_scale_segments_to_the_movie_shape(small_movie, tmp_path):
    path = save_tiny(tmp_path / "s2.pt", scale=2.0)
    res = run_job(segment(small_movie, path, tile=None, **T1))
    assert res.labels.shape == small_movie.shape and res.probabilities.shape == small_movie.shape
    assert res.params["scale"] == 2.0
    # the same thing by hand: window, upsample, network, block mean back, 1 - P(background)
    net, _ = tiny_net()
    prep = pp.normalize_movie(small_movie.astype(np.float32))[:, None]
    win = windows.make_window(prep, 1, 3, "reflect")
    up = pp.resize_image(win, (180, 200))
    prob = predict_windows(net, up[None], "cpu")[0]
    back = pp.resize_image(prob, (90, 100))
    np.testing.assert_allclose(res.probabilities[1], 1.0 - back[0], atol=1e-4)
    # and it differs from running the same network at scale 1
    plain = run_job(segment(small_movie, path, tile=None, scale=1.0, **T1))
    assert plain.params["scale"] == 1.0 and np.abs(plain.probabilities - res.probabilities).max() > 0.05


def test_tiling_with_scale_matches_whole_frames(small_movie, tmp_path):
    path = save_tiny(tmp_path / "s2.pt", scale=2.0)
    whole = run_job(segment(small_movie, path, tile=None, **T1))
    tiled = run_job(segment(small_movie, path, tile=144, **T1))  # 180 x 200 at scale 2: 2 x 2 tiles
    assert tiled.params["tile"] == 144
    assert np.abs(tiled.probabilities - whole.probabilities).max() < 1e-4
    np.testing.assert_array_equal(tiled.labels, whole.labels)


def test_old_checkpoint_without_scale_means_one(small_movie, tmp_path):
    path = save_tiny(tmp_path / "old.pt")
    assert "scale" not in load_checkpoint(path, task="segmentation").meta
    res = run_job(segment(small_movie, path, tile=None, **T1))
    assert res.params["scale"] == 1.0
    with pytest.raises(ValueError, match="scale must be between"):
        run_job(segment(small_movie, path, scale=20, **T1))


# ----------------------------------------------------------------------------- training


def test_training_at_scale_stores_it_and_validates_on_the_movie_grid(tmp_path):
    from test_training import _movie, _params

    img, lab = _movie(Y=48, X=48)
    res = run_job(train_segmentation(img, lab, _params(epochs=1, scale=2.0, calibrate="validation"), tmp_path / "m"))
    ckpt = load_checkpoint(res.best_path, task="segmentation")
    assert ckpt.meta["scale"] == 2.0 and ckpt.meta["training"]["params"]["scale"] == 2.0
    assert 0.0 <= res.history[0]["seg"] <= 1.0 and res.calibration["frames"] == 1
    seg = run_job(segment(img, res.best_path, tile=None, **T1))
    assert seg.labels.shape == img.shape and seg.params["scale"] == 2.0
    with pytest.raises(ValueError, match="scale must be (between|>= 0.25)"):
        TrainSegParams(scale=0).validate()
    # resuming with another scale is refused (it is structural)
    with pytest.raises(ValueError, match="scale"):
        run_job(train_segmentation(img, lab, _params(epochs=2, scale=1.0), tmp_path / "m",
                                   resume=res.last_path))


# ----------------------------------------------------------------------------- command line


def test_cli_scale_flags(tmp_path, capsys):
    from napari_cellnet.cli.app import build_parser, main
    from napari_cellnet.cli.train_seg import build_params

    args = build_parser().parse_args(["train-seg", "--images", "m.tif", "--labels", "l.tif", "-o", "x", "--scale", "2"])
    assert build_params(args).scale == 2.0
    args = build_parser().parse_args(["train-seg", "--images", "m.tif", "--labels", "l.tif", "-o", "x"])
    assert build_params(args).scale == 1.0
    # segment --scale overrides the model's and a bad value is one actionable line
    import tifffile

    movie = (np.random.default_rng(0).random((3, 40, 40)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", movie, imagej=True, metadata={"axes": "TYX"})
    ck = save_tiny(tmp_path / "s.pt", scale=2.0)
    assert main(["segment", str(tmp_path / "m.tif"), "-m", str(ck), "-o", str(tmp_path / "o"), "--scale", "0.01",
                 "--device", "cpu", "--threads", "1", "-q"]) == 2
    assert "scale must be between" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "m.tif"), "-m", str(ck), "-o", str(tmp_path / "o"), "--device", "cpu",
                 "--threads", "1", "-q", "--tile", "0"]) == 0
    out = sorted(p.name for p in (tmp_path / "o").iterdir())
    labels = tifffile.imread(next((tmp_path / "o") / n for n in out if n.endswith("labels.tif")))
    assert labels.shape == movie.shape
