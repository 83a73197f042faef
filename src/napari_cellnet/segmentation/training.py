"""Train the temporal U-Net on a biologist's sparse annotations, as a stoppable generator.

One engine behind three front ends: the CLI (``napari-cellnet train-seg``), the training
widget and the tests all build a :class:`TrainSegParams` and drain
:func:`train_segmentation`, which yields :class:`~napari_cellnet.core.jobs.TrainEvent` s (a step
event after every batch, an epoch event with every validation metric of
:func:`napari_cellnet.core.metrics.segmentation_report`) and returns a :class:`TrainResult`.

What a biologist can rely on:

* **Whole frames for validation.** Validation frames are held back by frame, never a
  patch of a training frame, and scored with the same post-processing inference uses.
* **Nothing is lost on Stop.** Sending :data:`~napari_cellnet.core.jobs.STOP` ends the run
  between two batches; ``best.pt`` (the best validated model so far) is untouched and
  ``last.pt`` holds the exact state to resume from.
* **Resume gives the same next step.** Patches of an epoch are planned from
  ``(seed, epoch)`` and every step reseeds torch from ``(seed, epoch, step)``, so a run
  stopped and resumed continues exactly as if it had never stopped (on the CPU).
* **Files only where the user said.** Checkpoints, ``params.json`` and ``history.csv`` go
  to the output folder the caller passes; there is no default folder, and a folder that
  already holds a model is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellnet.core.jobs import STOP, Progress, TrainEvent
from napari_cellnet.segmentation import preprocessing as pre
from napari_cellnet.segmentation.data import (
    NORM_MAX_FRAMES,
    FrameSample,
    PatchSampler,
    as_movie_list,
    extract_windows,
    make_target,
    split_frames,
)
from napari_cellnet.segmentation.losses import (
    SegmentationLoss,
    fixed_class_weights,
    median_frequency_weights,
)
from napari_cellnet.segmentation.params import (  # noqa: F401  (re-exported: the engine's vocabulary)
    _STRUCTURAL,
    BEST_METRICS,
    CALIBRATE_MODES,
    CLASS_NAMES,
    MODEL_NAME,
    TrainSegParams,
)

BEST, LAST, PARAMS, HISTORY = "best.pt", "last.pt", "params.json", "history.csv"


@dataclass
class TrainResult:
    """What a training run leaves behind.

    Attributes
    ----------
    out_dir : Path
        The output folder.
    best_path, last_path : Path or None
        ``best.pt`` (best validated model; lowest training loss without validation) and
        ``last.pt`` (resumable state). ``best_path`` is None if the run stopped before
        its first epoch ended.
    history : list of dict
        One row per epoch: ``epoch``, ``train_loss``, ``lr``, ``time_s`` and every
        validation metric.
    best : dict or None
        ``{"epoch", "metric", "value"}`` of the best epoch.
    stopped, early_stopped : bool
        Stopped by the caller (STOP / Ctrl-C) or by early stopping.
    epochs_done : int
        Complete epochs (including those of a resumed run).
    params : TrainSegParams
    notes : list of str
        What was chosen automatically (validation frames ...).
    wall_s : float
        Seconds this call ran.
    calibration : dict or None
        What :func:`calibrate_postprocessing` chose for ``best.pt`` (and on which frames).
    """

    out_dir: Path
    best_path: Path | None
    last_path: Path | None
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    stopped: bool
    early_stopped: bool
    epochs_done: int
    params: TrainSegParams
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    calibration: dict[str, Any] | None = None

    @property
    def model_path(self) -> Path | None:
        """The model to use: best if any, else last."""
        return self.best_path or self.last_path


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _check_out_dir(out_dir: Any, overwrite: bool, resume: Path | None) -> Path:
    if out_dir is None or str(out_dir).strip() == "":
        raise ValueError("Choose an output folder for the model (CLI: -o MODEL_DIR); nothing is written to the "
                         "current folder by default.")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"The output path {out} is a file; choose a folder for the model.")
    existing = [n for n in (BEST, LAST) if (out / n).exists()]
    resuming_here = resume is not None and Path(resume).resolve().parent == out.resolve()
    if existing and not overwrite and not resuming_here:
        raise FileExistsError(
            f"{out} already holds a model ({', '.join(existing)}). Choose an empty folder, overwrite it "
            "(overwrite=True, CLI --overwrite), or continue it (resume from its last.pt, CLI --resume)."
        )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite and not resuming_here:
        for n in (BEST, LAST, HISTORY):
            (out / n).unlink(missing_ok=True)
    return out


def _save(path: Path, net: torch.nn.Module, config: dict[str, Any], meta: dict[str, Any]) -> Path:
    from napari_cellnet.models.checkpoint import save_checkpoint

    try:
        return save_checkpoint(path, net, MODEL_NAME, config, "segmentation", meta)
    except OSError as err:
        why = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise OSError(
            err.errno, f"Could not write {path.name} to {path.parent} ({why}). The previous {path.name}, if any, "
            "is unchanged. Free disk space or choose another output folder, then resume from last.pt."
        ) from err


def _step_seed(seed: int, epoch: int, step: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch), int(step)]).generate_state(1)[0])


def _fingerprint(samples: Sequence[FrameSample]) -> str:
    h = hashlib.sha1()
    for s in samples:
        h.update(f"{s.movie}:{s.frame}:{s.labels.shape}".encode())
        h.update(np.ascontiguousarray(s.labels).tobytes())
    return h.hexdigest()


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def _forward_full(net: torch.nn.Module, windows: Sequence[np.ndarray], device: torch.device,
                  shapes: Sequence[tuple[int, ...]] | None = None) -> list[np.ndarray]:
    """Softmax probabilities ``(classes, Y, X)`` of whole frames, exactly as inference computes them.

    ``shapes`` are the movie's ``(Y, X)`` per window when the windows were rescaled: the
    probabilities are resampled back to them (:func:`~napari_cellnet.segmentation.preprocessing.resize_image`),
    as :func:`~napari_cellnet.segmentation.inference.segment` does.
    """
    from napari_cellnet.segmentation.inference import predict_windows

    net.eval()
    out: list[np.ndarray | None] = [None] * len(windows)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(tuple(w.shape), []).append(i)
    for idx in groups.values():
        prob = predict_windows(net, np.stack([windows[i] for i in idx]), device, batch=2, amp=None)
        for i, p in zip(idx, prob, strict=True):
            out[i] = np.asarray(p) if shapes is None else pre.resize_image(p, shapes[i][-2:])
    return out  # type: ignore[return-value]


def _validate(net: torch.nn.Module, val: Sequence[FrameSample], device: torch.device, params: TrainSegParams,
              loss_fn: SegmentationLoss) -> dict[str, float]:
    from napari_cellnet.core.metrics import segmentation_report
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels

    probs = _forward_full(net, [s.window for s in val], device, [s.movie_labels.shape for s in val])
    losses = []
    preds = []
    for s, p in zip(val, probs, strict=True):
        target = torch.from_numpy(make_target(s.movie_labels, params.classes)[None])
        logp = torch.from_numpy(np.log(np.clip(p, 1e-8, 1.0))[None])
        losses.append(float(loss_fn(logp, target)))
        preds.append(probabilities_to_labels(p, threshold=params.threshold, min_size=params.min_size))
    # frames of one size are scored together (CTC SEG pools objects over frames)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(val):
        groups.setdefault(s.movie_labels.shape, []).append(i)
    reports = []
    for idx in groups.values():
        rep = segmentation_report(np.stack([preds[i] for i in idx]), np.stack([val[i].movie_labels for i in idx]))
        reports.append((len(idx), rep))
    total = sum(n for n, _ in reports)
    keys = [k for k, v in reports[0][1].items() if isinstance(v, float)]
    out = {k: float(sum(n * r[k] for n, r in reports) / total) for k in keys}
    out["val_loss"] = float(np.mean(losses))
    return out


CALIBRATION_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
CALIBRATION_MIN_SIZES = (0, 10, 20, 30, 50, 100)
CALIBRATION_MAX_FRAMES = 8


def calibrate_postprocessing(
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    thresholds: Sequence[float] = CALIBRATION_THRESHOLDS,
    min_sizes: Sequence[int] = CALIBRATION_MIN_SIZES,
    default: tuple[float, int] = (0.5, 30),
) -> dict[str, Any]:
    """The foreground threshold and minimum object size that maximise CTC SEG on annotated frames.

    A network trained with class weights and Dice predicts cells a little larger or smaller
    than the annotator drew them; the threshold of
    :func:`~napari_cellnet.segmentation.postprocessing.probabilities_to_labels` moves every predicted
    outline in or out, and the minimum size removes specks. Both are chosen here by a grid
    search of SEG, objects pooled over the frames (ties go to the pair nearest ``default``).

    Parameters
    ----------
    probs : sequence of ndarray, each shape (classes, Y, X)
        Softmax probabilities of the frames (as :func:`~napari_cellnet.segmentation.inference.predict_windows` gives).
    labels : sequence of ndarray, each shape (Y, X), int
        Their instance labels.
    thresholds, min_sizes : sequences
        The grid.
    default : (float, int)
        The uncalibrated pair, reported for comparison and preferred on ties.

    Returns
    -------
    dict
        ``threshold``, ``min_size``, ``seg`` (at the chosen pair), ``default_seg`` (at
        ``default``), ``frames`` (how many) and ``grid`` (``[threshold, min_size, seg]`` rows).
    """
    from napari_cellnet.core.metrics import seg_score
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels

    if len(probs) != len(labels) or not len(probs):
        raise ValueError("Calibration needs the probabilities and labels of at least one annotated frame.")
    gts = [np.asarray(g).astype(np.int64) for g in labels]
    pairs = [(float(t), int(m)) for t in thresholds for m in min_sizes]
    if (float(default[0]), int(default[1])) not in pairs:
        pairs.append((float(default[0]), int(default[1])))

    def seg_of(thr: float, ms: int) -> float:
        total, n = 0.0, 0
        for p, g in zip(probs, gts, strict=True):
            k = int(np.count_nonzero(np.unique(g)))
            if k == 0:
                continue
            s = seg_score(g, probabilities_to_labels(p, threshold=thr, min_size=ms))
            total, n = total + s * k, n + k
        return total / n if n else float("nan")

    grid = [[thr, ms, seg_of(thr, ms)] for thr, ms in pairs]
    scored = [r for r in grid if not math.isnan(r[2])]
    if not scored:
        raise ValueError("The calibration frames hold no object; annotate at least one cell.")
    dist = lambda r: abs(r[0] - default[0]) + abs(r[1] - default[1]) / 100.0  # noqa: E731
    best = max(scored, key=lambda r: (round(r[2], 6), -dist(r)))
    base = next(r for r in grid if r[0] == float(default[0]) and r[1] == int(default[1]))
    return {"threshold": float(best[0]), "min_size": int(best[1]), "seg": float(best[2]),
            "default_seg": float(base[2]), "frames": len(probs), "grid": grid}


def _calibrate_best(path: Path, frames: Sequence[FrameSample], device: torch.device, source: str) -> dict[str, Any]:
    """Calibrate ``best.pt``'s threshold and minimum size on ``frames`` and re-save it."""
    from napari_cellnet.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, task="segmentation")
    net = ckpt.build(device)
    use = list(frames)[:CALIBRATION_MAX_FRAMES]
    probs = _forward_full(net, [s.window for s in use], device, [s.movie_labels.shape for s in use])
    default = (float(ckpt.meta.get("threshold", 0.5)), int(ckpt.meta.get("min_size", 30)))
    cal = calibrate_postprocessing(probs, [s.movie_labels for s in use], default=default)
    cal["source"] = source
    meta = dict(ckpt.meta)
    meta.update(threshold=cal["threshold"], min_size=cal["min_size"], calibration=cal)
    _save(path, net, ckpt.config, meta)
    return cal


