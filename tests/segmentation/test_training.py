"""The segmentation trainer on tiny synthetic and real movies: the loss falls, checkpoints
round-trip, stop keeps the best, resume continues exactly, and bad input fails clearly."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import disk

from napari_cellnet.core.jobs import STOP, Progress, TrainEvent, run_job
from napari_cellnet.models.checkpoint import load_checkpoint
from napari_cellnet.segmentation.calibration import calibrate_postprocessing
from napari_cellnet.segmentation.losses import SegmentationLoss
from napari_cellnet.segmentation.trainer import validation_metrics
from napari_cellnet.segmentation.training import TrainSegParams, train_segmentation


def _movie(T=6, Y=64, X=64, annotated=(0, 2, 4), seed=0):
    """Bright disks drifting one pixel per frame on a noisy background; labels on some frames."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.3, 0.05, (T, Y, X)).astype(np.float32)
    lab = np.zeros((T, Y, X), np.uint16)
    for t in range(T):
        for i, (cy, cx) in enumerate([(16, 16), (40, 44), (20, 46), (46, 18)]):
            rr, cc = disk((cy + t, cx + t), 6, shape=(Y, X))
            img[t, rr, cc] += 0.5
            lab[t, rr, cc] = i + 1
    keep = np.zeros(T, bool)
    keep[list(annotated)] = True
    lab[~keep] = 0
    return img, lab


def _params(**kw):
    base = dict(window=3, patch_size=32, batch_size=4, epochs=2, aug_rate=2, min_size=10, frames=[0, 2],
                val_frames=[4], lr=3e-3, threads=1)
    base.update(kw)
    return TrainSegParams(**base)


def _drain(job, stop_at=None):
    events = []
    to_send = None
    try:
        while True:
            ev = job.send(to_send)
            events.append(ev)
            to_send = None
            if stop_at is not None and isinstance(ev, TrainEvent) and (ev.kind, ev.epoch, ev.step) == stop_at:
                to_send = STOP
    except StopIteration as done:
        return events, done.value


def _steps(events):
    return [(e.epoch, e.step, e.train_loss) for e in events if isinstance(e, TrainEvent) and e.kind == "step"]


# ----------------------------------------------------------------------------- learning


def test_loss_falls_and_checkpoint_round_trips(tmp_path):
    img, lab = _movie()
    params = _params(epochs=4)
    events, res = _drain(train_segmentation(img, lab, params, tmp_path / "model"))
    assert isinstance(events[0], Progress) and "2 training frame(s), 1 validation frame(s)" in events[0].message
    epochs = [e for e in events if isinstance(e, TrainEvent) and e.kind == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1].train_loss < 0.8 * epochs[0].train_loss
    # every metric of segmentation_report reaches the events and the history
    for key in ("seg", "f1", "precision", "recall", "error_rate", "false_white", "wp_accuracy", "ap",
                "instance_f1", "val_loss"):
        assert key in epochs[-1].val_metrics and key in res.history[-1]
    steps = [e for e in events if isinstance(e, TrainEvent) and e.kind == "step"]
    assert steps[0].steps_per_epoch == 4 and steps[0].eta_s > steps[-1].eta_s >= 0 and steps[0].lr == 3e-3

    assert res.best_path == tmp_path / "model" / "best.pt" and res.last_path.name == "last.pt"
    best_epoch = res.best["epoch"]
    assert res.best["value"] == max(r["seg"] for r in res.history)
    ckpt = load_checkpoint(res.best_path, task="segmentation")
    assert ckpt.meta["window"] == 3 and ckpt.meta["edge"] == "reflect" and ckpt.meta["classes"] == 3
    assert ckpt.meta["class_names"] == ["background", "cell", "boundary"]
    assert ckpt.meta["normalization"]["low"] == 1.0 and ckpt.meta["training"]["epoch"] == best_epoch
    assert ckpt.meta["training"]["params"] == params.to_dict()
    assert "resume" not in ckpt.meta  # best.pt stays small; last.pt carries the optimiser
    # the saved weights reproduce the validation score recorded for that epoch
    net = ckpt.build("cpu")
    from napari_cellnet.segmentation.data import as_movie_list, extract_windows

    imgs, labs = as_movie_list(img, lab)
    val, _ = extract_windows(imgs, labs, [(0, 4)], 3)
    again = validation_metrics(net, val, torch.device("cpu"), params, SegmentationLoss("ce+dice"))
    assert again["seg"] == pytest.approx(res.history[best_epoch - 1]["seg"], abs=1e-9)
    assert json.loads((tmp_path / "model" / "params.json").read_text()) == params.to_dict()
    assert (tmp_path / "model" / "history.csv").read_text().count("\n") == 5


