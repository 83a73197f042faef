"""segment() and predict_windows(): tiling equivalence, edge policies, stop, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_cellnet.core.jobs import STOP, Progress, run_job  # noqa: E402
from napari_cellnet.datasets import c2c12, demo_model_path  # noqa: E402
from napari_cellnet.models import build_model  # noqa: E402
from napari_cellnet.models.checkpoint import save_checkpoint  # noqa: E402
from napari_cellnet.segmentation import preprocessing as pp  # noqa: E402
from napari_cellnet.segmentation import windows  # noqa: E402
from napari_cellnet.segmentation.inference import segment  # noqa: E402
from napari_cellnet.segmentation.predict import predict_windows  # noqa: E402

T1 = {"threads": 1, "device": "cpu"}  # one thread: robust on a loaded 2-core machine


def tiny_net(window=3, in_channels=1, classes=3, seed=0):
    torch.manual_seed(seed)
    cfg = {"window": window, "in_channels": in_channels, "classes": classes, "depth": 3, "base_width": 8}
    net = build_model("temporal_unet", **cfg)
    # non-trivial batch-norm statistics, so eval mode is really exercised
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval(), cfg


def save_tiny(path, window=3, in_channels=1, classes=3, **meta):
    net, cfg = tiny_net(window, in_channels, classes)
    m = {"window": window, "in_channels": in_channels, "edge": "reflect", "classes": classes,
         "normalization": {"method": "percentile", "low": 1.0, "high": 99.8},
         "background_subtraction": False, "drift": False,
         "class_names": ["background", "cell", "boundary"][:classes], "threshold": 0.5, "min_size": 10}
    m.update(meta)
    return save_checkpoint(path, net, "temporal_unet", cfg, "segmentation", meta=m)


@pytest.fixture(scope="module")
def movie():
    return c2c12()[0][:5]


@pytest.fixture
def ckpt(tmp_path):
    return save_tiny(tmp_path / "tiny.pt")


def test_predict_windows_probabilities_and_tiling_equivalence():
    net, _ = tiny_net()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 200, 232)).astype(np.float32)
    whole = predict_windows(net, x, "cpu", tile=None)
    assert whole.shape == (2, 3, 200, 232) and whole.dtype == np.float32
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=1e-5)
    tiled = predict_windows(net, x, "cpu", tile=144, batch=3)
    assert np.abs(tiled - whole).max() < 1e-4
    # a too-small overlap is visibly different: the equivalence test can fail
    rough = predict_windows(net, x, "cpu", tile=144, overlap=16)
    assert np.abs(rough - whole).max() > 1e-3


def test_segment_tiled_matches_untiled_on_c2c12(movie, ckpt):
    events = []
    whole = run_job(segment(movie, ckpt, tile=None, **T1))
    tiled = run_job(segment(movie, ckpt, tile=144, **T1), on_event=events.append)
    assert np.abs(tiled.probabilities - whole.probabilities).max() < 1e-4
    tiles = [e for e in events if e.stage == "tile"]
    assert tiles and tiles[-1].parent.stage == "frame"
    assert tiled.params["tile"] == 144 and tiled.params["overlap"] == 72  # 2 * (55 // 2 + 1) + 16


def test_result_shapes_ids_and_tracks(movie, ckpt):
    res = run_job(segment(movie, ckpt, **T1))
    assert res.labels.shape == movie.shape and res.labels.dtype == np.int32
    assert res.probabilities.shape == movie.shape and res.probabilities.dtype == np.float32
    assert res.frames_done == [0, 1, 2, 3, 4] and not res.stopped
    assert 0.0 <= res.probabilities.min() and res.probabilities.max() <= 1.0
    # tracks = one row per object per frame, with the label's ID
    n_objects = sum(np.count_nonzero(np.unique(f)) for f in res.labels)
    assert res.tracks.shape == (n_objects, 4)
    for tid, t, y, x in res.tracks[:20]:
        ys, xs = np.nonzero(res.labels[int(t)] == tid)
        assert ys.mean() == pytest.approx(y) and xs.mean() == pytest.approx(x)
    np.testing.assert_array_equal(res.mask, res.labels > 0)
    p = res.params
    assert p["window"] == 3 and p["edge"] == "reflect" and p["threshold"] == 0.5
    lo, hi = np.percentile(movie.astype(np.float32), [1.0, 99.8])
    assert p["normalization_values"]["lo"] == pytest.approx(lo, rel=1e-5)
    assert p["normalization_values"]["hi"] == pytest.approx(hi, rel=1e-5)


def test_edge_skip_leaves_first_and_last_frames_empty(movie, tmp_path):
    ck = save_tiny(tmp_path / "w5.pt", window=5, edge="skip")
    seen = []
    res = run_job(segment(movie, ck, on_frame=lambda t, p, lab: seen.append(t), **T1))
    assert res.frames_done == [2]
    assert seen == [0, 1, 2, 3, 4]
    assert not res.labels[[0, 1, 3, 4]].any() and not res.probabilities[[0, 1, 3, 4]].any()
    assert res.params["skipped_frames"] == [0, 1, 3, 4]
    with pytest.raises(ValueError, match="T=3 frame.*window of 5.*'reflect'"):
        run_job(segment(movie[:3], ck, **T1))
    # the same short movie works with an explicit reflect policy
    res3 = run_job(segment(movie[:3], ck, edge="replicate", **T1))
    assert res3.frames_done == [0, 1, 2]


def test_stop_keeps_the_frames_already_done(movie, ckpt):
    job = segment(movie, ckpt, batch=1, **T1)
    frames_seen = 0
    event = next(job)
    try:
        while True:
            if isinstance(event, Progress) and event.stage == "frame" and event.parent is None and event.index == 2:
                event = job.send(STOP)
            else:
                event = job.send(None)
            frames_seen += 1
    except StopIteration as done:
        res = done.value
    assert res.stopped and res.frames_done == [0, 1]
    assert res.probabilities[:2].any() and not res.probabilities[2:].any()


def test_resume_after_stop_continues_frames_and_ids_exactly(movie, ckpt):
    full = run_job(segment(movie, ckpt, batch=1, **T1))
    frames = []

    def count(event):
        if isinstance(event, Progress) and event.stage == "frame" and event.parent is None:
            frames.append(event.index)

    first = run_job(segment(movie, ckpt, batch=1, **T1), on_event=count, should_stop=lambda: bool(frames) and frames[-1] >= 2)
    assert first.stopped and first.frames_done == [0, 1]
    again = first.resume_arguments()
    assert again["start"] == 2 and again["next_id"] == int(first.labels.max()) + 1
    rest = run_job(segment(movie, ckpt, batch=1, **again, **T1))
    assert rest.frames_done == [2, 3, 4] and not rest.labels[:2].any()
    np.testing.assert_array_equal(rest.labels[2:], full.labels[2:])  # the IDs of one uninterrupted run
    np.testing.assert_array_equal(rest.probabilities[2:], full.probabilities[2:])
    whole = first.extended_by(rest)
    assert whole.frames_done == full.frames_done and not whole.stopped
    np.testing.assert_array_equal(whole.labels, full.labels)
    np.testing.assert_array_equal(whole.tracks, full.tracks)
    for key in full.features:
        np.testing.assert_array_equal(whole.features[key], full.features[key])
    with pytest.raises(ValueError, match="nothing to resume"):
        full.resume_arguments()
    with pytest.raises(ValueError, match="outside the movie"):
        run_job(segment(movie, ckpt, start=5, **T1))


def test_drift_and_background_options_are_recorded(movie, tmp_path):
    ck = save_tiny(tmp_path / "d.pt", drift=True, background_subtraction=True)
    res = run_job(segment(movie[:3], ck, **T1))
    assert res.params["drift"] is True and res.params["background_subtraction"] is True
    assert res.params["normalization_values"]["background_frames"] == 3
    res2 = run_job(segment(movie[:3], ck, drift=False, **T1))
    assert res2.params["drift"] is False
    assert np.abs(res2.probabilities - res.probabilities).max() > 0


def test_multichannel_and_rgb(movie, tmp_path):
    rgb = np.stack([movie] * 3, axis=-1)  # (T, Y, X, 3)
    ck1 = save_tiny(tmp_path / "c1.pt")
    with pytest.raises(ValueError, match=r"3 channel\(s\) per frame \(an RGB movie\?\).*--channel 0"):
        run_job(segment(rgb, ck1, axes="TYXC", **T1))
    res = run_job(segment(rgb, ck1, axes="TYXC", channel=0, **T1))
    ref = run_job(segment(movie, ck1, **T1))
    np.testing.assert_allclose(res.probabilities, ref.probabilities, atol=1e-6)
    ck2 = save_tiny(tmp_path / "c2.pt", in_channels=2)
    two = np.stack([movie, movie[::-1]], axis=1)  # TCYX
    assert run_job(segment(two, ck2, axes="TCYX", **T1)).labels.shape == movie.shape


def test_bad_input_is_refused_with_a_fix(movie, ckpt, tmp_path):
    bad = movie.astype(np.float32)
    bad[1, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite.*nan_to_num"):
        run_job(segment(bad, ckpt, **T1))
    with pytest.raises(ValueError, match="Unknown or unavailable device 'tpu'"):
        run_job(segment(movie, ckpt, device="tpu"))
    with pytest.raises(ValueError, match="tile=64 is too small.*at least"):
        run_job(segment(movie, ckpt, tile=64, **T1))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable napari-cellnet checkpoint"):
        run_job(segment(movie, junk, **T1))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "napari-cellnet-checkpoint", "x": Evil()}))
    with pytest.raises(ValueError, match="refused for safety"):
        run_job(segment(movie, evil, **T1))
    with pytest.raises(FileNotFoundError):
        run_job(segment(movie, tmp_path / "missing.pt", **T1))
    with pytest.raises(ValueError, match="threshold"):
        run_job(segment(movie, ckpt, threshold=1.5, **T1))


def test_classification_checkpoint_is_refused(movie, tmp_path):
    net, cfg = tiny_net()
    path = save_checkpoint(tmp_path / "cls.pt", net, "temporal_unet", cfg, "classification")
    with pytest.raises(ValueError, match="classification model.*segmentation"):
        run_job(segment(movie, path, **T1))


@pytest.mark.parametrize("background", [False, True])
def test_window_preprocessing_matches_training_helpers(movie, tmp_path, background):
    """segment() must feed the network exactly what training's helpers build."""
    net, cfg = tiny_net()
    ck = save_tiny(tmp_path / "m.pt", background_subtraction=background)
    raw = movie.astype(np.float32)
    if background:
        raw = pp.subtract_temporal_median(raw)
    norm = pp.normalize_movie(raw)[:, None]
    wins = np.stack([windows.make_window(norm, t, 3, "reflect") for t in range(len(movie))])
    expected = 1.0 - predict_windows(net, wins, "cpu")[:, 0]
    res = run_job(segment(movie, ck, **T1))
    np.testing.assert_allclose(res.probabilities, expected, atol=1e-5)


def test_demo_model_segments_c2c12():
    from napari_cellnet.core.metrics import segmentation_report

    images, labels = c2c12()
    res = run_job(segment(images, demo_model_path("segmentation"), **T1))
    rep = segmentation_report(res.labels, labels.astype(np.int32))
    assert rep["f1"] > 0.7 and rep["seg"] > 0.4, rep
