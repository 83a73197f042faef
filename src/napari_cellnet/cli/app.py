"""``napari-cellnet`` command line: the same jobs as the widgets, without a GUI.

Every subcommand builds the same parameter objects the widgets use, drains the same job
generator (:mod:`napari_cellnet.core.jobs`) with a terminal progress bar, and prints errors as
one readable line (exit code 2) instead of a traceback. Ctrl-C stops a job the way the
Stop button does: what is done is kept and written.

Subcommands register themselves in :data:`COMMANDS` through :func:`command`; each lives
in its own ``_cmd_*`` function group below.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

from napari_cellnet import __version__
from napari_cellnet.cli.flags import add_params_arguments
from napari_cellnet.core.jobs import Progress, TrainEvent, run_job
from napari_cellnet.core.params import Params

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}
#: The parameter object (:mod:`napari_cellnet.core.params`) whose flags a command carries.
PARAMS: dict[str, type[Params]] = {}


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None],
            params: type[Params] | None = None):
    """Register ``func(args) -> exit code`` as subcommand ``name``.

    With ``params``, the command's flags include one per field of that parameter object
    (:func:`napari_cellnet.cli.flags.add_params_arguments`), after those ``add_arguments`` adds.
    """

    def deco(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if params is None:
            COMMANDS[name] = (add_arguments, func)
        else:
            def add_all(p: argparse.ArgumentParser) -> None:
                add_arguments(p)
                add_params_arguments(p, params)

            COMMANDS[name] = (add_all, func)
            PARAMS[name] = params
        return func

    return deco


class TerminalProgress:
    """A one-line progress bar on stderr for job events (quiet when not a terminal)."""

    def __init__(self, stream: Any = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        line = self.format(event)
        if line is None:
            return
        now = time.perf_counter()
        is_epoch = isinstance(event, TrainEvent) and event.kind == "epoch"
        if self.tty:
            if now - self._last > 0.1 or is_epoch:
                self.stream.write("\r\033[K" + line)
                if is_epoch:
                    self.stream.write("\n")
                self.stream.flush()
                self._last = now
        elif is_epoch or (isinstance(event, Progress) and event.index == event.total and event.parent is None):
            self.stream.write(line + "\n")

    def format(self, event: Any) -> str | None:
        elapsed = time.perf_counter() - self.t0
        if isinstance(event, Progress):
            outer = event.parent
            head = event if outer is None else outer
            frac = head.index / head.total if head.total else 1.0
            bar = "#" * int(frac * 30)
            tail = f" {event.stage} {event.index}/{event.total}" if outer is not None else ""
            return f"[{bar:<30}] {head.stage} {head.index}/{head.total}{tail} {elapsed:6.1f}s"
        if isinstance(event, TrainEvent):
            fold = f"fold {event.fold}/{event.folds} " if event.fold is not None else ""
            line = f"{fold}epoch {event.epoch}/{event.epochs} step {event.step}/{event.steps_per_epoch} loss {event.train_loss:.4f}"
            if event.kind == "epoch" and event.val_metrics:
                keys = [k for k in ("seg", "f1", "accuracy", "val_loss") if k in event.val_metrics]
                line += " | " + " ".join(f"{k} {event.val_metrics[k]:.3f}" for k in keys)
            if event.eta_s is not None:
                line += f" | ~{event.eta_s:.0f}s left"
            return line
        return None

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


def drain(job: Generator[Any, Any, Any], quiet: bool = False) -> Any:
    """Run a job with a progress bar; Ctrl-C stops it gracefully and returns the partial result."""
    bar = TerminalProgress(quiet=quiet)
    stop = {"asked": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        sys.stderr.write("\nStopping after the current step (Ctrl-C again to abort)...\n")

    previous = signal.signal(signal.SIGINT, on_sigint) if _in_main_thread() else None
    try:
        return run_job(job, on_event=bar, should_stop=lambda: stop["asked"])
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="napari-cellnet",
        description="Segment time-lapse microscopy with a temporal U-Net and classify cell morphology.",
    )
    parser.add_argument("--version", action="version", version=f"napari-cellnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, func) in COMMANDS.items():
        doc = (func.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=" ".join(doc) or None)
        add_arguments(p)
        p.set_defaults(func=func)
    return parser


def _load_commands() -> None:
    # Each engine defines its subcommands in its own module, next to the job it runs.
    import importlib

    for module in _COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


_COMMAND_MODULES = (
    "napari_cellnet.cli.segment",
    "napari_cellnet.cli.train_seg",
    "napari_cellnet.cli.classify",
    "napari_cellnet.cli.demo",
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-cellnet`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as err:
        print(f"napari-cellnet {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