def test_real_crop_loss_falls(tmp_path):
    from napari_cellnet.datasets import c2c12

    images, labels = c2c12()  # the copy shipped in the package
    img, lab = images[:5, 20:84, 110:174], labels[:5, 20:84, 110:174]
    assert [len(np.unique(f)) - 1 for f in lab[[0, 2, 4]]] == [3, 3, 3]  # three real cells per frame
    params = _params(epochs=4, val_frames=[], frames=[0, 2, 4], patch_size=64, aug_rate=2, augment="none",
                     loss="ce")
    events, res = _drain(train_segmentation(img, lab, params, tmp_path / "m"))
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.8 * losses[0]
    # no validation frame: best is the lowest training loss
    assert res.best["metric"] == "train_loss" and res.best["value"] == min(losses)
    assert any("lowest training loss" in n for n in res.notes)


def test_same_seed_same_run_on_cpu(tmp_path):
    img, lab = _movie()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = _steps(_drain(train_segmentation(img, lab, _params(), tmp_path / "a"))[0])
        assert torch.get_num_threads() == 2  # params.threads=1 does not outlive the run
    finally:
        torch.set_num_threads(before)
    b = _steps(_drain(train_segmentation(img, lab, _params(), tmp_path / "b"))[0])
    c = _steps(_drain(train_segmentation(img, lab, _params(seed=1), tmp_path / "c"))[0])
    assert a == b
    assert a != c


def test_stop_keeps_best_and_resume_gives_the_same_next_step(tmp_path):
    img, lab = _movie()
    full_events, full = _drain(train_segmentation(img, lab, _params(epochs=3), tmp_path / "full"))
    full_steps = _steps(full_events)

    out = tmp_path / "stopped"
    ev1, r1 = _drain(train_segmentation(img, lab, _params(epochs=3), out), stop_at=("step", 2, 2))
    assert r1.stopped and r1.epochs_done == 1 and _steps(ev1) == full_steps[:6]
    assert r1.best_path == out / "best.pt" and r1.best["epoch"] == 1  # the best so far is kept
    best_bytes = (out / "best.pt").read_bytes()

    ev2, r2 = _drain(train_segmentation(img, lab, None, out, resume=out / "last.pt"))
    assert _steps(ev2) == full_steps[6:]  # the next step is exactly the uninterrupted run's
    assert [h["train_loss"] for h in r2.history] == [h["train_loss"] for h in full.history]
    assert r2.best == full.best and not r2.stopped and r2.epochs_done == 3
    if r2.best["epoch"] == 1:
        assert (out / "best.pt").read_bytes() == best_bytes


def test_stop_before_first_epoch_has_no_best(tmp_path):
    img, lab = _movie()
    _, res = _drain(train_segmentation(img, lab, _params(), tmp_path / "m"), stop_at=("step", 1, 1))
    assert res.stopped and res.best_path is None and res.model_path == tmp_path / "m" / "last.pt"
    assert res.history == []


