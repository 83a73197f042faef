"""The job runner that every widget uses: results, Stop, errors (including RuntimeError) and progress."""

from __future__ import annotations

import time

import pytest

from napari_cellnet.core.jobs import STOP, Progress

pytestmark = pytest.mark.gui


def _frames(n: int, fail_at: int | None = None, error: type[Exception] = ValueError):
    done = []
    for t in range(n):
        time.sleep(0.02)
        if t == fail_at:
            raise error(f"frame {t} is broken: do X")
        done.append(t)
        if (yield Progress("tile", 1, 2, parent=Progress("frame", t, n))) == STOP:
            return done
        if (yield Progress("frame", t + 1, n)) == STOP:
            return done
    return done


def _runner(results, events=None):
    from napari_cellnet.widgets._jobs import JobRunner

    return JobRunner("Test job", results.append, on_event=None if events is None else events.append)


def test_result_events_and_progress_bars(make_napari_viewer, qtbot):
    make_napari_viewer()
    results, events = [], []
    runner = _runner(results, events)
    worker = runner.start(lambda: _frames(5))
    with qtbot.waitSignal(worker.finished, timeout=10000):
        pass
    assert results == [[0, 1, 2, 3, 4]]
    assert len(events) == 10 and events[-1] == Progress("frame", 5, 5)
    assert runner.worker is None and runner._bars == {}  # bars closed (flat bars: no segfault on close)


def test_stop_returns_the_partial_result(make_napari_viewer, qtbot):
    make_napari_viewer()
    results = []
    runner = _runner(results)
    worker = runner.start(lambda: _frames(200))
    worker.yielded.connect(lambda e: runner.stop() if e == Progress("frame", 3, 200) else None)
    with qtbot.waitSignal(worker.finished, timeout=20000):
        pass
    assert len(results) == 1 and results[0][:3] == [0, 1, 2] and 3 <= len(results[0]) < 200
    assert runner.stop_requested


@pytest.mark.parametrize("error", [ValueError, RuntimeError])
def test_errors_become_notifications_with_the_engine_message(make_napari_viewer, qtbot, errors, error):
    make_napari_viewer()
    results = []
    runner = _runner(results)
    worker = runner.start(lambda: _frames(5, fail_at=2, error=error))
    with qtbot.waitSignal(worker.finished, timeout=10000):
        pass
    assert results == []
    assert errors() == ["Test job failed: frame 2 is broken: do X"]
    assert str(runner.last_error) == "frame 2 is broken: do X"
    # superqt swallows RuntimeError; the runner re-raises it as JobError so the user sees it
    assert type(runner.last_error).__name__ == ("JobError" if error is RuntimeError else "ValueError")


def test_one_job_at_a_time(make_napari_viewer, qtbot):
    make_napari_viewer()
    runner = _runner([])
    worker = runner.start(lambda: _frames(20))
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(lambda: _frames(1))
    runner.stop()
    with qtbot.waitSignal(worker.finished, timeout=10000):
        pass


def test_stop_before_the_first_event_still_returns_the_partial_result(make_napari_viewer, qtbot):
    """Stop pressed while the job is still starting (before its first yield) must not fail it:
    a fresh generator cannot be sent a value, so the runner delivers STOP with the first event."""
    make_napari_viewer()
    results = []
    runner = _runner(results)

    def slow_start():
        time.sleep(0.5)  # e.g. loading a model: Stop arrives before the first event
        return (yield from _frames(20))

    worker = runner.start(slow_start)
    runner.stop()
    with qtbot.waitSignal(worker.finished, timeout=10000):
        pass
    assert runner.last_error is None
    assert len(results) == 1 and len(results[0]) < 20  # stopped early, partial result kept
