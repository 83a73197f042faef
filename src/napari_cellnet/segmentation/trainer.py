"""The training loop's parts: the annotated data a run holds, and :class:`Trainer`, which
owns the network, optimiser and patches, runs the batches of an epoch, validates, and
saves ``best.pt`` and ``last.pt``.

:func:`napari_cellnet.segmentation.training.train_segmentation` strings these together
into the stoppable job; the benchmarks reuse :func:`read_training_data`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellnet.core.jobs import STOP, Progress, TrainEvent
from napari_cellnet.segmentation.calibration import calibrate_checkpoint
from napari_cellnet.segmentation.checkpoints import SegmentationMeta, save_segmentation_model
from napari_cellnet.segmentation.data import (
    FrameRef,
    FrameSample,
    as_movie_list,
    check_window_fits,
    extract_windows,
    split_frames,
)
from napari_cellnet.segmentation.losses import (
    SegmentationLoss,
    fixed_class_weights,
    median_frequency_weights,
)
from napari_cellnet.segmentation.params import BEST_METRICS, CLASS_NAMES, MODEL_NAME, TrainSegParams
from napari_cellnet.segmentation.patches import PatchSampler
from napari_cellnet.segmentation.predict import frame_probabilities
from napari_cellnet.segmentation.preprocessing import MovieNormaliser, Normalisation
from napari_cellnet.segmentation.targets import make_target

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


@dataclass
class TrainingData:
    """The annotated windows a run trains and validates on (only these are kept in memory).

    Attributes
    ----------
    images : list of array_like, each shape (T, C, Y, X)
        The movies (lazy arrays stay lazy).
    train_refs, val_refs : list of (movie, frame)
    train, val : list of FrameSample
    normalisers : list of MovieNormaliser
        One per movie (validation shares the training movies').
    notes : list of str
        What was chosen automatically.
    """

    images: list[Any]
    train_refs: list[FrameRef]
    val_refs: list[FrameRef]
    train: list[FrameSample]
    val: list[FrameSample]
    normalisers: list[MovieNormaliser]
    notes: list[str] = field(default_factory=list)

    @property
    def in_channels(self) -> int:
        return int(self.images[0].shape[1])

    @property
    def fingerprint(self) -> str:
        """Identifies the annotated frames (a resumed run must see the same)."""
        h = hashlib.sha1()
        for s in self.train + self.val:
            h.update(f"{s.movie}:{s.frame}:{s.labels.shape}".encode())
            h.update(np.ascontiguousarray(s.labels).tobytes())
        return h.hexdigest()


def read_training_data(images: Any, labels: Any, params: TrainSegParams,
                       image_axes: str | Sequence[str] | None = None) -> TrainingData:
    """Choose the training and validation frames and read their normalised windows.

    Raises
    ------
    ValueError
        Mismatched movies, no annotated frame, a window longer than a movie ...
    """
    imgs, labs = as_movie_list(images, labels, image_axes)
    train_refs, val_refs, notes = split_frames(labs, params.frames, params.val_frames, params.val_fraction)
    for m, img in enumerate(imgs):
        check_window_fits(len(img), params.window, f"The movie{f' {m}' if len(imgs) > 1 else ''}")
    kw = dict(window=params.window, edge=params.edge, drift=params.drift, low=params.norm_low,
              high=params.norm_high, background_subtraction=params.background_subtraction, scale=params.scale)
    train, normalisers = extract_windows(imgs, labs, train_refs, **kw)  # type: ignore[arg-type]
    val, _ = extract_windows(imgs, labs, val_refs, stats=normalisers, **kw)  # type: ignore[arg-type]
    return TrainingData(imgs, train_refs, val_refs, train, val, normalisers, notes)


def network_config(params: TrainSegParams, in_channels: int) -> dict[str, Any]:
    """The network's registry config; refuses a patch size the network cannot take."""
    from napari_cellnet.models import build_model

    config = params.model_config_full(in_channels)
    div = int(build_model(MODEL_NAME, **config).size_divisor)
    if params.patch_size % div:
        lo_p, hi_p = (params.patch_size // div) * div, (params.patch_size // div + 1) * div
        raise ValueError(
            f"The patch size {params.patch_size} is not a multiple of {div} (the network halves the image "
            f"{int(math.log2(div))} times); use {lo_p or hi_p} or {hi_p}."
        )
    return config



def _step_seed(seed: int, epoch: int, step: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch), int(step)]).generate_state(1)[0])


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def validation_metrics(net: torch.nn.Module, val: Sequence[FrameSample], device: torch.device, params: TrainSegParams,
              loss_fn: SegmentationLoss) -> dict[str, float]:
    """Every metric of :func:`~napari_cellnet.core.metrics.segmentation_report` and ``val_loss``
    on whole validation frames, post-processed as inference does (frames of one size pooled)."""
    from napari_cellnet.core.metrics import segmentation_report
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels

    probs = frame_probabilities(net, [s.window for s in val], device, [s.movie_labels.shape for s in val])
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