def test_early_stopping(tmp_path, monkeypatch):
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    from napari_cellnet.segmentation import trainer

    monkeypatch.setattr(trainer, "validation_metrics", lambda *a, **k: {"seg": next(scores), "val_loss": 1.0})
    img, lab = _movie()
    _, res = _drain(train_segmentation(img, lab, _params(epochs=5, early_stopping=2), tmp_path / "m"))
    assert res.early_stopped and res.epochs_done == 3 and res.best == {"epoch": 1, "metric": "seg", "value": 0.5}


def test_several_movies_weight_map_and_median_frequency(tmp_path):
    a_img, a_lab = _movie(seed=1)
    b_img, b_lab = _movie(T=5, Y=48, X=80, annotated=(1, 3), seed=2)
    params = _params(frames=[[0, 2], [1]], val_frames=[[4], [3]], weight_map=True,
                     class_weighting="median_frequency", epochs=1, optimizer="sgd", scheduler="exponential",
                     lr=0.05, momentum=0.2)
    events, res = _drain(train_segmentation([a_img, b_img], [a_lab, b_lab], params, tmp_path / "m"))
    assert res.epochs_done == 1 and np.isfinite(res.history[0]["train_loss"])
    ckpt = load_checkpoint(res.best_path)
    assert ckpt.meta["training"]["val_frames"] == [[0, 4], [1, 3]]


# ----------------------------------------------------------------------------- parameters


def test_params_round_trip_and_presets(tmp_path):
    p = TrainSegParams(frames=[0, 2], augment={"horizontal_flip": True}, model_config={"base_width": 8})
    assert TrainSegParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    p.to_json(tmp_path / "p.json")
    assert TrainSegParams.from_json(tmp_path / "p.json") == p
    with pytest.raises(ValueError, match=r"Unknown [\w-]+ parameter\(s\) \['learning_rate'\]"):
        TrainSegParams.from_dict({"learning_rate": 0.1})
    s = TrainSegParams.from_preset("stemnet")
    assert (s.optimizer, s.lr, s.momentum, s.scheduler, s.lr_decay) == ("sgd", 0.15, 0.2, "exponential", 0.95)
    assert (s.preset, s.classes, s.loss, s.cell_weight, s.batch_size) == ("stemnet", 2, "ce", 2.0, 1)
    assert TrainSegParams.from_preset("stemnet", lr=0.1).lr == 0.1
    with pytest.raises(ValueError, match="Unknown training preset 'big'"):
        TrainSegParams.from_preset("big")
    with pytest.raises(ValueError, match="best_metric must be one of"):
        TrainSegParams(best_metric="acc").validate()
    with pytest.raises(ValueError, match="optimizer must be one of .*; got 'lbfgs'"):
        TrainSegParams(optimizer="lbfgs").validate()
    with pytest.raises(ValueError, match="odd number of frames"):
        TrainSegParams(window=4).validate()


# ----------------------------------------------------------------------------- bad input


def _first(job):
    return next(job)


def test_bad_inputs_fail_with_the_fix(tmp_path):
    img, lab = _movie()
    with pytest.raises(ValueError, match="labels have shape"):
        _first(train_segmentation(img, lab[:, :60], _params(), tmp_path / "a"))
    with pytest.raises(ValueError, match="no annotated frame"):
        _first(train_segmentation(img, np.zeros_like(lab), TrainSegParams(), tmp_path / "b"))
    with pytest.raises(ValueError, match="non-integer values"):
        _first(train_segmentation(img, lab * 0.5, _params(), tmp_path / "c"))
    with pytest.raises(ValueError, match="negative values"):
        _first(train_segmentation(img, lab.astype(np.int32) - 1, _params(frames=[0], val_frames=[]), tmp_path / "d"))
    one = lab.copy()
    one[[2, 4]] = 0
    with pytest.raises(ValueError, match="No frame is left for training.*--val-frames none"):
        _first(train_segmentation(img, one, _params(frames=None, val_frames=[0]), tmp_path / "e"))
    with pytest.raises(ValueError, match="T=6 frame.*window is 7.*at most 5"):
        _first(train_segmentation(img, lab, _params(window=7), tmp_path / "f"))
    with pytest.raises(ValueError, match="patch size 40 is not a multiple of 16.*use 32 or 48"):
        _first(train_segmentation(img, lab, _params(patch_size=40), tmp_path / "g"))
    with pytest.raises(ValueError, match="Choose an output folder"):
        _first(train_segmentation(img, lab, _params(), None))


