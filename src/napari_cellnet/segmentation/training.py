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

import os
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import torch

from napari_cellnet.core.jobs import STOP, Progress, TrainEvent
from napari_cellnet.segmentation.params import _STRUCTURAL, TrainSegParams
from napari_cellnet.segmentation.trainer import (
    BEST,
    HISTORY,
    LAST,
    PARAMS,
    Trainer,
    TrainResult,
    read_training_data,
)

__all__ = ["TrainResult", "TrainSegParams", "train_segmentation"]


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
    from napari_cellnet.core.device import torch_threads

    with torch_threads():  # params.threads must not outlive the run (napari's process)
        return (yield from _train(images, labels, params, out_dir, resume=resume, overwrite=overwrite,
                                  image_axes=image_axes, sources=sources))


def saved_params(ckpt: Any) -> TrainSegParams:
    """The :class:`TrainSegParams` a training checkpoint (``best.pt``, ``last.pt``) was trained with.

    Raises
    ------
    ValueError
        For a checkpoint that napari-cellnet training did not write.
    """
    training = ckpt.meta.get("training")
    if not training or "params" not in training:
        raise ValueError(f"{ckpt.path or 'The checkpoint'} was not written by napari-cellnet training; resume "
                         "from a last.pt.")
    return TrainSegParams.from_dict(dict(training["params"]))


def _resume_point(resume: Path | None, params: TrainSegParams | None) -> tuple[TrainSegParams, Any, dict | None]:
    """The parameters to run with and, when resuming, the checkpoint and its training state."""
    if resume is None:
        return params or TrainSegParams(), None, None
    from napari_cellnet.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(resume, task="segmentation")
    state = ckpt.meta.get("resume")
    if state is None:
        raise ValueError(f"{resume.name} carries no training state (only last.pt does); resume from the "
                         "last.pt in the same folder.")
    saved = saved_params(ckpt)
    if params is not None:
        diff = [k for k in _STRUCTURAL if getattr(params, k) != getattr(saved, k)]
        if diff:
            raise ValueError(
                f"Resuming needs the settings of the original run; these differ: {', '.join(diff)}. "
                "Only epochs, early stopping, best metric and device may change (or pass params=None)."
            )
    return params or saved, ckpt, state


def _train(images: Any, labels: Any, params: TrainSegParams | None, out_dir: Any, *, resume: Any, overwrite: bool,
           image_axes: Any, sources: dict[str, Any] | None) -> Generator[TrainEvent | Progress, Any, TrainResult]:
    """The run as its steps: resume point, data, trainer, epochs, finish."""
    from napari_cellnet.core.device import resolve, use_threads

    t_start = time.perf_counter()
    resume_path = Path(resume) if resume is not None else None
    params, ckpt, state = _resume_point(resume_path, params)
    params.validate()
    out = _check_out_dir(out_dir, overwrite, resume_path)
    data = read_training_data(images, labels, params, image_axes)
    device = resolve(params.device)
    use_threads(params.threads, device)
    run = Trainer(params, data, out, device, sources, t_start)
    if state is not None:
        run.restore(ckpt, state, resume_path)  # type: ignore[arg-type]
    if run.sched is not None and isinstance(run.sched, torch.optim.lr_scheduler.CosineAnnealingLR):
        run.sched.T_max = params.epochs  # epochs may have been raised on resume
    if not data.val and params.best_metric != "val_loss":
        data.notes.append("no validation frame: best.pt is the epoch with the lowest training loss")
    params.to_json(out / PARAMS)
    yield Progress("prepare", 1, 1,
                   f"{len(data.train)} training frame(s), {len(data.val)} validation frame(s), {len(run.sampler)} "
                   f"patches of {params.patch_size}px per epoch ({run.steps} steps of {params.batch_size}) on {device}"
                   + ("; " + "; ".join(data.notes) if data.notes else ""))
    while run.epoch < params.epochs:
        t_epoch = time.perf_counter()
        loss_sum, loss_n, stop = yield from run.epoch_steps()
        if stop == "now":
            return run.result(True, False)
        run.start_step = 0
        sent = yield from run.end_epoch(loss_sum, loss_n, t_epoch)
        if run.early_stopped:
            data.notes.append(f"early stopping: no better {run.metric_name} for {run.bad_epochs} epochs")
            return (yield from run.finish(True))
        if sent == STOP or stop == "after epoch":
            data.notes.append(f"stopped after epoch {run.epoch}")
            return run.result(True, False)
    return (yield from run.finish(False))
