"""Fit one classifier (one network, or an ensemble of networks) on one training part.

Cross-validation (:mod:`napari_cellnet.classification.training`) fits a model per fold and a
last one on every sample; each of those fits is :func:`fit_model`, a job generator
(:mod:`napari_cellnet.core.jobs`) that yields :class:`~napari_cellnet.core.jobs.TrainEvent`
and returns the fitted network. Scripts that run single folds in parallel processes
(``benchmarks/classify_fold.py``) call the same steps, so they train exactly the same
networks.

One run of one network (:func:`fit_network`) is: seed, build, then per epoch train on
augmented batches (:func:`train_epoch`), score the inner validation split if there is one
(:func:`validate`, which keeps the best epoch's weights), step the schedule and report.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_cellnet.classification.data import SampleSet
from napari_cellnet.classification.inference import predict_proba
from napari_cellnet.classification.params import ClassifierTrainConfig
from napari_cellnet.classification.sampling import class_weights, iterate_batches
from napari_cellnet.core.jobs import STOP, TrainEvent
from napari_cellnet.core.metrics import accuracy, balanced_accuracy
from napari_cellnet.core.optim import build_optimizer, build_scheduler, current_lr, step_scheduler
from napari_cellnet.core.splits import stratified_holdout
from napari_cellnet.models import build_model

#: What a fit returns: the network (None if no epoch finished), whether it was stopped, and
#: ``{"train_seconds", "train_images"}``.
FitOutcome = tuple[torch.nn.Module | None, bool, dict[str, float]]


def classification_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce", label_smoothing: float = 0.0,
                        focal_gamma: float = 2.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of a batch (``ClassifierTrainConfig.loss``).

    Parameters
    ----------
    logits : Tensor, shape (B, K)
    y : Tensor of int64, shape (B,)
    loss : {"ce", "weighted_ce", "focal"}
        ``"focal"`` is ``-sum_k t_k (1 - p_k)^gamma log p_k`` averaged over the batch, with
        ``t`` the (smoothed) one-hot target (Lin et al. 2017); the others are cross-entropy
        (the weighting comes from ``weights``).
    label_smoothing : float
        Targets ``(1 - s) onehot + s / K``.
    focal_gamma : float
    weights : Tensor, shape (K,), optional
        Per-class weights of the loss terms.

    Returns
    -------
    Tensor, shape ()
    """
    if loss == "focal":
        logp = F.log_softmax(logits, dim=1)
        k = logits.shape[1]
        target = F.one_hot(y, k).float() * (1 - label_smoothing) + label_smoothing / k
        focal = (1 - logp.exp()) ** focal_gamma
        per = -(target * focal * logp)
        if weights is not None:
            per = per * weights[None, :]
        return per.sum(1).mean()
    return F.cross_entropy(logits, y, weight=weights, label_smoothing=label_smoothing)


def network_config(cfg: ClassifierTrainConfig, n_channels: int, n_classes: int,
                   spec: dict[str, Any]) -> dict[str, Any]:
    """Builder config of one network: ``spec``'s options (one of ``cfg.member_specs()``)."""
    options = {k: v for k, v in spec.items() if k != "arch"}
    return {**options, "in_channels": n_channels, "n_classes": n_classes,
            "activation": cfg.activation, "dropout": cfg.dropout}


