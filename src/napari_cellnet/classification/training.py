"""Train morphology classifiers with stratified k-fold cross-validation or a hold-out split.

One call, :func:`train_classifier`, is a job generator (:mod:`napari_cellnet.core.jobs`): it
yields a :class:`~napari_cellnet.core.jobs.TrainEvent` after optimisation steps and after every
epoch, and returns a :class:`~napari_cellnet.classification.report.ClassifierTrainResult` with
the checkpoint to use, the per-epoch history, per-fold and pooled metrics, and the
out-of-fold predictions. It reads as its steps: resolve the recipe and the samples
(:func:`prepare_training`), fit and score each fold (:func:`run_fold`), refit on everything,
then pick and save the model and write the report (:mod:`napari_cellnet.classification.report`).
Fitting one model is :mod:`napari_cellnet.classification.fit`.

How the numbers stay honest on tiny datasets:

* **k-fold**: each fold trains on k-1 parts and is scored once, on its held-out part,
  with the model chosen *without* looking at that part: either the last epoch
  (``val_fraction=0``) or the epoch with the lowest loss on an inner validation split
  carved (stratified) from the training part. The pooled report scores the out-of-fold
  predictions of all folds together. Folds are never ensembled.
* **hold-out** (``folds=1``): the same with one stratified test split of ``holdout``.
* **the shipped model**: with ``refit=True`` a last run trains on every sample (same
  recipe, same number of epochs) and is saved as ``model.pt``; the CV table describes the
  recipe that produced it. Without refit, ``model.pt`` is a copy of the best fold's model
  (chosen on its own test fold, which the report says).

Stop (``gen.send(STOP)``) ends the current run after the step, keeps its best model so
far, skips the remaining folds and returns the metrics of the folds that finished.

Checkpoints (:mod:`napari_cellnet.models.checkpoint`, task ``"classification"``) carry
class names, input size, channels, preprocessing, augmentation, and the CV summary
(:class:`~napari_cellnet.classification.meta.ClassifierMeta`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellnet.classification.data import SampleSet, load_class_folders
from napari_cellnet.classification.fit import (
    Where,
    fit_model,
    model_recipe,
    quiet,
    split_validation,
)
from napari_cellnet.classification.inference import predict_proba
from napari_cellnet.classification.meta import ClassifierMeta
from napari_cellnet.classification.params import ClassifierTrainConfig
from napari_cellnet.classification.report import (
    ClassifierTrainResult,
    cv_outcome,
    fold_report,
    pool_out_of_fold,
    slim_report,
    summarise_folds,
    write_outputs,
)
from napari_cellnet.classification.sampling import check_trainable
from napari_cellnet.core import device as devices
from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.core.jobs import TrainEvent
from napari_cellnet.core.splits import stratified_holdout, stratified_kfold
from napari_cellnet.models import model_kind
from napari_cellnet.models.checkpoint import save_checkpoint


@dataclass
class CrossValidation:
    """What the folds of one training have produced so far."""

    history: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    fold_checkpoints: list[Path] = field(default_factory=list)
    oof_index: list[np.ndarray] = field(default_factory=list)
    oof_fold: list[np.ndarray] = field(default_factory=list)
    oof_proba: list[np.ndarray] = field(default_factory=list)
    stopped: bool = False
    train_seconds: float = 0.0
    train_images: int = 0
    infer_seconds: float = 0.0
    infer_images: int = 0
    best_fold: tuple[float, Path | None] = (-1.0, None)
    last_net: torch.nn.Module | None = None

    def add_timing(self, timing: dict[str, float]) -> None:
        self.train_seconds += timing["train_seconds"]
        self.train_images += int(timing["train_images"])


def prepare_training(data: SampleSet | str | os.PathLike[str],
                     config: ClassifierTrainConfig | None) -> tuple[ClassifierTrainConfig, SampleSet, torch.device]:
    """The recipe (augmentation preset filled in for the samples' alignment), the labelled
    samples, and the device, with torch's CPU threads set.

    Raises
    ------
    ValueError
        A non-classification ``arch``, or samples a classifier cannot learn from.
    """
    cfg = config or ClassifierTrainConfig()
    if model_kind(cfg.arch) != "classification":
        raise ValueError(f"{cfg.arch} is not a classification model; choose a classifier architecture.")
    samples = data if isinstance(data, SampleSet) else load_class_folders(data, cfg.preprocessing)
    samples = samples.labelled()
    check_trainable(samples)
    if cfg.augment is None:
        cfg = replace(cfg, augment=AugmentParams.preset("strong" if samples.preprocessing.align == "none"
                                                        else "aligned"))
    devices.use_threads(cfg.threads)
    return cfg, samples, devices.resolve(cfg.device)


def plan_splits(labels: np.ndarray, cfg: ClassifierTrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of each fold: stratified k-fold for ``cfg.folds >= 2``,
    one stratified hold-out for 1, none for 0."""
    if cfg.folds >= 2:
        return stratified_kfold(labels, cfg.folds, cfg.seed)
    if cfg.folds == 1:
        return [stratified_holdout(labels, cfg.holdout, cfg.seed)]
    return []


def save_classifier(path: Path, net: torch.nn.Module, cfg: ClassifierTrainConfig, samples: SampleSet,
                    half: bool = False, **outcome: Any) -> Path:
    """Save ``net`` trained with ``cfg`` on ``samples`` as a classification checkpoint.

    ``outcome`` goes into the metadata (:meth:`ClassifierMeta.for_training
    <napari_cellnet.classification.meta.ClassifierMeta.for_training>`); ``half`` stores float16
    weights (:func:`~napari_cellnet.models.checkpoint.save_checkpoint`).
    """
    name, config = model_recipe(cfg, samples.preprocessing.n_channels, len(samples.class_names), net)
    meta = ClassifierMeta.for_training(cfg, samples, **outcome).to_dict()
    return save_checkpoint(path, net, name, config, "classification", meta, half=half)


def run_fold(cv: CrossValidation, f: int, n_folds: int, split: tuple[np.ndarray, np.ndarray],
             cfg: ClassifierTrainConfig, samples: SampleSet, dev: torch.device,
             out: Path | None) -> Generator[TrainEvent, Any, bool]:
    """Fit fold ``f`` on its training part, score it on its test part, save ``fold<f>.pt``.

    Returns whether the fold produced a model (False when stopped before an epoch finished).
    """
    tr, te = split
    train, val = split_validation(samples.subset(tr), cfg.val_fraction, cfg.seed + f)
    net, cv.stopped, timing = yield from fit_model(Where(f"fold{f}", f, n_folds), cfg, train, val, dev,
                                                   cv.history, cfg.seed + f)
    cv.add_timing(timing)
    if net is None:
        return False
    test = samples.subset(te)
    t1 = time.perf_counter()
    aligned = test.preprocessing.align != "none"  # how the samples were really prepared
    proba = yield from quiet(predict_proba(net, test.images, dev, 256, cfg.tta, aligned))
    cv.infer_seconds += time.perf_counter() - t1
    cv.infer_images += len(test) * (min(cfg.tta, 4) if aligned else cfg.tta)
    rep = fold_report(test.labels, proba, list(samples.class_names), f)
    cv.reports.append(rep)
    cv.oof_index.append(te)
    cv.oof_fold.append(np.full(len(te), f))
    cv.oof_proba.append(proba)
    cv.last_net = net
    if out is not None:
        p = save_classifier(out / f"fold{f}.pt", net, cfg, samples, fold=f, fold_report=slim_report(rep))
        cv.fold_checkpoints.append(p)
        if float(rep["accuracy"]) > cv.best_fold[0]:
            cv.best_fold = (float(rep["accuracy"]), p)
    return True


def refit(cv: CrossValidation, cfg: ClassifierTrainConfig, samples: SampleSet,
          dev: torch.device) -> Generator[TrainEvent, Any, torch.nn.Module | None]:
    """Fit the shipped model on every sample (same recipe, same epochs, seed ``cfg.seed``).

    After cross-validation the refit keeps no validation split of its own, even when the
    folds chose their epoch on one (``val_fraction``): it trains on every sample for the
    recipe's epochs, as a fold without validation does. Without folds (``folds=0``) it holds
    out ``val_fraction`` to choose its epoch. Returns None when stopped half-way while a
    finished fold model exists (that one is better than a half-trained refit).
    """
    fit_cfg, train, val = cfg, samples, None
    if cfg.val_fraction > 0 and cv.reports:
        fit_cfg = cfg.replace(val_fraction=0.0, patience=None)
    else:
        train, val = split_validation(samples, cfg.val_fraction, cfg.seed)
    net, cv.stopped, timing = yield from fit_model(Where("refit"), fit_cfg, train, val, dev, cv.history, cfg.seed)
    cv.add_timing(timing)
    if cv.stopped and cv.best_fold[1] is not None:
        return None
    return net


def save_final_model(out: Path, cv: CrossValidation, refit_net: torch.nn.Module | None,
                     cfg: ClassifierTrainConfig, samples: SampleSet, outcome: dict[str, Any]) -> Path | None:
    """``out/model.pt``: the refit model, else a copy of the best fold's file, else the last
    fold's model; None when no model finished."""
    if refit_net is not None:
        return save_classifier(out / "model.pt", refit_net, cfg, samples, **outcome)
    if cv.best_fold[1] is not None:
        shutil.copyfile(cv.best_fold[1], out / "model.pt")
        return out / "model.pt"
    if cv.last_net is not None:
        return save_classifier(out / "model.pt", cv.last_net, cfg, samples, **outcome)
    return None


def _timing(cv: CrossValidation, dev: torch.device, samples: SampleSet) -> dict[str, Any]:
    return {
        "train_seconds": cv.train_seconds,
        "train_images_per_s": cv.train_images / cv.train_seconds if cv.train_seconds else float("nan"),
        "infer_images_per_s": cv.infer_images / cv.infer_seconds if cv.infer_seconds else float("nan"),
        "device": str(dev),
        "n_samples": len(samples),
        "class_counts": samples.counts(),
    }


def train_classifier(
    data: SampleSet | str | os.PathLike[str],
    config: ClassifierTrainConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> Generator[TrainEvent, Any, ClassifierTrainResult]:
    """Train (and cross-validate) a classifier; a job generator.

    Parameters
    ----------
    data : SampleSet or path
        Prepared samples (:mod:`napari_cellnet.classification.data`) or a class-folder dataset,
        prepared with ``config.preprocessing``. Samples with class -1 are left out.
    config : ClassifierTrainConfig
    out_dir : path, optional
        Where ``fold<i>.pt``, ``model.pt``, ``report.json``, ``history.csv`` and
        ``oof_predictions.csv`` are written (nothing is written when None).

    Yields
    ------
    TrainEvent
        ``"step"`` events (every 5 steps) and one ``"epoch"`` event per epoch per run.

    Returns
    -------
    ClassifierTrainResult
    """
    cfg, samples, dev = prepare_training(data, config)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    splits = plan_splits(samples.labels, cfg)
    cv = CrossValidation()
    for f, split in enumerate(splits, start=1):
        finished = yield from run_fold(cv, f, len(splits), split, cfg, samples, dev, out)
        if not finished or cv.stopped:
            break
    pooled, oof = pool_out_of_fold(samples, cv.oof_index, cv.oof_fold, cv.oof_proba)
    refit_net = None
    if (cfg.refit or not splits) and not cv.stopped:
        refit_net = yield from refit(cv, cfg, samples, dev)
    summary = {**summarise_folds(cv.reports), **_timing(cv, dev, samples)}
    checkpoint = None
    if out is not None:
        selected_by = "refit on all samples" if refit_net is not None else "best fold"
        checkpoint = save_final_model(out, cv, refit_net, cfg, samples, cv_outcome(summary, cfg.folds, selected_by))
        write_outputs(out, cfg, samples, cv.history, cv.reports, pooled, summary, oof)
    return ClassifierTrainResult(checkpoint, cv.fold_checkpoints, cv.history, cv.reports, pooled, summary, oof,
                                 cv.stopped, list(samples.class_names), cfg.to_dict())
