"""`napari-cellnet segment` and `evaluate`: round trip on the C2C12 movie and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

pytest.importorskip("torch")

from napari_cellnet.core.io import read_stack  # noqa: I001
from napari_cellnet.core.jobs import Progress, run_job
from napari_cellnet.datasets import c2c12_paths
from napari_cellnet.cli import app as cli
from napari_cellnet.cli import segment as cli_segment
from test_inference import save_tiny  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture
def ckpt(tmp_path):
    return save_tiny(tmp_path / "tiny.pt")


def run(*argv):
    return cli.main([str(a) for a in argv])


def test_segment_round_trip_on_c2c12(tmp_path, ckpt, capsys):
    movie, gt = c2c12_paths()
    out = tmp_path / "out"
    rc = run("segment", movie, "--model", ckpt, "-o", out, "--threads", "1", "--probabilities", "--quiet")
    assert rc == 0
    labels = read_stack(out / "images_labels.tif")
    assert labels.axes == "TYX" and labels.data.shape == (10, 234, 234)
    probs = tifffile.imread(out / "images_probabilities.tif")
    assert probs.dtype == np.float32 and probs.shape == (10, 234, 234)
    # the streamed files hold the same as the in-memory job
    from napari_cellnet.segmentation.inference import segment

    ref = run_job(segment(read_stack(movie).data, ckpt, threads=1, device="cpu"))
    np.testing.assert_array_equal(np.asarray(labels.data), ref.labels)
    np.testing.assert_allclose(probs, ref.probabilities, atol=1e-6)
    params = json.loads((out / "images_segment.json").read_text())
    assert params["window"] == 3 and params["edge"] == "reflect" and params["frames_done"] == 10
    assert params["checkpoint"] == str(ckpt) and params["stopped"] is False
    # the run's settings are kept, and --params reads them back (flags typed after it override them)
    from napari_cellnet.segmentation.params import SegmentParams

    assert params["settings"] == SegmentParams(threads=1).to_dict()
    argv = ["segment", str(movie), "-o", str(out), "--params", str(out / "images_segment.json")]
    assert cli_segment.segment_params(cli.build_parser().parse_args(argv)) == SegmentParams(threads=1)
    again = cli_segment.segment_params(cli.build_parser().parse_args([*argv, "--threshold", "0.4", "--no-drift"]))
    assert again == SegmentParams(threads=1, threshold=0.4, drift=False)
    tracks = (out / "images_tracks.csv").read_text().splitlines()
    assert tracks[0] == "track_id,t,y,x" and len(tracks) - 1 == len(ref.tracks)
    assert (out / "images_objects.csv").read_text().startswith("frame,label,area,centroid_y,centroid_x")
    assert not list(out.glob(".*"))  # no temporary files left
    # evaluate the prediction against the ground truth, then the ground truth against itself
    capsys.readouterr()
    assert run("evaluate", out / "images_labels.tif", gt, "--json", tmp_path / "r.json") == 0
    text = capsys.readouterr().out
    assert "SEG (CTC)" in text and "false white (px)" in text and "WP accuracy" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["per_frame"]) == 10 and 0.0 <= report["seg"] <= 1.0
    assert run("evaluate", gt, gt, "--format", "json") == 0
    perfect = json.loads(capsys.readouterr().out)
    assert perfect["seg"] == 1.0 and perfect["f1"] == 1.0 and perfect["ap"] == 1.0 and perfect["false_white"] == 0


def test_existing_output_needs_overwrite(tmp_path, ckpt, capsys):
    movie, _ = c2c12_paths()
    out = tmp_path / "o"
    assert run("segment", movie, "-m", ckpt, "-o", out, "--threads", "1", "-q") == 0
    assert run("segment", movie, "-m", ckpt, "-o", out, "--threads", "1", "-q") == 2
    assert "already exists" in capsys.readouterr().err
    assert run("segment", movie, "-m", ckpt, "-o", out, "--threads", "1", "-q", "--overwrite") == 0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--device", "tpu"], "Unknown or unavailable device 'tpu'"),
        (["--window-edge", "skip", "--tile", "64"], "tile=64 is too small"),
        (["--threshold", "2"], "threshold must be between 0 and 1"),
        (["--axes", "TYXC"], "Axes 'TYXC'"),
    ],
)
def test_bad_options_leave_nothing_at_output(tmp_path, ckpt, capsys, extra, message):
    movie, _ = c2c12_paths()
    out = tmp_path / "never"
    assert run("segment", movie, "-m", ckpt, "-o", out, "--threads", "1", "-q", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_bad_checkpoints_and_short_movies(tmp_path, capsys):
    movie, _ = c2c12_paths()
    out = tmp_path / "never"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not really")
    assert run("segment", movie, "-m", junk, "-o", out, "-q") == 2
    assert "not a loadable napari-cellnet checkpoint" in capsys.readouterr().err
    short = tmp_path / "short.tif"
    tifffile.imwrite(short, read_stack(movie).data[:3], imagej=True, metadata={"axes": "TYX"})
    w5 = save_tiny(tmp_path / "w5.pt", window=5, edge="skip")
    assert run("segment", short, "-m", w5, "-o", out, "-q", "--threads", "1") == 2
    assert "T=3 frame(s) but the model needs a window of 5" in capsys.readouterr().err
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.stack([read_stack(movie).data[:4]] * 3, axis=-1), photometric="rgb")
    assert run("segment", rgb, "-m", w5, "-o", out, "-q", "--threads", "1") == 2
    assert "--channel 0" in capsys.readouterr().err
    assert not out.exists()
    assert run("segment", rgb, "-m", w5, "-o", out, "-q", "--threads", "1", "--channel", "1",
               "--window-edge", "reflect") == 0
    assert tifffile.imread(out / "rgb_labels.tif").shape == (4, 234, 234)


def test_ctrl_c_keeps_the_frames_done(tmp_path, ckpt, monkeypatch):
    movie, _ = c2c12_paths()

    def stop_after_two(job, quiet=False):
        return run_job(job, should_stop=lambda: stopper["n"] >= 2,
                       on_event=lambda e: stopper.__setitem__(
                           "n", e.index if isinstance(e, Progress) and e.parent is None else stopper["n"]))

    stopper = {"n": 0}
    monkeypatch.setattr(cli_segment, "drain", stop_after_two)
    out = tmp_path / "partial"
    assert run("segment", movie, "-m", ckpt, "-o", out, "--threads", "1", "--batch", "1") == 0
    labels = tifffile.imread(out / "images_labels.tif")
    params = json.loads((out / "images_segment.json").read_text())
    assert params["stopped"] is True and params["frames_done"] == 2
    assert labels.shape == (2, 234, 234) and params["frames_written"] == 2


def test_evaluate_bad_input(tmp_path, capsys):
    _, gt = c2c12_paths()
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((10, 20, 20), np.uint16), imagej=True, metadata={"axes": "TYX"})
    assert run("evaluate", small, gt) == 2
    assert "compare the same frames at the same size" in capsys.readouterr().err
    prob = tmp_path / "prob.tif"
    tifffile.imwrite(prob, np.full((10, 234, 234), 0.3, np.float32), imagej=True, metadata={"axes": "TYX"})
    assert run("evaluate", prob, gt) == 2
    assert "probability map" in capsys.readouterr().err


def test_evaluate_binary_mask_is_labelled(tmp_path, capsys):
    _, gt = c2c12_paths()
    mask = tmp_path / "mask.tif"
    tifffile.imwrite(mask, (read_stack(gt).data > 0).astype(np.uint8), imagej=True, metadata={"axes": "TYX"})
    assert run("evaluate", mask, gt, "--format", "json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["pred_was_mask"] is True and rep["f1"] == 1.0
    assert rep["instance_tp"] > 0
