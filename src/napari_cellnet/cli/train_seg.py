"""``napari-cellnet train-seg``: train the temporal U-Net on annotated frames from a shell.

Every setting's flag is made from :class:`~napari_cellnet.segmentation.params.TrainSegParams` (the
object the training widget shows), layered as defaults < ``--params`` JSON < ``--preset`` < the
flags typed. The command drains
:func:`~napari_cellnet.segmentation.training.train_segmentation` with a progress bar, and leaves
``best.pt``, ``last.pt``, ``params.json`` and ``history.csv`` in ``-o MODEL_DIR``.
Ctrl-C stops between two batches and keeps the best model; ``--resume MODEL_DIR/last.pt``
continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_cellnet.cli.app import command, drain
from napari_cellnet.cli.flags import typed_flags
from napari_cellnet.segmentation.params import TrainSegParams, parse_frames

__all__ = ["build_params", "parse_frames", "train_seg"]  # parse_frames: the --frames syntax


def _add_arguments(p: argparse.ArgumentParser) -> None:
    # Only inputs and outputs are written here; every setting's flag comes from TrainSegParams.
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--images", action="append", required=True, metavar="MOVIE",
                    help="image movie (TIFF, folder of frames); repeat for several movies")
    io.add_argument("--labels", action="append", required=True, metavar="LABELS",
                    help="label movie, same T, Y, X (0 = background; unannotated frames all 0); one per --images")
    io.add_argument("--axes", default=None, help="axes of the image movies, e.g. TYX, TCYX (default: from the file)")
    io.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                    help="folder for best.pt, last.pt, params.json and history.csv")
    io.add_argument("--resume", default=None, metavar="LAST_PT",
                    help="continue a run from its last.pt (with its saved settings; --epochs, --device, --threads, "
                         "--early-stopping and --best-metric may change)")
    io.add_argument("--overwrite", action="store_true", help="replace a model already in the output folder")
    io.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def build_params(args: argparse.Namespace) -> TrainSegParams:
    """The :class:`TrainSegParams` of a parsed command line: defaults < ``--params`` JSON < ``--preset`` < flags.

    ``--preset NAME`` sets every field a preset sets (``light`` puts them back to the defaults),
    then the other flags override it: ``--preset stemnet --lr 0.1``.
    """
    path = getattr(args, "params_json", None)
    base = TrainSegParams.from_json(path) if path else TrainSegParams()
    typed = typed_flags(TrainSegParams, args)
    if "preset" in typed:
        base = base.with_preset(typed["preset"])
    params = base.replace(**typed)
    params.validate()
    n = len(getattr(args, "images", None) or [None])
    for name in ("frames", "val_frames"):
        _check_per_movie(name, getattr(params, name), n)
    return params


def _check_per_movie(name: str, frames: Any, n_movies: int) -> None:
    if frames is None or not frames:
        return
    nested = not isinstance(frames[0], int)
    lists = len(frames) if nested else 1
    if lists != n_movies:
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{flag} gives {lists} frame list(s) for {n_movies} movie(s); separate one list per movie "
                         f"with ';' (e.g. {flag} '0,2;1,3').")


def _read(paths: list[str], axes: str | None) -> tuple[list[Any], list[str]]:
    from napari_cellnet.core.io import read_stack

    data, found = [], []
    for p in paths:
        stack = read_stack(p, axes=axes)
        data.append(stack.data)
        found.append(stack.axes)
    return data, found


@command("train-seg", _add_arguments, params=TrainSegParams)
def train_seg(args: argparse.Namespace) -> int:
    """Train the temporal U-Net on annotated frames of a movie (sparse labels are fine).

    Writes best.pt, last.pt, params.json and history.csv to -o MODEL_DIR; Ctrl-C stops and
    keeps the best model; --resume continues.
    """
    from napari_cellnet.core.io import read_stack
    from napari_cellnet.core.jobs import Progress
    from napari_cellnet.segmentation.training import train_segmentation

    if len(args.images) != len(args.labels):
        raise ValueError(f"Got {len(args.images)} --images but {len(args.labels)} --labels; give one label movie "
                         "per image movie, in the same order.")
    params = _resume_params(args) if (args.resume and not _explicit_settings(args)) else build_params(args)
    images, axes = _read(args.images, args.axes)
    labels = [read_stack(p).data for p in args.labels]
    labels = [lab[:, 0] if lab.ndim == 4 and lab.shape[1] == 1 else lab for lab in labels]
    job = train_segmentation(images, labels, params, args.output, resume=args.resume, overwrite=args.overwrite,
                             image_axes=axes, sources={"images": [str(Path(p).resolve()) for p in args.images],
                                                       "labels": [str(Path(p).resolve()) for p in args.labels]})

    def announce(gen: Any) -> Any:
        # print the data summary (what was chosen automatically) once, then pass events through
        sent = None
        try:
            while True:
                ev = gen.send(sent)
                if isinstance(ev, Progress) and ev.stage == "prepare" and not args.quiet:
                    sys.stderr.write(ev.message + "\n")
                sent = yield ev
        except StopIteration as done:
            return done.value

    try:
        res = drain(announce(job), quiet=args.quiet)
    except OSError as err:
        if isinstance(err, (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)):
            raise
        sys.stderr.write(f"napari-cellnet train-seg: error: {err.strerror or err}\n")
        return 2
    lines = []
    if res.stopped:
        lines.append(f"stopped after {res.epochs_done} epoch(s); resume with --resume {res.out_dir / 'last.pt'}")
    if res.early_stopped:
        lines.append(f"early stopping after {res.epochs_done} epochs")
    if res.best:
        lines.append(f"best {res.best['metric']} {res.best['value']:.4f} at epoch {res.best['epoch']}: {res.best_path}")
    if res.calibration:
        c = res.calibration
        lines.append(f"post-processing calibrated on the {c['source']} frames: threshold {c['threshold']:.2f}, "
                     f"min size {c['min_size']} px (SEG {c['default_seg']:.3f} -> {c['seg']:.3f})")
    if res.last_path is not None:
        lines.append(f"last: {res.last_path}")
    lines.append(f"parameters: {res.out_dir / 'params.json'}; history: {res.out_dir / 'history.csv'}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


_RESUME_MAY_CHANGE = ("epochs", "device", "threads", "early_stopping", "best_metric")


def _resume_params(args: argparse.Namespace) -> TrainSegParams:
    """The saved settings of the run being resumed, with the flags a resume may change."""
    from napari_cellnet.models.checkpoint import load_checkpoint
    from napari_cellnet.segmentation.training import saved_params

    saved = saved_params(load_checkpoint(args.resume, task="segmentation"))
    return saved.replace(**{k: v for k, v in typed_flags(TrainSegParams, args).items() if k in _RESUME_MAY_CHANGE})


def _explicit_settings(args: argparse.Namespace) -> bool:
    """Whether the command line sets anything a resume cannot change (then the settings are rebuilt and checked)."""
    return bool(set(typed_flags(TrainSegParams, args)) - set(_RESUME_MAY_CHANGE) or getattr(args, "params_json", None))
