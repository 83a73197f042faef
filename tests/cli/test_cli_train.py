"""``napari-cellnet train-seg``: parameters from flags, files written, errors as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_cellnet.cli.app import build_parser, main
from napari_cellnet.cli.train_seg import build_params, parse_frames
from napari_cellnet.models.checkpoint import load_checkpoint


def _write_movie(tmp_path, T=6, Y=48, X=48):
    rng = np.random.default_rng(0)
    img = (rng.random((T, Y, X)) * 60).astype(np.uint8)
    lab = np.zeros((T, Y, X), np.uint16)
    for t in (0, 2, 4):
        lab[t, 8:18, 8:20] = 1
        lab[t, 28:40, 24:34] = 2
        img[t][lab[t] > 0] += 120
    tifffile.imwrite(tmp_path / "movie.tif", img, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "labels.tif", lab, imagej=True, metadata={"axes": "TYX"})
    return tmp_path / "movie.tif", tmp_path / "labels.tif"


def test_parse_frames():
    assert parse_frames("0,2,4") == [0, 2, 4]
    assert parse_frames("0-8:2") == [0, 2, 4, 6, 8]
    assert parse_frames("1-3, 7") == [1, 2, 3, 7]
    assert parse_frames("none") == [] and parse_frames("auto") is None and parse_frames(None) is None
    assert parse_frames("0,2;1", n_movies=2) == [[0, 2], [1]]
    with pytest.raises(ValueError, match="numbers separated by commas"):
        parse_frames("first")
    with pytest.raises(ValueError, match="one list per movie"):
        parse_frames("0,2", n_movies=2)


def _args(*extra):
    return build_parser().parse_args(["train-seg", "--images", "m.tif", "--labels", "l.tif", "-o", "out", *extra])


def test_flags_override_preset_and_json(tmp_path):
    p = build_params(_args("--preset", "stemnet", "--lr", "0.1", "--frames", "0,2", "--val-frames", "none"))
    assert (p.preset, p.optimizer, p.momentum, p.lr, p.lr_decay) == ("stemnet", "sgd", 0.2, 0.1, 0.95)
    assert p.frames == [0, 2] and p.val_frames == []
    p = build_params(_args("--window", "1", "--loss", "ce", "--optimizer", "adamax", "--aug-rate", "10"))
    assert (p.window, p.loss, p.optimizer, p.aug_rate, p.preset) == (1, "ce", "adamax", 10, "light")
    saved = p.to_json(tmp_path / "params.json")
    again = build_params(_args("--params", str(saved), "--epochs", "3"))
    assert again.window == 1 and again.optimizer == "adamax" and again.epochs == 3
    with pytest.raises(ValueError, match="odd number of frames"):
        build_params(_args("--window", "4"))


def test_train_seg_end_to_end_and_refusals(tmp_path, capsys):
    movie, labels = _write_movie(tmp_path)
    out = tmp_path / "model"
    argv = ["train-seg", "--images", str(movie), "--labels", str(labels), "--frames", "0,2", "--val-frames", "4",
            "--window", "3", "--epochs", "2", "--patch-size", "32", "--batch-size", "4", "--min-size", "10",
            "--threads", "1", "-q", "-o", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "best seg" in stdout and str(out / "best.pt") in stdout
    params = json.loads((out / "params.json").read_text())
    assert params["window"] == 3 and params["frames"] == [0, 2] and params["val_frames"] == [4] and params["epochs"] == 2
    ckpt = load_checkpoint(out / "best.pt", task="segmentation")
    # post-processing calibrated on the validation frame by default, and said so
    cal = ckpt.meta["calibration"]
    assert cal["source"] == "validation" and (ckpt.meta["threshold"], ckpt.meta["min_size"]) == (cal["threshold"], cal["min_size"])
    assert f"calibrated on the validation frames: threshold {cal['threshold']:.2f}" in stdout
    assert build_params(_args("--calibrate", "none")).calibrate == "none"
    assert ckpt.meta["window"] == 3 and ckpt.meta["training"]["sources"]["images"] == [str(movie.resolve())]
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")

    # a folder with a model in it is refused (exit 2, one line naming --overwrite) ...
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a model" in err and "--overwrite" in err and err.count("\n") == 1
    # ... unless asked; and a run can be resumed with more epochs
    assert main([*argv, "--overwrite", "--epochs", "1"]) == 0
    assert main(["train-seg", "--images", str(movie), "--labels", str(labels), "--resume", str(out / "last.pt"),
                 "--epochs", "2", "-q", "-o", str(out)]) == 0
    assert load_checkpoint(out / "last.pt").meta["resume"]["epoch"] == 2
    capsys.readouterr()


def test_train_seg_bad_input_is_one_line(tmp_path, capsys):
    movie, labels = _write_movie(tmp_path)
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((6, 40, 48), np.uint16), imagej=True, metadata={"axes": "TYX"})
    base = ["train-seg", "--images", str(movie), "-q", "-o", str(tmp_path / "m")]
    assert main([*base, "--labels", str(small)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-cellnet train-seg: error:") and "labels have shape (6, 40, 48)" in err
    assert main([*base, "--labels", str(labels), "--window", "9"]) == 2
    assert "window is 9" in capsys.readouterr().err
    assert main([*base, "--labels", str(tmp_path / "nope.tif")]) == 2
    assert "No such file" in capsys.readouterr().err
    assert main([*base, "--labels", str(labels), "--frames", "0", "--val-frames", "0"]) == 2
    assert "both training and validation" in capsys.readouterr().err
