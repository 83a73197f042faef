"""The protocol every long job follows: a generator that yields events and returns a result.

Segmentation, training and classification are written as generators so that one piece of
code serves three callers: the CLI drains it with a progress bar, tests drain it
synchronously, and widgets run it in a napari ``thread_worker`` and show the events.

Stopping is part of the protocol, not an exception: a caller *sends* :data:`STOP` into the
generator at any ``yield`` (``gen.send(STOP)``; superqt's ``GeneratorWorker.send`` does the
same from the GUI). The job then finishes early and *returns* what it has done so far
(the frames already segmented, the best checkpoint so far), so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

STOP = "stop"
"""Value to send into a job generator to make it finish early and return partial results."""

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """One step of a long job.

    Parameters
    ----------
    stage : str
        What is being counted: ``"frame"``, ``"tile"``, ``"epoch"``, ``"step"``, ``"fold"``,
        ``"object"`` ...
    index : int
        How many units of ``stage`` are done (0 ... total).
    total : int
        How many units there are in all.
    message : str
        A short human-readable line ("frame 3 of 10").
    parent : Progress or None
        The enclosing level (frames enclose tiles), for nested progress bars.
    """

    stage: str
    index: int
    total: int
    message: str = ""
    parent: Progress | None = None


@dataclass(frozen=True)
class TrainEvent:
    """What a training job reports after a step or an epoch.

    ``kind`` is ``"step"`` (after an optimisation step; ``train_loss`` is that batch's loss)
    or ``"epoch"`` (after validation; ``val_metrics`` holds every validation metric).
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    train_loss: float
    val_metrics: dict[str, float] | None = None
    best: dict[str, Any] | None = None
    lr: float | None = None
    eta_s: float | None = None
    fold: int | None = None
    folds: int | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_job(
    job: Generator[Any, Any, R],
    on_event: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> R:
    """Drive a job generator to its end and return its result.

    Parameters
    ----------
    job : generator
        A job following this module's protocol.
    on_event : callable, optional
        Called with every yielded event (a progress bar, a logger, a list's ``append``).
    should_stop : callable, optional
        Polled after every event; when it returns True, :data:`STOP` is sent and the job
        returns its partial result.
    """
    to_send: Any = None
    try:
        while True:
            event = job.send(to_send)
            if on_event is not None:
                on_event(event)
            to_send = STOP if (should_stop is not None and should_stop()) else None
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