def test_output_folder_with_a_model_is_refused_unless_overwrite(tmp_path):
    img, lab = _movie()
    out = tmp_path / "m"
    run_job(train_segmentation(img, lab, _params(epochs=1), out))
    with pytest.raises(FileExistsError, match="already holds a model.*--overwrite"):
        _first(train_segmentation(img, lab, _params(epochs=1), out))
    res = run_job(train_segmentation(img, lab, _params(epochs=1, seed=3), out, overwrite=True))
    assert res.best_path.exists() and load_checkpoint(res.best_path).meta["training"]["params"]["seed"] == 3
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        _first(train_segmentation(img, lab, _params(), tmp_path / "file"))


def test_resume_refuses_other_settings_or_data(tmp_path):
    img, lab = _movie()
    out = tmp_path / "m"
    run_job(train_segmentation(img, lab, _params(epochs=1), out))
    with pytest.raises(ValueError, match="these differ: window"):
        _first(train_segmentation(img, lab, _params(window=5, epochs=2), out, resume=out / "last.pt"))
    other = lab.copy()
    other[0, :5, :5] = 9
    with pytest.raises(ValueError, match="differ from the run being resumed"):
        _first(train_segmentation(img, other, None, out, resume=out / "last.pt"))
    with pytest.raises(ValueError, match="carries no training state"):
        _first(train_segmentation(img, lab, None, out, resume=out / "best.pt"))
    # more epochs on resume is allowed
    res = run_job(train_segmentation(img, lab, _params(epochs=2), out, resume=out / "last.pt"))
    assert res.epochs_done == 2


def test_disk_full_leaves_no_corrupt_checkpoint(tmp_path, monkeypatch):
    img, lab = _movie()
    out = tmp_path / "m"

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="the disk is full.*Free disk space"):
        run_job(train_segmentation(img, lab, _params(epochs=1), out))
    assert sorted(p.name for p in out.iterdir()) == ["params.json"]  # no best.pt, no temp file