def model_recipe(cfg: ClassifierTrainConfig, n_channels: int, n_classes: int,
                 net: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    """Registry name and builder config that rebuild ``net`` (an ensemble, or one network),
    as stored in its checkpoint."""
    from napari_cellnet.models.classifier import Ensemble

    specs = cfg.member_specs()
    if isinstance(net, Ensemble):
        if cfg.members is None:  # n networks of one architecture: the compact layout
            return "ensemble", {**network_config(cfg, n_channels, n_classes, specs[0]), "arch": cfg.arch,
                                "members": len(net.members)}
        return "ensemble", {**network_config(cfg, n_channels, n_classes, {}), "arch": specs[0]["arch"],
                            "members": specs[:len(net.members)]}
    return specs[0]["arch"], network_config(cfg, n_channels, n_classes, specs[0])


def member_seeds(specs: list[dict[str, Any]], seed: int) -> list[int]:
    """``seed + 7919 k`` for the k-th network of each architecture (same arch and options)."""
    seen: dict[str, int] = {}
    seeds = []
    for spec in specs:
        key = json.dumps(spec, sort_keys=True, default=str)
        seeds.append(seed + 7919 * seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return seeds


def split_validation(samples: SampleSet, fraction: float, seed: int) -> tuple[SampleSet, SampleSet | None]:
    """A stratified inner validation split of ``fraction`` (None when 0) and the rest."""
    if fraction <= 0:
        return samples, None
    tr, va = stratified_holdout(samples.labels, fraction, seed)
    return samples.subset(tr), samples.subset(va)


def quiet(job: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Run a sub-job without forwarding its progress events (validation inside an epoch)."""
    try:
        while True:
            next(job)
    except StopIteration as done:
        return done.value
    yield  # pragma: no cover - makes this a generator


@dataclass
class Where:
    """Which run a fit is, for its progress events and history rows."""

    run: str
    fold: int | None = None
    folds: int | None = None


def fit_model(where: Where, cfg: ClassifierTrainConfig, train: SampleSet, val: SampleSet | None, dev: torch.device,
              history: list[dict[str, Any]], seed: int) -> Generator[TrainEvent, Any, FitOutcome]:
    """:func:`fit_network` once, or once per member of an ensemble (``cfg.member_specs()``),
    each member from its :func:`member_seeds` seed.

    On STOP during a later member, the members already finished form the ensemble (the
    half-trained one is dropped; one finished member is returned as a plain network); during
    the first, that member is returned as it is.
    """
    specs = cfg.member_specs()
    if len(specs) == 1:
        return (yield from fit_network(where, cfg, train, val, dev, history, seed, specs[0]))
    from napari_cellnet.models.classifier import Ensemble

    members: list[torch.nn.Module] = []
    timing = {"train_seconds": 0.0, "train_images": 0.0}
    stopped = False
    for i, (spec, member_seed) in enumerate(zip(specs, member_seeds(specs, seed), strict=True)):
        label = f"{where.run} net {i + 1}/{len(specs)}" + (f" ({spec['arch']})" if cfg.members is not None else "")
        member_where = Where(label, where.fold, where.folds)
        net, stopped, t = yield from fit_network(member_where, cfg, train, val, dev, history, member_seed, spec)
        timing = {key: timing[key] + t[key] for key in timing}
        if net is not None and (not stopped or not members):
            members.append(net)
        if stopped or net is None:
            break
    if len(members) < 2:  # none, or stopped during the first: a single network
        return (members[0] if members else None), stopped, timing
    return Ensemble(members).eval(), stopped, timing


@dataclass
class FitState:
    """One network's training run: what it optimises and what it has seen so far."""

    net: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    weights: torch.Tensor | None
    steps: int
    t0: float
    best_state: dict[str, Any] | None = None
    best_loss: float = float("inf")
    best_epoch: int = 0
    stale: int = 0
    seen: int = 0
    t_train: float = 0.0
    stopped: bool = False


def start_fit(cfg: ClassifierTrainConfig, train: SampleSet, dev: torch.device, spec: dict[str, Any]) -> FitState:
    """Build network ``spec`` (after ``torch.manual_seed``), its optimiser, schedule and loss weights."""
    k = len(train.class_names)
    config = network_config(cfg, train.preprocessing.n_channels, k, spec)
    net = build_model(spec["arch"], **config, pretrained=cfg.pretrained).to(dev)
    opt = build_optimizer(cfg.optimizer, net.parameters(), cfg.lr, cfg.weight_decay, momentum=cfg.momentum)
    sched = build_scheduler(cfg.scheduler, opt, cfg.epochs, warmup_epochs=cfg.warmup_epochs)
    use_w = cfg.loss == "weighted_ce" or cfg.balance == "weights"
    weights = torch.from_numpy(class_weights(train.labels, k)).to(dev) if use_w else None
    per_epoch = len(train) * cfg.aug_rate
    steps = max(1, per_epoch // cfg.batch_size if per_epoch >= cfg.batch_size else 1)
    return FitState(net, opt, sched, weights, steps, time.perf_counter())


def fit_network(where: Where, cfg: ClassifierTrainConfig, train: SampleSet, val: SampleSet | None,
                dev: torch.device, history: list[dict[str, Any]], seed: int,
                spec: dict[str, Any]) -> Generator[TrainEvent, Any, FitOutcome]:
    """One training run of one network (``spec``, one of ``cfg.member_specs()``) from ``seed``.

    Appends one row per epoch to ``history``; yields ``"step"`` events every 5 steps and one
    ``"epoch"`` event per epoch. Returns the network at its best validation epoch (the last
    epoch without validation), in eval mode.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    state = start_fit(cfg, train, dev, spec)
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        losses, correct, count = yield from train_epoch(state, cfg, train, rng, dev, epoch, where)
        state.t_train += time.perf_counter() - t_epoch
        state.seen += count
        if not losses:
            break
        row: dict[str, Any] = {"run": where.run, "epoch": epoch, "train_loss": float(np.mean(losses)),
                               "train_accuracy": correct / max(count, 1), "lr": current_lr(state.opt)}
        val_metrics: dict[str, float] = {}
        if val is not None and len(val):
            val_metrics = yield from validate(state, val, dev, epoch)
            row.update(val_metrics)
        history.append(row)
        step_scheduler(state.sched, val_metrics.get("val_loss", row["train_loss"]))
        best = {"epoch": state.best_epoch, "val_loss": state.best_loss} if state.best_state else None
        reply = yield TrainEvent("epoch", epoch, cfg.epochs, state.steps, state.steps, row["train_loss"],
                                 val_metrics=val_metrics or {"train_accuracy": row["train_accuracy"]},
                                 best=best, lr=current_lr(state.opt), fold=where.fold, folds=where.folds,
                                 message=where.run)
        if state.stopped or reply == STOP:
            state.stopped = True
            break
        if cfg.patience is not None and state.stale >= cfg.patience:
            break
    if state.best_state is not None:
        state.net.load_state_dict(state.best_state)
    state.net.eval()
    timing = {"train_seconds": state.t_train, "train_images": state.seen}
    return (state.net if history and history[-1]["run"] == where.run else None), state.stopped, timing


def train_epoch(state: FitState, cfg: ClassifierTrainConfig, train: SampleSet, rng: np.random.Generator,
                dev: torch.device, epoch: int,
                where: Where) -> Generator[TrainEvent, Any, tuple[list[float], int, int]]:
    """One epoch of optimisation steps on augmented (and with ``cfg.mixup``, blended) batches.

    Returns the loss of every step, the number of correctly classified training samples and
    the number of samples seen. STOP (sent to a ``"step"`` event) ends the epoch early and
    sets ``state.stopped``.
    """
    net, opt = state.net, state.opt
    net.train()
    losses: list[float] = []
    correct = count = 0
    batches = iterate_batches(rng, train.images, train.labels, cfg.batch_size, cfg.augment, cfg.aug_rate,
                              cfg.balance)
    loss_of = partial(classification_loss, loss=cfg.loss, label_smoothing=cfg.label_smoothing,
                      focal_gamma=cfg.focal_gamma, weights=state.weights)
    for step, (xb, yb) in enumerate(batches, start=1):
        if xb.shape[0] < 2:  # BatchNorm cannot train on a single sample
            continue
        x = torch.from_numpy(xb).to(dev)
        y = torch.from_numpy(yb).to(dev)
        if cfg.mixup > 0:
            lam = float(rng.beta(cfg.mixup, cfg.mixup))
            partner = torch.from_numpy(rng.permutation(len(yb))).to(dev)
            logits = net(lam * x + (1 - lam) * x[partner])
            loss = lam * loss_of(logits, y) + (1 - lam) * loss_of(logits, y[partner])
        else:
            logits = net(x)
            loss = loss_of(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        correct += int((logits.argmax(1) == y).sum())
        count += len(yb)
        if step % 5 == 0 or step == state.steps:
            done = (epoch - 1) * state.steps + step
            eta = (time.perf_counter() - state.t0) / done * (cfg.epochs * state.steps - done)
            reply = yield TrainEvent("step", epoch, cfg.epochs, step, state.steps, losses[-1], lr=current_lr(opt),
                                     eta_s=eta, fold=where.fold, folds=where.folds, message=where.run)
            if reply == STOP:
                state.stopped = True
                break
    return losses, correct, count


def validate(state: FitState, val: SampleSet, dev: torch.device,
             epoch: int) -> Generator[Any, Any, dict[str, float]]:
    """Loss, accuracy and balanced accuracy on the validation split; keeps a copy of the
    weights when the loss is the lowest so far (the model :func:`fit_network` returns)."""
    proba = yield from quiet(predict_proba(state.net, val.images, dev, 256, 1))
    with torch.no_grad():
        vloss = float(F.nll_loss(torch.log(torch.from_numpy(proba).clamp_min(1e-8)), torch.from_numpy(val.labels)))
    pred = proba.argmax(1)
    metrics = {"val_loss": vloss, "accuracy": accuracy(val.labels, pred),
               "balanced_accuracy": balanced_accuracy(val.labels, pred, len(val.class_names))}
    if vloss < state.best_loss:
        state.best_loss, state.best_epoch, state.stale = vloss, epoch, 0
        state.best_state = copy.deepcopy(state.net.state_dict())
    else:
        state.stale += 1
    return metrics
