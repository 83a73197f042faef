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


def test_preset_layering_defaults_json_preset_flags(tmp_path):
    from napari_cellnet.segmentation.params import TrainSegParams

    saved = TrainSegParams(window=1, epochs=3, optimizer="adamax", lr=0.01, patch_size=32).to_json(tmp_path / "p.json")
    # --params alone: the JSON as saved
    p = build_params(_args("--params", str(saved)))
    assert (p.window, p.epochs, p.optimizer, p.lr, p.patch_size) == (1, 3, "adamax", 0.01, 32)
    # a preset over the JSON sets the preset's fields, keeps the JSON's others; flags override both
    p = build_params(_args("--params", str(saved), "--preset", "stemnet", "--lr", "0.1"))
    assert (p.preset, p.optimizer, p.momentum, p.patch_size, p.classes) == ("stemnet", "sgd", 0.2, 256, 2)
    assert (p.lr, p.window, p.epochs) == (0.1, 1, 3)
    assert p == TrainSegParams.from_json(saved).with_preset("stemnet").replace(lr=0.1)
    # the flag order does not matter: a flag always beats the preset
    assert build_params(_args("--lr", "0.1", "--preset", "stemnet", "--params", str(saved))) == p
    # "light" puts every field a preset sets back to the defaults, and nothing else
    stem = TrainSegParams.from_preset("stemnet", epochs=5).to_json(tmp_path / "stem.json")
    p = build_params(_args("--params", str(stem), "--preset", "light"))
    assert p == TrainSegParams(epochs=5)
    # bad values are refused with what to change
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_params(_args("--params", str(TrainSegParams().replace(optimizer="lbfgs").to_json(tmp_path / "b.json"))))
    with pytest.raises(ValueError, match="one list per movie"):
        build_params(build_parser().parse_args(["train-seg", "--images", "a.tif", "--images", "b.tif", "--labels",
                                                "a.tif", "--labels", "b.tif", "-o", "o", "--frames", "0,2"]))
    two = build_parser().parse_args(["train-seg", "--images", "a.tif", "--images", "b.tif", "--labels", "a.tif",
                                     "--labels", "b.tif", "-o", "o", "--frames", "0,2;1", "--val-frames", "none"])
    assert (build_params(two).frames, build_params(two).val_frames) == ([[0, 2], [1]], [])


def _flags_in_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["train-seg", "segment", "evaluate"])
def test_help_lists_every_field_flag(command, capsys):
    from napari_cellnet.cli.app import PARAMS

    text = _flags_in_help(command, capsys)
    cls = PARAMS[command]
    for info in cls.infos():
        assert info.flag in text, info.name
    assert "--params" in text
    assert len(cls.infos()) >= {"train-seg": 40, "segment": 15, "evaluate": 1}[command]


def test_params_module_is_torch_free_and_names_the_engines_choices():
    import subprocess
    import sys

    code = "import sys, napari_cellnet.segmentation.params as p; p.TrainSegParams().validate(); " \
           "p.SegmentParams().validate(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
    from napari_cellnet.core import optim
    from napari_cellnet.segmentation import losses, params

    assert set(params.OPTIMIZERS) == set(optim.OPTIMIZERS) and set(params.SCHEDULERS) == set(optim.SCHEDULERS)
    assert params.LOSSES == losses.LOSSES


def test_frame_lists_round_trip():
    from napari_cellnet.segmentation.params import format_frames, parse_frames

    for frames in ([0, 2, 4], [0, 1, 2, 5, 7, 8], [], [[0, 2], [1]], [[], [3]]):
        assert parse_frames(format_frames(frames)) == frames
    assert format_frames([0, 1, 2, 5]) == "0-2,5" and format_frames([]) == "none" and format_frames(None) == "auto"
