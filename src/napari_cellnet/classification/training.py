"""Train morphology classifiers with stratified k-fold cross-validation or a hold-out split.

One call, :func:`train_classifier`, is a job generator (:mod:`napari_cellnet.core.jobs`): it
yields a :class:`~napari_cellnet.core.jobs.TrainEvent` after optimisation steps and after every
epoch, and returns a :class:`ClassifierTrainResult` with the checkpoint to use, the
per-epoch history, per-fold and pooled metrics, and the out-of-fold predictions.

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
class names, input size, channels, preprocessing, augmentation, and the CV summary.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_cellnet.classification.data import (
    SampleSet,
    check_trainable,
    class_weights,
    iterate_batches,
    load_class_folders,
)
from napari_cellnet.classification.inference import predict_proba
from napari_cellnet.classification.params import (  # noqa: F401  (re-exported)
    BALANCE,
    DEMO_MEMBERS,
    LOSSES,
    META_VERSION,
    ClassifierTrainConfig,
)
from napari_cellnet.core import device as devices
from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.core.io import stratified_holdout, stratified_kfold, write_table
from napari_cellnet.core.jobs import STOP, TrainEvent
from napari_cellnet.core.metrics import accuracy, balanced_accuracy, classification_report
from napari_cellnet.core.optim import build_optimizer, build_scheduler, current_lr, step_scheduler
from napari_cellnet.models import build_model, model_kind
from napari_cellnet.models.checkpoint import save_checkpoint


@dataclass
class ClassifierTrainResult:
    """What a training job returns.

    Attributes
    ----------
    checkpoint : Path or None
        The model to use (``model.pt``), None if stopped before any epoch finished.
    fold_checkpoints : list of Path
    history : list of dict
        One row per epoch per run: ``run`` ("fold1".."refit"), ``epoch``, ``train_loss``,
        ``train_accuracy``, ``lr``, validation metrics when there is a validation split.
    folds : list of dict
        :func:`~napari_cellnet.core.metrics.classification_report` of each finished fold's test part.
    pooled : dict or None
        The report of all out-of-fold predictions together.
    summary : dict
        Mean and sd over folds of accuracy, balanced accuracy, macro F1 and macro AUC;
        timings (``train_seconds``, ``train_images_per_s``, ``infer_images_per_s``).
    oof : dict of ndarray
        ``index``, ``fold``, ``y_true``, ``y_pred``, ``proba`` (N, K) of scored samples.
    stopped : bool
    """

    checkpoint: Path | None
    fold_checkpoints: list[Path]
    history: list[dict[str, Any]]
    folds: list[dict[str, Any]]
    pooled: dict[str, Any] | None
    summary: dict[str, Any]
    oof: dict[str, np.ndarray]
    stopped: bool
    class_names: list[str]
    config: dict[str, Any]


def _loss(logits: torch.Tensor, y: torch.Tensor, cfg: ClassifierTrainConfig,
          weights: torch.Tensor | None) -> torch.Tensor:
    if cfg.loss == "focal":
        logp = F.log_softmax(logits, dim=1)
        k = logits.shape[1]
        target = F.one_hot(y, k).float() * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
        focal = (1 - logp.exp()) ** cfg.focal_gamma
        per = -(target * focal * logp)
        if weights is not None:
            per = per * weights[None, :]
        return per.sum(1).mean()
    return F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing)


def _net_config(cfg: ClassifierTrainConfig, n_channels: int, n_classes: int,
                spec: dict[str, Any]) -> dict[str, Any]:
    """Builder config of one network: ``spec``'s options (one of ``cfg.member_specs()``)."""
    options = {k: v for k, v in spec.items() if k != "arch"}
    return {**options, "in_channels": n_channels, "n_classes": n_classes,
            "activation": cfg.activation, "dropout": cfg.dropout}