def _class_weights(params: TrainSegParams, samples: Sequence[FrameSample]) -> np.ndarray | None:
    if params.class_weighting == "fixed":
        return fixed_class_weights(params.classes, params.cell_weight, params.boundary_weight)
    if params.class_weighting == "median_frequency":
        return median_frequency_weights([make_target(s.labels, params.classes) for s in samples], params.classes)
    return None


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    from napari_cellnet.core.io import write_table

    if not history:
        return
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    write_table(out / HISTORY, {k: [row.get(k, "") for row in history] for k in keys})


# ---------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------


def train_segmentation(
    images: Any,
    labels: Any,
    params: TrainSegParams | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    image_axes: str | Sequence[str] | None = None,
    sources: dict[str, Any] | None = None,
) -> Generator[TrainEvent | Progress, Any, TrainResult]:
    """Train the temporal U-Net; a generator that yields events and returns a :class:`TrainResult`.

    Parameters
    ----------
    images : array_like, shape (T, Y, X) or (T, C, Y, X), or a list of movies
        Image movies (numpy, memory-mapped or dask; only the needed frames are read).
    labels : array_like, shape (T, Y, X), or a list (one per movie)
        Instance labels; frames not annotated are all zero (or not listed in
        ``params.frames``).
    params : TrainSegParams, optional
        The run's settings (defaults: the "light" preset). On resume, None means "as saved".
    out_dir : path-like
        Folder for ``best.pt``, ``last.pt``, ``params.json`` and ``history.csv``. Required.
    resume : path-like, optional
        A ``last.pt`` to continue from (same data; ``params.epochs`` may be raised).
    overwrite : bool
        Replace a model already in ``out_dir``.
    image_axes : str or list of str, optional
        Axes of the image movies ("TYX", "TCYX", "TYXC"); guessed otherwise.
    sources : dict, optional
        Provenance recorded in the checkpoint (e.g. file paths or layer names).

    Yields
    ------
    Progress
        ``stage="prepare"`` once the windows are read (``message`` says what was chosen).
    TrainEvent
        ``kind="step"`` after every batch, ``kind="epoch"`` after validation.
        Send :data:`~napari_cellnet.core.jobs.STOP` to end the run between batches.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, OSError
        With a message that names the fix (mismatched shapes, no annotated frame, float or
        negative labels, validation without a spare annotated frame, a window longer than
        the movie, a folder that already holds a model, a full disk).
    """
    threads = torch.get_num_threads()
    try:
        return (yield from _train(images, labels, params, out_dir, resume=resume, overwrite=overwrite,
                                  image_axes=image_axes, sources=sources))
    finally:
        torch.set_num_threads(threads)  # params.threads must not outlive the run (napari's process)


