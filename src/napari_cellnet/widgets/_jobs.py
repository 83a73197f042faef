"""Run a core job generator in a napari thread worker: progress bars, Stop, errors as notifications.

Every widget runs its engine the same way, so the behaviour a biologist sees is the same
everywhere: the viewer stays responsive, progress shows in napari's activity dock (frames
or epochs, and tiles or steps within them), **Stop** sends :data:`napari_cellnet.core.jobs.STOP` into the
job, which then *returns* what it has done (superqt's ``GeneratorWorker.send`` delivers the
value at the next ``yield``), and a failure becomes one napari error notification carrying
the engine's own message.

Two details matter and are handled here once:

* The job is *created* inside the worker thread (``make_job`` is called there), so that
  importing torch and loading a checkpoint never freeze the GUI.
* superqt treats a ``RuntimeError`` raised by the generator as "the worker was deleted" and
  swallows it with a warning. torch raises ``RuntimeError`` for real failures (out of
  memory, shape mismatches), so the job is wrapped and such errors are re-raised as
  :class:`JobError`, which reaches the ``errored`` signal and the notification.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from napari_cellnet.core.jobs import STOP, Progress, TrainEvent


class JobError(Exception):
    """A failure inside a job that superqt would otherwise swallow (a ``RuntimeError``)."""


def _guarded(make_job: Callable[[], Generator[Any, Any, Any]], threads: int | None) -> Generator[Any, Any, Any]:
    if threads is not None:
        # OpenMP's thread count is a per-thread setting: a fresh QThread may start with a
        # different one than the main thread, so set it where the work happens.
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    try:
        job = make_job()
        result = yield from job
    except RuntimeError as err:
        raise JobError(str(err) or type(err).__name__) from err
    return result


def main_thread_torch_threads() -> int | None:
    """torch's thread count in the calling (GUI) thread, or None when torch is not loaded yet.

    Reading it does not import torch: when torch has not been imported, the worker keeps
    torch's own default, which is what the CLI gets too.
    """
    import sys

    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def cpu_threads() -> int:
    """Cores this process may use (what the CLI's torch uses by default)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


class JobRunner:
    """One job at a time, run in a napari ``GeneratorWorker``.

    Parameters
    ----------
    name : str
        Shown on the progress bars ("Segment", "Train segmentation" ...).
    on_returned : callable
        Called in the GUI thread with the job's return value (also after Stop, with the
        partial result).
    on_event : callable, optional
        Called in the GUI thread with every yielded event (a live plot, a status line).
    on_state : callable, optional
        Called with True when a job starts and False when it ends (enable/disable buttons).
    on_error : callable, optional
        Called with the exception after the notification has been shown.

    Attributes
    ----------
    worker : GeneratorWorker or None
        The running worker.
    stop_requested : bool
        True once :meth:`stop` was called for the current job.
    last_error : Exception or None
        The last job's failure.
    """

    def __init__(
        self,
        name: str,
        on_returned: Callable[[Any], None],
        on_event: Callable[[Any], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.name = name
        self.on_returned = on_returned
        self.on_event = on_event
        self.on_state = on_state
        self.on_error = on_error
        self.worker: GeneratorWorker | None = None
        self.stop_requested = False
        self._has_yielded = False
        self.last_error: Exception | None = None
        self.started_at = 0.0
        self.elapsed_s = 0.0
        self._bars: dict[str, progress] = {}
        self._ended = False
        self._updating = False
        self._close_pending = False

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, make_job: Callable[[], Generator[Any, Any, Any]], threads: int | None = None) -> GeneratorWorker:
        """Start ``make_job()`` in a worker thread and return the worker.

        Parameters
        ----------
        make_job : callable
            Returns the job generator; called in the worker thread.
        threads : int, optional
            torch CPU threads to use in the worker (the GUI/CLI parity fix); None keeps
            torch's default.

        Raises
        ------
        RuntimeError
            If a job of this runner is still running.
        """
        if self.worker is not None:
            raise RuntimeError(f"{self.name} is already running; press Stop first.")
        self.stop_requested = False
        self._has_yielded = False
        self.last_error = None
        self._ended = False
        worker = create_worker(_guarded, make_job, threads, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.started_at = time.perf_counter()
        if self.on_state is not None:
            self.on_state(True)
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the job to finish at its next step and return what it has done."""
        if self.worker is not None and not self.stop_requested:
            self.stop_requested = True
            # a generator that has not reached its first yield cannot be sent a value:
            # a Stop pressed that early is delivered with the job's first event
            if self._has_yielded:
                self.worker.send(STOP)
            show_info(f"{self.name}: stopping after the current step; finished work is kept.")

    def abort(self) -> None:
        """Quit without waiting for a result (the viewer is closing)."""
        if self.worker is not None:
            if self._has_yielded:
                self.worker.send(STOP)
            self.worker.quit()

    # ------------------------------------------------------------------ signal handlers
    def _bar(self, key: str, total: int, desc: str) -> progress:
        # Two flat bars (outer: frames/epochs, inner: tiles/steps) rather than napari's
        # ``nest_under``: closing a nested bar from inside the event loop (as a worker's
        # ``finished`` slot does) segfaults napari 0.9.2's activity dialog
        # (reproduced with PyQt5; see tests/_qt/test_jobs.py).
        bar = self._bars.get(key)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = progress(total=total, desc=desc)
            self._bars[key] = bar
        return bar

    def _set(self, key: str, total: int, index: int, desc: str) -> None:
        bar = self._bar(key, total, desc)
        bar.n = min(index, total)
        bar.set_description(desc)
        bar.refresh()

    def _on_yielded(self, event: Any) -> None:
        # napari's progress bars call QApplication.processEvents() when they update, so the
        # job's `returned`/`finished` can be handled *inside* this slot. The widget hears
        # about the event first, and nothing is shown for a job that has already ended.
        if self._ended:
            return
        if not self._has_yielded:
            self._has_yielded = True
            if self.stop_requested and self.worker is not None:
                self.worker.send(STOP)
        if self.on_event is not None:
            self.on_event(event)
        if self._ended:
            return
        self._updating = True
        try:
            self._show_progress(event)
        finally:
            self._updating = False
        if self._close_pending:
            self._close_bars()

    def _show_progress(self, event: Any) -> None:
        if isinstance(event, Progress):
            outer = event.parent if event.parent is not None else event
            self._set("outer", outer.total, outer.index,
                      f"{self.name}: {outer.stage} {min(outer.index + (event.parent is not None), outer.total)}"
                      f" of {outer.total}")
            if event.parent is not None and event.total > 1 and not self._ended:
                self._set("inner", event.total, event.index, f"{self.name}: {event.stage} {event.index} of {event.total}")
        elif isinstance(event, TrainEvent):
            fold = f"fold {event.fold}/{event.folds}, " if event.fold is not None else ""
            done = event.epoch if event.kind == "epoch" else event.epoch - 1
            self._set("outer", event.epochs, done, f"{self.name}: {fold}epoch {event.epoch} of {event.epochs}")
            if not self._ended:
                self._set("inner", event.steps_per_epoch, event.step,
                          f"{self.name}: step {event.step} of {event.steps_per_epoch}")

    def _close_bars(self) -> None:
        self._close_pending = False
        for bar in list(self._bars.values())[::-1]:
            bar.close()
        self._bars.clear()

    def _on_returned(self, result: Any) -> None:
        self._ended = True
        self.elapsed_s = time.perf_counter() - self.started_at
        try:
            self.on_returned(result)
        except Exception as err:  # a result the widget cannot show must still be reported
            self._report(err)

    def _on_errored(self, err: Exception) -> None:
        self._ended = True
        self._report(err)

    def _report(self, err: Exception) -> None:
        self.last_error = err
        message = str(err) or type(err).__name__
        show_error(f"{self.name} failed: {message}")
        if self.on_error is not None:
            self.on_error(err)

    def _on_finished(self) -> None:
        self._ended = True
        if self._updating:  # finished inside a bar update (see _on_yielded): close after it
            self._close_pending = True
        else:
            self._close_bars()
        self.worker = None
        if self.on_state is not None:
            self.on_state(False)
