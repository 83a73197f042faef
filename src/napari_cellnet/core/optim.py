"""Optimisers and learning-rate schedules by name, shared by the segmentation and
classification trainers.

The widgets and the CLI offer the optimisers the source GUIs offered (SGD with momentum
as in StemNet, RMSprop, Adagrad, Adadelta, Adam, Adamax, Nadam) plus AdamW, and the
schedules that matter in practice: none, StemNet's staircase exponential decay (x0.95 per
epoch), cosine annealing and reduce-on-plateau. Keeping the names in one place means a
checkpoint's recorded ``optimizer="adamw"`` means the same thing everywhere.

Schedulers here are stepped once per **epoch** with :func:`step_scheduler`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when an optimiser is built: the names serve torch-free front ends
    import torch

OPTIMIZERS = ("adamw", "sgd", "adam", "rmsprop", "adamax", "nadam", "adagrad", "adadelta")
SCHEDULERS = ("cosine", "exponential", "plateau", "none")


def build_optimizer(
    name: str,
    params: Iterable[Any],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build a torch optimiser by name.

    Parameters
    ----------
    name : str
        One of :data:`OPTIMIZERS` (case-insensitive).
    params : iterable
        ``net.parameters()`` or parameter groups.
    lr : float
        Learning rate (> 0).
    weight_decay : float
        L2 penalty (decoupled for AdamW).
    momentum : float
        Momentum for SGD and RMSprop (StemNet used SGD with momentum 0.2).
    **kwargs
        Passed to the torch optimiser (e.g. ``nesterov=True``, ``betas=(0.9, 0.99)``).

    Raises
    ------
    ValueError
        For an unknown name or a non-positive learning rate.
    """
    import torch

    key = name.strip().lower()
    if lr <= 0:
        raise ValueError(f"Learning rate must be > 0, got {lr}.")
    if weight_decay < 0:
        raise ValueError(f"Weight decay must be >= 0, got {weight_decay}.")
    opt = torch.optim
    if key == "sgd":
        return opt.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)
    if key == "rmsprop":
        return opt.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)
    table = {
        "adam": opt.Adam,
        "adamw": opt.AdamW,
        "adamax": opt.Adamax,
        "nadam": opt.NAdam,
        "adagrad": opt.Adagrad,
        "adadelta": opt.Adadelta,
    }
    if key not in table:
        raise ValueError(f"Unknown optimiser {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    return table[key](params, lr=lr, weight_decay=weight_decay, **kwargs)


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    gamma: float = 0.95,
    min_lr: float = 0.0,
    patience: int = 5,
    factor: float = 0.5,
    warmup_epochs: int = 0,
) -> Any:
    """Build a per-epoch learning-rate schedule by name.

    Parameters
    ----------
    name : str
        ``"none"`` (constant), ``"exponential"`` (lr x ``gamma`` after every epoch, i.e.
        StemNet's staircase decay with 0.95), ``"cosine"`` (from lr to ``min_lr`` over
        ``epochs``, after an optional linear warm-up) or ``"plateau"`` (x ``factor`` when
        the monitored validation loss has not improved for ``patience`` epochs).
    optimizer : torch.optim.Optimizer
    epochs : int
        Number of epochs the run will last (cosine length).
    gamma, min_lr, patience, factor, warmup_epochs
        See above.

    Returns
    -------
    scheduler or None
        ``None`` for ``"none"``; step it with :func:`step_scheduler`.
    """
    import torch

    key = name.strip().lower()
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    sched = torch.optim.lr_scheduler
    if key == "none":
        return None
    if key == "exponential":
        if not 0 < gamma <= 1:
            raise ValueError(f"Exponential decay factor must be in (0, 1], got {gamma}.")
        return sched.ExponentialLR(optimizer, gamma=gamma)
    if key == "cosine":
        if warmup_epochs <= 0:
            return sched.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
        warm = min(warmup_epochs, epochs - 1) if epochs > 1 else 0
        if warm == 0:
            return sched.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
        return sched.SequentialLR(
            optimizer,
            [sched.LinearLR(optimizer, start_factor=1.0 / (warm + 1), total_iters=warm),
             sched.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warm), eta_min=min_lr)],
            milestones=[warm],
        )
    if key == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience,
                                       min_lr=min_lr)
    raise ValueError(f"Unknown learning-rate schedule {name!r}; choose one of {', '.join(SCHEDULERS)}.")


def step_scheduler(scheduler: Any, metric: float | None = None) -> None:
    """Advance a scheduler by one epoch (``metric`` is the validation loss, for "plateau")."""
    import torch

    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if metric is None:
            raise ValueError("The 'plateau' schedule needs the validation loss after each epoch.")
        scheduler.step(metric)
    else:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