def _train(
    images: Any,
    labels: Any,
    params: TrainSegParams | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    image_axes: str | Sequence[str] | None = None,
    sources: dict[str, Any] | None = None,
) -> Generator[TrainEvent | Progress, Any, TrainResult]:
    t_start = time.perf_counter()
    from napari_cellnet.core.device import resolve, use_all_cores
    from napari_cellnet.core.optim import (
        build_optimizer,
        build_scheduler,
        current_lr,
        step_scheduler,
    )
    from napari_cellnet.models import build_model

    state: dict[str, Any] | None = None
    resume_path = Path(resume) if resume is not None else None
    if resume_path is not None:
        from napari_cellnet.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(resume_path, task="segmentation")
        state = ckpt.meta.get("resume")
        if state is None:
            raise ValueError(f"{resume_path.name} carries no training state (only last.pt does); resume from the "
                             "last.pt in the same folder.")
        saved = TrainSegParams.from_dict(dict(ckpt.meta["training"]["params"]))
        if params is None:
            params = saved
        else:
            diff = [k for k in _STRUCTURAL if getattr(params, k) != getattr(saved, k)]
            if diff:
                raise ValueError(
                    f"Resuming needs the settings of the original run; these differ: {', '.join(diff)}. "
                    "Only epochs, early stopping, best metric and device may change (or pass params=None)."
                )
    params = params or TrainSegParams()
    params.validate()
    out = _check_out_dir(out_dir, overwrite, resume_path)

    # ---- data: only the windows around the chosen frames are read and kept
    imgs, labs = as_movie_list(images, labels, image_axes)
    train_refs, val_refs, notes = split_frames(labs, params.frames, params.val_frames, params.val_fraction)
    for m, img in enumerate(imgs):
        if params.window > len(img):
            raise ValueError(
                f"The movie{f' {m}' if len(imgs) > 1 else ''} has T={len(img)} frame(s) but the window is "
                f"{params.window}. Choose a window of at most {len(img) if len(img) % 2 else len(img) - 1} "
                "(window 1 uses single frames)."
            )
    train, stats = extract_windows(imgs, labs, train_refs, params.window, params.edge, params.drift,
                                   params.norm_low, params.norm_high, params.background_subtraction,
                                   scale=params.scale)
    val, _ = extract_windows(imgs, labs, val_refs, params.window, params.edge, params.drift,
                             params.norm_low, params.norm_high, params.background_subtraction, stats=stats,
                             scale=params.scale)
    fingerprint = _fingerprint(train + val)
    if state is not None and state.get("fingerprint") != fingerprint:
        raise ValueError(
            "The movie or labels differ from the run being resumed (different annotated frames). Resume with the "
            "same images and labels, or start a new run in another folder."
        )
    in_channels = int(imgs[0].shape[1])
    config = params.model_config_full(in_channels)
    div = int(build_model(MODEL_NAME, **config).size_divisor)
    if params.patch_size % div:
        lo_p, hi_p = (params.patch_size // div) * div, (params.patch_size // div + 1) * div
        raise ValueError(
            f"The patch size {params.patch_size} is not a multiple of {div} (the network halves the image "
            f"{int(math.log2(div))} times); use {lo_p or hi_p} or {hi_p}."
        )

    # ---- model, loss, optimiser
    device = resolve(params.device)
    if params.threads > 0:
        torch.set_num_threads(int(params.threads))
    elif device.type == "cpu":
        use_all_cores()
    torch.manual_seed(int(params.seed))
    net = build_model(MODEL_NAME, **config).to(device)
    weights = _class_weights(params, train)
    loss_fn = SegmentationLoss(params.loss, class_weights=None if params.weight_map else weights).to(device)
    val_loss_fn = SegmentationLoss(params.loss, class_weights=weights)
    opt = build_optimizer(params.optimizer, net.parameters(), params.lr, params.weight_decay, params.momentum)
    sched = build_scheduler(params.scheduler, opt, params.epochs, gamma=params.lr_decay, min_lr=params.min_lr,
                            warmup_epochs=params.warmup_epochs)
    sampler = PatchSampler(train, params.patch_size, params.classes, params.augment_params(), params.aug_rate,
                           params.fg_fraction, params.weight_map,
                           class_weights=weights, w0=params.w0, sigma=params.sigma)
    steps = math.ceil(len(sampler) / params.batch_size)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    epoch, start_step, bad_epochs = 0, 0, 0
    partial = (0.0, 0)
    if state is not None:
        net.load_state_dict(ckpt.state_dict)
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        history = [dict(r) for r in state["history"]]
        best = dict(state["best"]) if state.get("best") else None
        epoch, start_step, bad_epochs = int(state["epoch"]), int(state["step"]), int(state["bad_epochs"])
        partial = (float(state["loss_sum"]), int(state["loss_n"]))
        notes.append(f"resumed from {resume_path} at epoch {epoch + 1}, step {start_step + 1}")
    if sched is not None and isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
        sched.T_max = params.epochs  # epochs may have been raised on resume

    metric_name = params.best_metric if val else "train_loss"
    mode = BEST_METRICS.get(metric_name, "min")
    if not val and params.best_metric != "val_loss":
        notes.append("no validation frame: best.pt is the epoch with the lowest training loss")
    params.to_json(out / PARAMS)

    def meta(epoch_done: int, val_metrics: dict[str, float] | None) -> dict[str, Any]:
        return {
            "window": int(params.window), "in_channels": in_channels, "edge": params.edge,
            "normalization": {"method": "percentile", "low": float(params.norm_low), "high": float(params.norm_high),
                              "max_frames": NORM_MAX_FRAMES, "scope": "movie"},
            "background_subtraction": bool(params.background_subtraction), "drift": bool(params.drift),
            "scale": float(params.scale), "class_names": CLASS_NAMES[params.classes], "classes": int(params.classes),
            "threshold": float(params.threshold), "min_size": int(params.min_size), "preset": params.preset,
            "training": {
                "params": params.to_dict(), "epoch": int(epoch_done), "val_metrics": dict(val_metrics or {}),
                "best_metric": metric_name, "train_frames": [list(r) for r in train_refs],
                "val_frames": [list(r) for r in val_refs],
                "movies": [list(int(n) for n in i.shape) for i in imgs],
                "normalization_values": [[s.low_value, s.high_value] for s in stats],
                "sources": dict(sources or {}), "device": str(device), "torch": str(torch.__version__),
            },
        }

    def save_last(epoch_next: int, step_next: int, loss_sum: float, loss_n: int) -> Path:
        m = meta(epoch_next, history[-1] if history else None)
        m["resume"] = {
            "optimizer": opt.state_dict(), "scheduler": None if sched is None else sched.state_dict(),
            "epoch": int(epoch_next), "step": int(step_next), "history": history, "best": best,
            "bad_epochs": int(bad_epochs), "loss_sum": float(loss_sum), "loss_n": int(loss_n),
            "fingerprint": fingerprint,
        }
        return _save(out / LAST, net, config, m)

    def result(stopped: bool, early: bool, last_path: Path | None) -> TrainResult:
        best_path = out / BEST if (out / BEST).exists() and best is not None else None
        return TrainResult(out, best_path, last_path, history, best, stopped, early, len(history), params,
                           notes, time.perf_counter() - t_start)

    def finish(early: bool) -> Generator[Progress, Any, TrainResult]:
        """End of a run that was not stopped: calibrate best.pt's post-processing, then the result."""
        cal = None
        frames, source = (val, "validation") if val else (train, "training")
        wanted = params.calibrate == "any" or (params.calibrate == "validation" and bool(val))
        if wanted and best is not None and (out / BEST).exists():
            yield Progress("calibrate", 0, 1, f"choosing the threshold and minimum size on the {source} frames")
            cal = _calibrate_best(out / BEST, frames, device, source)
            notes.append(f"post-processing calibrated on the {source} frames: threshold {cal['threshold']:.2f}, "
                         f"min size {cal['min_size']} px (SEG {cal['default_seg']:.3f} -> {cal['seg']:.3f})")
        res = result(False, early, last_path)
        res.calibration = cal
        return res

    n_train = len(train)
    yield Progress("prepare", 1, 1,
                   f"{n_train} training frame(s), {len(val)} validation frame(s), {len(sampler)} patches of "
                   f"{params.patch_size}px per epoch ({steps} steps of {params.batch_size}) on {device}"
                   + ("; " + "; ".join(notes) if notes else ""))

    step_times: list[float] = []
    val_time = 0.0
    last_path: Path | None = out / LAST if resume_path is not None else None
    while epoch < params.epochs:
        t_epoch = time.perf_counter()
        plan = sampler.plan(params.seed, epoch)
        loss_sum, loss_n = partial if start_step else (0.0, 0)
        for step in range(start_step, steps):
            t0 = time.perf_counter()
            specs = plan[step * params.batch_size:(step + 1) * params.batch_size]
            x, y, w = sampler.batch(specs)
            xt = torch.from_numpy(x).to(device)
            yt = torch.from_numpy(y).to(device)
            wt = None if w is None else torch.from_numpy(w).to(device)
            torch.manual_seed(_step_seed(params.seed, epoch, step))
            net.train()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt), yt, wt)
            if not torch.isfinite(loss):
                raise ValueError(
                    f"The training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}: the learning "
                    f"rate {current_lr(opt):g} is too high for this data. Lower it (e.g. {params.lr / 10:g}) and "
                    "start again."
                )
            loss.backward()
            opt.step()
            lv = float(loss.detach())
            loss_sum, loss_n = loss_sum + lv, loss_n + 1
            step_times.append(time.perf_counter() - t0)
            remaining = (params.epochs - epoch) * steps - (step + 1)
            eta = float(np.median(step_times[-50:])) * remaining + val_time * (params.epochs - epoch)
            sent = yield TrainEvent("step", epoch + 1, params.epochs, step + 1, steps, lv, lr=current_lr(opt),
                                    eta_s=eta, best=best)
            if sent == STOP:
                done = step + 1
                last_path = save_last(epoch, done, loss_sum, loss_n) if done < steps else None
                if last_path is None:  # the epoch's batches are all done: finish it properly below
                    start_step = steps
                    break
                notes.append(f"stopped at epoch {epoch + 1}, step {done} of {steps}")
                return result(True, False, last_path)
        else:
            sent = None
        stop_after_epoch = sent == STOP
        start_step = 0

        # ---- end of epoch: validate, schedule, checkpoint
        t_val = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(loss_n, 1), "lr": current_lr(opt)}
        val_metrics = _validate(net, val, device, params, val_loss_fn) if val else {}
        row.update(val_metrics)
        val_time = time.perf_counter() - t_val
        row["time_s"] = time.perf_counter() - t_epoch
        history.append(row)
        value = row.get(metric_name)
        improved = _is_better(value, None if best is None else best["value"], mode)  # type: ignore[arg-type]
        if improved:
            best = {"epoch": epoch + 1, "metric": metric_name, "value": float(value)}  # type: ignore[arg-type]
            bad_epochs = 0
        else:
            bad_epochs += 1
        step_scheduler(sched, row.get("val_loss", row["train_loss"]))
        epoch += 1
        if improved:
            _save(out / BEST, net, config, meta(epoch, val_metrics))
        last_path = save_last(epoch, 0, 0.0, 0)
        _write_history(out, history)
        early = params.early_stopping > 0 and bad_epochs >= params.early_stopping and epoch < params.epochs
        remaining = (params.epochs - epoch) * steps
        eta = float(np.median(step_times[-50:])) * remaining + val_time * (params.epochs - epoch) if step_times else 0.0
        msg = f"best {metric_name} {best['value']:.4f} at epoch {best['epoch']}" if best else ""
        sent = yield TrainEvent("epoch", epoch, params.epochs, steps, steps, row["train_loss"],
                                val_metrics=dict(val_metrics) or None, best=best, lr=row["lr"],
                                eta_s=eta, message=msg)
        if early:
            notes.append(f"early stopping: no better {metric_name} for {bad_epochs} epochs")
            return (yield from finish(True))
        if sent == STOP or stop_after_epoch:
            notes.append(f"stopped after epoch {epoch}")
            return result(True, False, last_path)
    return (yield from finish(False))