def _saved_model(cfg: ClassifierTrainConfig, n_channels: int, n_classes: int,
                 net: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    """Registry name and builder config of ``net``: an ensemble, or one network."""
    from napari_cellnet.models.classifier import Ensemble

    specs = cfg.member_specs()
    if isinstance(net, Ensemble):
        if cfg.members is None:  # n networks of one architecture: the compact layout
            return "ensemble", {**_net_config(cfg, n_channels, n_classes, specs[0]), "arch": cfg.arch,
                                "members": len(net.members)}
        return "ensemble", {**_net_config(cfg, n_channels, n_classes, {}), "arch": specs[0]["arch"],
                            "members": specs[:len(net.members)]}
    return specs[0]["arch"], _net_config(cfg, n_channels, n_classes, specs[0])


def _member_seeds(specs: list[dict[str, Any]], seed: int) -> list[int]:
    """``seed + 7919 k`` for the k-th network of each architecture (same arch and options)."""
    seen: dict[str, int] = {}
    seeds = []
    for spec in specs:
        key = json.dumps(spec, sort_keys=True, default=str)
        seeds.append(seed + 7919 * seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return seeds


def _fit_model(run: str, cfg: ClassifierTrainConfig, train: SampleSet, val: SampleSet | None, dev: torch.device,
               fold: int | None, folds: int | None, history: list[dict[str, Any]], seed: int,
               ) -> Generator[TrainEvent, Any, tuple[torch.nn.Module | None, bool, dict[str, float]]]:
    """:func:`_fit` once, or once per member of an ensemble (``cfg.member_specs()``).

    On STOP during a later member, the members already finished form the ensemble (the
    half-trained one is dropped; one finished member is returned as a plain network); during
    the first, that member is returned as it is.
    """
    specs = cfg.member_specs()
    if len(specs) == 1:
        return (yield from _fit(run, cfg, train, val, dev, fold, folds, history, seed, specs[0]))
    from napari_cellnet.models.classifier import Ensemble

    members: list[torch.nn.Module] = []
    timing = {"train_seconds": 0.0, "train_images": 0.0}
    stopped = False
    for i, (spec, member_seed) in enumerate(zip(specs, _member_seeds(specs, seed), strict=True)):
        label = f"{run} net {i + 1}/{len(specs)}" + (f" ({spec['arch']})" if cfg.members is not None else "")
        net, stopped, t = yield from _fit(label, cfg, train, val, dev, fold, folds, history, member_seed, spec)
        timing = {key: timing[key] + t[key] for key in timing}
        if net is not None and (not stopped or not members):
            members.append(net)
        if stopped or net is None:
            break
    if len(members) < 2:  # none, or stopped during the first: a single network
        return (members[0] if members else None), stopped, timing
    return Ensemble(members).eval(), stopped, timing


def _meta(cfg: ClassifierTrainConfig, samples: SampleSet, extra: dict[str, Any]) -> dict[str, Any]:
    from napari_cellnet import __version__

    prep = samples.preprocessing
    return {
        "meta_version": META_VERSION,
        "class_names": list(samples.class_names),
        "input_size": prep.size,
        "in_channels": prep.n_channels,
        "preprocessing": prep.to_dict(),
        "augment": cfg.augment.to_dict() if cfg.augment is not None else None,
        "train_config": json.loads(json.dumps(cfg.to_dict(), default=str)),
        "package_version": __version__,
        **samples.meta,
        **extra,
    }


def _fit(run: str, cfg: ClassifierTrainConfig, train: SampleSet, val: SampleSet | None, dev: torch.device,
         fold: int | None, folds: int | None, history: list[dict[str, Any]], seed: int,
         spec: dict[str, Any],
         ) -> Generator[TrainEvent, Any, tuple[torch.nn.Module | None, bool, dict[str, float]]]:
    """One training run of one network (``spec``, one of ``cfg.member_specs()``); returns
    (best or last network, stopped?, timing)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    k = len(train.class_names)
    config = _net_config(cfg, train.preprocessing.n_channels, k, spec)
    net = build_model(spec["arch"], **config, pretrained=cfg.pretrained).to(dev)
    opt = build_optimizer(cfg.optimizer, net.parameters(), cfg.lr, cfg.weight_decay, momentum=cfg.momentum)
    sched = build_scheduler(cfg.scheduler, opt, cfg.epochs, warmup_epochs=cfg.warmup_epochs)
    use_w = cfg.loss == "weighted_ce" or cfg.balance == "weights"
    weights = torch.from_numpy(class_weights(train.labels, k)).to(dev) if use_w else None
    n_train = len(train)
    per_epoch = n_train * cfg.aug_rate
    steps = max(1, per_epoch // cfg.batch_size if per_epoch >= cfg.batch_size else 1)
    best_state: dict[str, Any] | None = None
    best_loss = float("inf")
    best_epoch = 0
    stale = 0
    seen = 0
    t_train = 0.0
    t0 = time.perf_counter()
    stopped = False
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        losses: list[float] = []
        correct = 0
        count = 0
        t_epoch = time.perf_counter()
        for step, (xb, yb) in enumerate(iterate_batches(rng, train.images, train.labels, cfg.batch_size,
                                                        cfg.augment, cfg.aug_rate, cfg.balance), start=1):
            if xb.shape[0] < 2:  # BatchNorm cannot train on a single sample
                continue
            x = torch.from_numpy(xb).to(dev)
            y = torch.from_numpy(yb).to(dev)
            if cfg.mixup > 0:
                lam = float(rng.beta(cfg.mixup, cfg.mixup))
                partner = torch.from_numpy(rng.permutation(len(yb))).to(dev)
                logits = net(lam * x + (1 - lam) * x[partner])
                loss = lam * _loss(logits, y, cfg, weights) + (1 - lam) * _loss(logits, y[partner], cfg, weights)
            else:
                logits = net(x)
                loss = _loss(logits, y, cfg, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            correct += int((logits.argmax(1) == y).sum())
            count += len(yb)
            if step % 5 == 0 or step == steps:
                done = (epoch - 1) * steps + step
                eta = (time.perf_counter() - t0) / done * (cfg.epochs * steps - done)
                reply = yield TrainEvent("step", epoch, cfg.epochs, step, steps, losses[-1], lr=current_lr(opt),
                                         eta_s=eta, fold=fold, folds=folds, message=run)
                if reply == STOP:
                    stopped = True
                    break
        t_train += time.perf_counter() - t_epoch
        seen += count
        if not losses:
            break
        row: dict[str, Any] = {"run": run, "epoch": epoch, "train_loss": float(np.mean(losses)),
                               "train_accuracy": correct / max(count, 1), "lr": current_lr(opt)}
        val_metrics: dict[str, float] = {}
        if val is not None and len(val):
            proba = yield from _quiet(predict_proba(net, val.images, dev, 256, 1))
            with torch.no_grad():
                vloss = float(F.nll_loss(torch.log(torch.from_numpy(proba).clamp_min(1e-8)),
                                         torch.from_numpy(val.labels)))
            pred = proba.argmax(1)
            val_metrics = {"val_loss": vloss, "accuracy": accuracy(val.labels, pred),
                           "balanced_accuracy": balanced_accuracy(val.labels, pred, k)}
            row.update(val_metrics)
            if vloss < best_loss:
                best_loss, best_epoch, stale = vloss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
        history.append(row)
        step_scheduler(sched, val_metrics.get("val_loss", row["train_loss"]))
        reply = yield TrainEvent("epoch", epoch, cfg.epochs, steps, steps, row["train_loss"],
                                 val_metrics=val_metrics or {"train_accuracy": row["train_accuracy"]},
                                 best={"epoch": best_epoch, "val_loss": best_loss} if best_state else None,
                                 lr=current_lr(opt), fold=fold, folds=folds, message=run)
        if stopped or reply == STOP:
            stopped = True
            break
        if cfg.patience is not None and stale >= cfg.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    timing = {"train_seconds": t_train, "train_images": seen}
    return (net if history and history[-1]["run"] == run else None), stopped, timing


def _quiet(job: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Run a sub-job without forwarding its progress events (validation inside an epoch)."""
    try:
        while True:
            next(job)
    except StopIteration as done:
        return done.value
    yield  # pragma: no cover - makes this a generator


def _split_val(samples: SampleSet, fraction: float, seed: int) -> tuple[SampleSet, SampleSet | None]:
    if fraction <= 0:
        return samples, None
    tr, va = stratified_holdout(samples.labels, fraction, seed)
    return samples.subset(tr), samples.subset(va)


def _summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(values: list[float]) -> dict[str, float]:
        a = np.asarray(values, float)
        return {"mean": float(np.mean(a)), "sd": float(np.std(a, ddof=1)) if a.size > 1 else 0.0}
    if not reports:
        return {}
    return {
        "accuracy": stat([r["accuracy"] for r in reports]),
        "balanced_accuracy": stat([r["balanced_accuracy"] for r in reports]),
        "macro_f1": stat([r["macro"]["f1"] for r in reports]),
        "macro_auc": stat([r["macro"].get("auc", float("nan")) for r in reports]),
        "n_folds": len(reports),
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
    cfg = config or ClassifierTrainConfig()
    if model_kind(cfg.arch) != "classification":
        raise ValueError(f"{cfg.arch} is not a classification model.")
    samples = data if isinstance(data, SampleSet) else load_class_folders(data, cfg.preprocessing)
    samples = samples.labelled()
    check_trainable(samples)
    if cfg.augment is None:
        cfg = replace(cfg, augment=AugmentParams.preset("strong" if samples.preprocessing.align == "none"
                                                        else "aligned"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    else:
        devices.use_all_cores()
    dev = devices.resolve(cfg.device)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    names = list(samples.class_names)
    k = len(names)
    if cfg.folds >= 2:
        splits = stratified_kfold(samples.labels, cfg.folds, cfg.seed)
    elif cfg.folds == 1:
        splits = [stratified_holdout(samples.labels, cfg.holdout, cfg.seed)]
    else:
        splits = []
    n_runs = len(splits)
    history: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    fold_ckpts: list[Path] = []
    oof_idx: list[np.ndarray] = []
    oof_fold: list[np.ndarray] = []
    oof_proba: list[np.ndarray] = []
    stopped = False
    t_train = 0.0
    n_seen = 0
    t_infer = 0.0
    n_infer = 0
    best_fold: tuple[float, Path | None] = (-1.0, None)
    last_net = None
    for f, (tr, te) in enumerate(splits, start=1):
        train, val = _split_val(samples.subset(tr), cfg.val_fraction, cfg.seed + f)
        net, stopped, timing = yield from _fit_model(f"fold{f}", cfg, train, val, dev, f, n_runs, history,
                                                     cfg.seed + f)
        t_train += timing["train_seconds"]
        n_seen += int(timing["train_images"])
        if net is None:
            break
        test = samples.subset(te)
        t1 = time.perf_counter()
        aligned = test.preprocessing.align != "none"  # how the samples were really prepared
        proba = yield from _quiet(predict_proba(net, test.images, dev, 256, cfg.tta, aligned))
        t_infer += time.perf_counter() - t1
        n_infer += len(test) * (min(cfg.tta, 4) if aligned else cfg.tta)
        rep = classification_report(test.labels, proba.argmax(1), proba, names)
        rep["fold"] = f
        reports.append(rep)
        oof_idx.append(te)
        oof_fold.append(np.full(len(te), f))
        oof_proba.append(proba)
        last_net = net
        if out is not None:
            p = save_checkpoint(out / f"fold{f}.pt", net, *_saved_model(cfg, samples.preprocessing.n_channels, k, net),
                                "classification", _meta(cfg, samples, {"fold": f, "fold_report": _slim(rep)}))
            fold_ckpts.append(p)
            if float(rep["accuracy"]) > best_fold[0]:  # type: ignore[arg-type]
                best_fold = (float(rep["accuracy"]), p)  # type: ignore[arg-type]
        if stopped:
            break
    pooled = None
    oof: dict[str, np.ndarray] = {}
    if reports:
        idx = np.concatenate(oof_idx)
        proba = np.concatenate(oof_proba)
        y = samples.labels[idx]
        pooled = classification_report(y, proba.argmax(1), proba, names)
        oof = {"index": idx, "fold": np.concatenate(oof_fold), "y_true": y, "y_pred": proba.argmax(1), "proba": proba}
    summary = _summary(reports)
    checkpoint: Path | None = None
    refit_net = None
    if (cfg.refit or not splits) and not stopped:
        refit_net, stopped, timing = yield from _fit_model("refit", cfg, *_split_val(samples, cfg.val_fraction,
                                                                                     cfg.seed),
                                                           dev, None, None, history, cfg.seed)
        t_train += timing["train_seconds"]
        n_seen += int(timing["train_images"])
        if stopped and best_fold[1] is not None:
            refit_net = None  # a half-trained refit is worse than a finished fold model: keep the best fold
    summary.update({
        "train_seconds": t_train,
        "train_images_per_s": n_seen / t_train if t_train else float("nan"),
        "infer_images_per_s": n_infer / t_infer if t_infer else float("nan"),
        "device": str(dev),
        "n_samples": len(samples),
        "class_counts": samples.counts(),
    })
    extra = {"cv_summary": {k2: v for k2, v in summary.items() if k2 != "class_counts"},
             "cv_folds": cfg.folds, "selected_by": "refit on all samples" if refit_net is not None else "best fold"}
    if out is not None:
        n_ch = samples.preprocessing.n_channels
        if refit_net is not None:
            checkpoint = save_checkpoint(out / "model.pt", refit_net, *_saved_model(cfg, n_ch, k, refit_net),
                                         "classification", _meta(cfg, samples, extra))
        elif best_fold[1] is not None:
            checkpoint = out / "model.pt"
            shutil.copyfile(best_fold[1], checkpoint)
        elif last_net is not None:
            checkpoint = save_checkpoint(out / "model.pt", last_net, *_saved_model(cfg, n_ch, k, last_net),
                                         "classification", _meta(cfg, samples, extra))
        _write_outputs(out, cfg, samples, history, reports, pooled, summary, oof)
    return ClassifierTrainResult(checkpoint, fold_ckpts, history, reports, pooled, summary, oof, stopped,
                                 names, cfg.to_dict())


def _slim(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("n", "accuracy", "balanced_accuracy", "confusion_matrix")}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if np.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _write_outputs(out: Path, cfg: ClassifierTrainConfig, samples: SampleSet, history: list[dict[str, Any]],
                   reports: list[dict[str, Any]], pooled: dict[str, Any] | None, summary: dict[str, Any],
                   oof: dict[str, np.ndarray]) -> None:
    report = {"config": cfg.to_dict(), "class_names": samples.class_names, "summary": summary,
              "folds": reports, "pooled": pooled}
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(_jsonable(report), indent=1))
    os.replace(tmp, out / "report.json")
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))
        write_table(out / "history.csv", {k: [row.get(k, "") for row in history] for k in keys})
    if oof:
        cols: dict[str, Any] = {}
        for name, values in samples.sources.items():
            cols[name] = np.asarray(values)[oof["index"]]
        cols["fold"] = oof["fold"]
        cols["true_class"] = [samples.class_names[i] for i in oof["y_true"]]
        cols["predicted_class"] = [samples.class_names[i] for i in oof["y_pred"]]
        for i, c in enumerate(samples.class_names):
            cols[f"p_{c}"] = oof["proba"][:, i]
        write_table(out / "oof_predictions.csv", cols)


def cv_table(result: ClassifierTrainResult) -> str:
    """The CV result as a plain-text table (one row per fold, then mean +- sd and pooled)."""
    lines = [f"{'fold':>6} {'n':>4} {'accuracy':>9} {'bal.acc':>8} {'macro F1':>9} {'macro AUC':>10}"]
    for r in result.folds:
        lines.append(f"{r['fold']:>6} {r['n']:>4} {r['accuracy']:>9.3f} {r['balanced_accuracy']:>8.3f} "
                     f"{r['macro']['f1']:>9.3f} {r['macro'].get('auc', float('nan')):>10.3f}")
    s = result.summary
    if result.folds:
        lines.append(f"{'mean':>6} {'':>4} {s['accuracy']['mean']:>9.3f} {s['balanced_accuracy']['mean']:>8.3f} "
                     f"{s['macro_f1']['mean']:>9.3f} {s['macro_auc']['mean']:>10.3f}")
        lines.append(f"{'sd':>6} {'':>4} {s['accuracy']['sd']:>9.3f} {s['balanced_accuracy']['sd']:>8.3f} "
                     f"{s['macro_f1']['sd']:>9.3f} {s['macro_auc']['sd']:>10.3f}")
    if result.pooled:
        p = result.pooled
        lines.append(f"{'pooled':>6} {p['n']:>4} {p['accuracy']:>9.3f} {p['balanced_accuracy']:>8.3f} "
                     f"{p['macro']['f1']:>9.3f} {p['macro'].get('auc', float('nan')):>10.3f}")
        lines.append("")
        lines.append("pooled confusion matrix (rows: true, columns: predicted)")
        names = result.class_names
        w = max(len(n) for n in names)
        lines.append(" " * (w + 1) + " ".join(f"{n[:8]:>8}" for n in names))
        for n, row in zip(names, p["confusion_matrix"], strict=True):
            lines.append(f"{n:>{w}} " + " ".join(f"{v:>8}" for v in row))
        lines.append("")
        lines.append(f"{'class':>{w}} {'precision':>9} {'recall':>7} {'F1':>6} {'specif.':>8} {'NPV':>6} {'AUC':>6}")
        for n in names:
            c = p["per_class"][n]
            lines.append(f"{n:>{w}} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} "
                         f"{c['specificity']:>8.3f} {c['npv']:>6.3f} {c.get('auc', float('nan')):>6.3f}")
    return "\n".join(lines)