class Trainer:
    """One training run's moving parts and its bookkeeping: the network, optimiser and
    patches, the epoch/step it is at, the history and the best epoch, and how each is saved."""

    def __init__(self, params: TrainSegParams, data: TrainingData, out: Path, device: torch.device,
                 sources: dict[str, Any] | None, t_start: float) -> None:
        from napari_cellnet.core.optim import build_optimizer, build_scheduler
        from napari_cellnet.models import build_model

        self.params, self.data, self.out, self.device = params, data, out, device
        self.sources, self.t_start = dict(sources or {}), t_start
        self.config = network_config(params, data.in_channels)
        torch.manual_seed(int(params.seed))
        self.net = build_model(MODEL_NAME, **self.config).to(device)
        weights = _class_weights(params, data.train)
        self.loss_fn = SegmentationLoss(params.loss, class_weights=None if params.weight_map else weights).to(device)
        self.val_loss_fn = SegmentationLoss(params.loss, class_weights=weights)
        self.opt = build_optimizer(params.optimizer, self.net.parameters(), params.lr, params.weight_decay,
                                   params.momentum)
        self.sched = build_scheduler(params.scheduler, self.opt, params.epochs, gamma=params.lr_decay,
                                     min_lr=params.min_lr, warmup_epochs=params.warmup_epochs)
        self.sampler = PatchSampler(data.train, params.patch_size, params.classes, params.augment_params(),
                                    params.aug_rate, params.fg_fraction, params.weight_map,
                                    class_weights=weights, w0=params.w0, sigma=params.sigma)
        self.steps = math.ceil(len(self.sampler) / params.batch_size)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.epoch, self.start_step, self.bad_epochs = 0, 0, 0
        self.partial = (0.0, 0)
        self.metric_name = params.best_metric if data.val else "train_loss"
        self.mode = BEST_METRICS.get(self.metric_name, "min")
        self.last_path: Path | None = None
        self.step_times: list[float] = []
        self.val_time = 0.0

    def restore(self, ckpt: Any, state: dict[str, Any], resume: Path) -> None:
        """Continue from ``last.pt``'s weights, optimiser, schedule, history and position."""
        if state.get("fingerprint") != self.data.fingerprint:
            raise ValueError(
                "The movie or labels differ from the run being resumed (different annotated frames). Resume with "
                "the same images and labels, or start a new run in another folder."
            )
        self.net.load_state_dict(ckpt.state_dict)
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state.get("scheduler") is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.history = [dict(r) for r in state["history"]]
        self.best = dict(state["best"]) if state.get("best") else None
        self.epoch, self.start_step = int(state["epoch"]), int(state["step"])
        self.bad_epochs = int(state["bad_epochs"])
        self.partial = (float(state["loss_sum"]), int(state["loss_n"]))
        self.last_path = self.out / LAST
        self.data.notes.append(f"resumed from {resume} at epoch {self.epoch + 1}, step {self.start_step + 1}")

    # ------------------------------------------------------------------ what is saved
    def meta(self, epoch_done: int, val_metrics: dict[str, float] | None) -> SegmentationMeta:
        """The checkpoint metadata after ``epoch_done`` epochs."""
        p, d = self.params, self.data
        return SegmentationMeta(
            window=int(p.window), in_channels=d.in_channels, edge=p.edge,
            normalization=Normalisation(low=float(p.norm_low), high=float(p.norm_high)),
            background_subtraction=bool(p.background_subtraction), drift=bool(p.drift), scale=float(p.scale),
            class_names=CLASS_NAMES[p.classes], classes=int(p.classes), threshold=float(p.threshold),
            min_size=int(p.min_size), preset=p.preset,
            training={
                "params": p.to_dict(), "epoch": int(epoch_done), "val_metrics": dict(val_metrics or {}),
                "best_metric": self.metric_name, "train_frames": [list(r) for r in d.train_refs],
                "val_frames": [list(r) for r in d.val_refs], "movies": [list(int(n) for n in i.shape) for i in d.images],
                "normalization_values": [[s.low_value, s.high_value] for s in d.normalisers],
                "sources": self.sources, "device": str(self.device), "torch": str(torch.__version__),
            },
        )

    def save_last(self, epoch_next: int, step_next: int, loss_sum: float, loss_n: int) -> Path:
        """``last.pt``: the weights and everything needed to continue at ``(epoch_next, step_next)``."""
        meta = self.meta(epoch_next, self.history[-1] if self.history else None)
        meta.resume = {
            "optimizer": self.opt.state_dict(), "scheduler": None if self.sched is None else self.sched.state_dict(),
            "epoch": int(epoch_next), "step": int(step_next), "history": self.history, "best": self.best,
            "bad_epochs": int(self.bad_epochs), "loss_sum": float(loss_sum), "loss_n": int(loss_n),
            "fingerprint": self.data.fingerprint,
        }
        self.last_path = save_segmentation_model(self.out / LAST, self.net, self.config, meta)
        return self.last_path

    def result(self, stopped: bool, early: bool) -> TrainResult:
        best_path = self.out / BEST if (self.out / BEST).exists() and self.best is not None else None
        return TrainResult(self.out, best_path, self.last_path, self.history, self.best, stopped, early,
                           len(self.history), self.params, self.data.notes, time.perf_counter() - self.t_start)

    def finish(self, early: bool) -> Generator[Progress, Any, TrainResult]:
        """End of a run that was not stopped: calibrate best.pt's post-processing, then the result."""
        p, d = self.params, self.data
        cal = None
        frames, source = (d.val, "validation") if d.val else (d.train, "training")
        wanted = p.calibrate == "any" or (p.calibrate == "validation" and bool(d.val))
        if wanted and self.best is not None and (self.out / BEST).exists():
            yield Progress("calibrate", 0, 1, f"choosing the threshold and minimum size on the {source} frames")
            cal = calibrate_checkpoint(self.out / BEST, frames, self.device, source)
            d.notes.append(f"post-processing calibrated on the {source} frames: threshold {cal['threshold']:.2f}, "
                           f"min size {cal['min_size']} px (SEG {cal['default_seg']:.3f} -> {cal['seg']:.3f})")
        res = self.result(False, early)
        res.calibration = cal
        return res

    # ------------------------------------------------------------------ the loop's steps
    def _eta(self, remaining_steps: int) -> float:
        epochs_left = self.params.epochs - self.epoch
        return float(np.median(self.step_times[-50:])) * remaining_steps + self.val_time * epochs_left

    def _batch_loss(self, plan: list[Any], step: int) -> float:
        """One optimiser step on batch ``step`` of the epoch's plan; its loss."""
        from napari_cellnet.core.optim import current_lr

        p = self.params
        x, y, w = self.sampler.batch(plan[step * p.batch_size:(step + 1) * p.batch_size])
        xt, yt = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        wt = None if w is None else torch.from_numpy(w).to(self.device)
        torch.manual_seed(_step_seed(p.seed, self.epoch, step))
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(xt), yt, wt)
        if not torch.isfinite(loss):
            raise ValueError(
                f"The training loss became {loss.item()} at epoch {self.epoch + 1}, step {step + 1}: the learning "
                f"rate {current_lr(self.opt):g} is too high for this data. Lower it (e.g. {p.lr / 10:g}) and "
                "start again."
            )
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def epoch_steps(self) -> Generator[TrainEvent, Any, tuple[float, int, str | None]]:
        """The batches of the current epoch (from ``start_step``), a step event after each.

        Returns the loss sum, the number of batches and how a STOP asked to end: ``"now"``
        (mid-epoch; ``last.pt`` already holds the position), ``"after epoch"`` (at its last
        batch) or None.
        """
        from napari_cellnet.core.optim import current_lr

        p = self.params
        plan = self.sampler.plan(p.seed, self.epoch)
        loss_sum, loss_n = self.partial if self.start_step else (0.0, 0)
        for step in range(self.start_step, self.steps):
            t0 = time.perf_counter()
            lv = self._batch_loss(plan, step)
            loss_sum, loss_n = loss_sum + lv, loss_n + 1
            self.step_times.append(time.perf_counter() - t0)
            eta = self._eta((p.epochs - self.epoch) * self.steps - (step + 1))
            sent = yield TrainEvent("step", self.epoch + 1, p.epochs, step + 1, self.steps, lv, lr=current_lr(self.opt),
                                    eta_s=eta, best=self.best)
            if sent == STOP:
                if step + 1 == self.steps:  # the epoch's batches are all done: finish it properly
                    return loss_sum, loss_n, "after epoch"
                self.save_last(self.epoch, step + 1, loss_sum, loss_n)
                self.data.notes.append(f"stopped at epoch {self.epoch + 1}, step {step + 1} of {self.steps}")
                return loss_sum, loss_n, "now"
        return loss_sum, loss_n, None

    def end_epoch(self, loss_sum: float, loss_n: int, t_epoch: float) -> Generator[TrainEvent, Any, Any]:
        """Validate, schedule, save ``best.pt`` (if better) and ``last.pt``; yields the epoch
        event and returns what the caller sent back."""
        from napari_cellnet.core.optim import current_lr, step_scheduler

        p, d = self.params, self.data
        t_val = time.perf_counter()
        row: dict[str, Any] = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(loss_n, 1),
                               "lr": current_lr(self.opt)}
        val_metrics = validation_metrics(self.net, d.val, self.device, p, self.val_loss_fn) if d.val else {}
        row.update(val_metrics)
        self.val_time = time.perf_counter() - t_val
        row["time_s"] = time.perf_counter() - t_epoch
        self.history.append(row)
        value = row.get(self.metric_name)
        improved = _is_better(value, None if self.best is None else self.best["value"], self.mode)  # type: ignore[arg-type]
        if improved:
            self.best = {"epoch": self.epoch + 1, "metric": self.metric_name, "value": float(value)}  # type: ignore[arg-type]
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        step_scheduler(self.sched, row.get("val_loss", row["train_loss"]))
        self.epoch += 1
        if improved:
            save_segmentation_model(self.out / BEST, self.net, self.config, self.meta(self.epoch, val_metrics))
        self.save_last(self.epoch, 0, 0.0, 0)
        _write_history(self.out, self.history)
        eta = self._eta((p.epochs - self.epoch) * self.steps) if self.step_times else 0.0
        best = self.best
        msg = f"best {self.metric_name} {best['value']:.4f} at epoch {best['epoch']}" if best else ""
        return (yield TrainEvent("epoch", self.epoch, p.epochs, self.steps, self.steps, row["train_loss"],
                                 val_metrics=dict(val_metrics) or None, best=best, lr=row["lr"], eta_s=eta,
                                 message=msg))

    @property
    def early_stopped(self) -> bool:
        p = self.params
        return p.early_stopping > 0 and self.bad_epochs >= p.early_stopping and self.epoch < p.epochs