def test_shipped_demo_model_is_what_the_script_trains():
    """The shipped model was trained with exactly the parameters the script's public recipe
    builds (compared field by field, derived from the script, not written here again)."""
    import importlib.util

    from napari_cellnet.datasets import demo_model_path
    from napari_cellnet.segmentation.checkpoints import SegmentationMeta

    spec = importlib.util.spec_from_file_location(
        "train_segmentation_demo", Path(__file__).parents[2] / "scripts" / "train_segmentation_demo.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    recipe = script.demo_params()
    ckpt = load_checkpoint(demo_model_path("segmentation"), task="segmentation")
    assert TrainSegParams.from_dict(ckpt.meta["training"]["params"]) == recipe
    assert ckpt.config == recipe.model_config_full(in_channels=1)  # the network the recipe builds
    meta = SegmentationMeta.from_checkpoint(ckpt)
    assert (meta.window, meta.edge, meta.scale, meta.classes) == (recipe.window, recipe.edge, recipe.scale,
                                                                    recipe.classes)
    assert (meta.normalization.low, meta.normalization.high) == (recipe.norm_low, recipe.norm_high)
    assert meta.resume is None  # the small best.pt, not last.pt
    # no validation frame in the recipe: best.pt is the lowest training loss, and the stored
    # post-processing is the best pair of the calibration grid on the training frames
    assert recipe.val_frames == [] and meta.training["best_metric"] == "train_loss"
    cal = meta.calibration
    assert cal["source"] == "training" and (meta.threshold, meta.min_size) == (cal["threshold"], cal["min_size"])
    assert cal["seg"] == max(s for _, _, s in cal["grid"]) >= cal["default_seg"]


# ----------------------------------------------------------------------------- calibration


def _disk_probs(shape=(40, 40), centre=(20, 20), r_core=5, r_halo=6, core=0.95, halo=0.6, rest=0.1):
    """3-class probabilities: a disk of P(cell) ``core`` inside a ring of ``halo``; labels = the core disk."""
    fg = np.full(shape, rest, np.float32)
    fg[disk(centre, r_halo, shape=shape)] = halo
    fg[disk(centre, r_core, shape=shape)] = core
    prob = np.stack([1 - fg, fg, np.zeros(shape, np.float32)])
    gt = np.zeros(shape, np.int32)
    gt[disk(centre, r_core, shape=shape)] = 1
    return prob, gt


def test_calibration_finds_the_threshold_that_matches_the_outline():
    prob, gt = _disk_probs()
    core = int(gt.sum())
    halo = len(disk((20, 20), 6, shape=(40, 40))[0])  # pixels of the r=6 disk
    cal = calibrate_postprocessing([prob], [gt], thresholds=(0.3, 0.5, 0.6, 0.7), min_sizes=(0, 30, 100))
    # 0.3 and 0.5 keep the halo (IoU core/halo); from 0.6 on ("> 0.6" drops the 0.6 ring) the outline is exact;
    # min size 100 removes the 69-px cell but not the 109-px halo. Ties go to the pair nearest the default (0.5, 30).
    assert core == 69 and halo == 109
    assert (cal["threshold"], cal["min_size"]) == (0.6, 30)
    assert cal["seg"] == 1.0 and cal["default_seg"] == pytest.approx(69 / 109)
    grid = {(t, m): s for t, m, s in cal["grid"]}
    assert grid[(0.3, 0)] == pytest.approx(69 / 109) and grid[(0.5, 100)] == pytest.approx(69 / 109)
    assert grid[(0.7, 100)] == 0.0 and grid[(0.7, 0)] == 1.0 and len(grid) == 12
    assert cal["frames"] == 1
    with pytest.raises(ValueError, match="at least one annotated frame"):
        calibrate_postprocessing([prob], [], thresholds=(0.5,), min_sizes=(0,))
    with pytest.raises(ValueError, match="no object"):
        calibrate_postprocessing([prob], [np.zeros_like(gt)], thresholds=(0.5,), min_sizes=(0,))


def test_training_stores_the_calibrated_post_processing(tmp_path):
    img, lab = _movie()
    res = run_job(train_segmentation(img, lab, _params(epochs=1, val_frames=[], calibrate="any"), tmp_path / "a"))
    cal = res.calibration
    assert cal["source"] == "training" and cal["frames"] == 2
    assert cal["seg"] == max(s for _, _, s in cal["grid"]) and cal["seg"] >= cal["default_seg"]
    ckpt = load_checkpoint(res.best_path, task="segmentation")
    assert (ckpt.meta["threshold"], ckpt.meta["min_size"]) == (cal["threshold"], cal["min_size"])
    assert ckpt.meta["calibration"]["grid"] == cal["grid"] and any("calibrated" in n for n in res.notes)
    # default "validation": nothing to calibrate on without validation frames; "none" keeps the given values
    for mode, out in (("validation", "b"), ("none", "c")):
        res = run_job(train_segmentation(img, lab, _params(epochs=1, val_frames=[], calibrate=mode, threshold=0.4),
                                         tmp_path / out))
        meta = load_checkpoint(res.best_path, task="segmentation").meta
        assert res.calibration is None and (meta["threshold"], meta["min_size"]) == (0.4, 10)
        assert "calibration" not in meta
    with pytest.raises(ValueError, match="calibrate must be one of none, validation, any"):
        _first(train_segmentation(img, lab, _params(calibrate="yes"), tmp_path / "d"))
