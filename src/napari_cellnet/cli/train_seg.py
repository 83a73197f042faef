"""``napari-cellnet train-seg``: train the temporal U-Net on annotated frames from a shell.

The command builds the same :class:`~napari_cellnet.segmentation.training.TrainSegParams` the training
widget builds (a ``--params`` JSON, then the preset, then explicit flags), drains
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

_FLAG_FIELDS = {
    # argparse dest -> TrainSegParams field (only flags the user actually gave override)
    "window": "window", "classes": "classes", "edge": "edge", "drift": "drift",
    "background_subtraction": "background_subtraction", "patch_size": "patch_size",
    "batch_size": "batch_size", "epochs": "epochs", "lr": "lr", "weight_decay": "weight_decay",
    "momentum": "momentum", "optimizer": "optimizer", "scheduler": "scheduler", "lr_decay": "lr_decay",
    "loss": "loss", "class_weighting": "class_weighting", "cell_weight": "cell_weight",
    "weight_map": "weight_map", "augment": "augment", "aug_rate": "aug_rate", "best_metric": "best_metric",
    "early_stopping": "early_stopping", "threshold": "threshold", "min_size": "min_size", "seed": "seed",
    "calibrate": "calibrate", "scale": "scale",
    "device": "device", "threads": "threads", "fg_fraction": "fg_fraction",
}


def parse_frames(text: str | None, n_movies: int = 1) -> Any:
    """Parse ``--frames``/``--val-frames``: ``"0,2,4"``, ranges ``"0-8:2"``, ``"none"``, ``"auto"``.

    Several movies take one list per movie separated by ``;`` (``"0,2;1"``).

    Returns
    -------
    None for "auto" (or no flag), ``[]`` for "none", a list of ints (one movie) or a list of
    lists (several movies).

    Raises
    ------
    ValueError
        For text that is not a list of frame numbers.
    """
    if text is None or text.strip().lower() == "auto":
        return None
    if text.strip().lower() == "none":
        return [] if n_movies == 1 else [[] for _ in range(n_movies)]
    per_movie = text.split(";")
    if len(per_movie) != n_movies:
        raise ValueError(
            f"Frames {text!r} give {len(per_movie)} list(s) for {n_movies} movie(s); separate one list per movie "
            "with ';' (e.g. --frames '0,2;1,3')."
        )
    out = []
    for part in per_movie:
        frames: list[int] = []
        for item in filter(None, (s.strip() for s in part.split(","))):
            try:
                if "-" in item:
                    span, _, step = item.partition(":")
                    a, b = (int(x) for x in span.split("-"))
                    frames += list(range(a, b + 1, int(step) if step else 1))
                else:
                    frames.append(int(item))
            except ValueError:
                raise ValueError(
                    f"Cannot read frame list {text!r}: use numbers separated by commas (0,2,4), ranges (0-8 or "
                    "0-8:2 for every second frame), 'auto' or 'none'. Frames count from 0."
                ) from None
        out.append(frames)
    return out[0] if n_movies == 1 else out


def _add_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--images", action="append", required=True, metavar="MOVIE",
                      help="image movie (TIFF, folder of frames); repeat for several movies")
    data.add_argument("--labels", action="append", required=True, metavar="LABELS",
                      help="label movie, same T, Y, X (0 = background; unannotated frames all 0); one per --images")
    data.add_argument("--axes", default=None, help="axes of the image movies, e.g. TYX, TCYX (default: from the file)")
    data.add_argument("--frames", default=None,
                      help="training frames, e.g. 0,2,4 or 0-8:2 (default: every annotated frame not validated)")
    data.add_argument("--val-frames", default=None,
                      help="validation frames, 'none' for no validation, or 'auto' (default: the annotated frames "
                           "left out of --frames, else 20%% of the annotated frames)")
    model = p.add_argument_group("model")
    model.add_argument("--preset", default="light", choices=["light", "stemnet"],
                       help="light (fast default) or stemnet (thesis network and Table 1 training settings)")
    model.add_argument("--window", type=int, default=None, help="frames per input window, odd (default 5)")
    model.add_argument("--classes", type=int, choices=[2, 3], default=None,
                       help="2 = background/cell, 3 = with a boundary class (default 3 for light)")
    model.add_argument("--edge", choices=["reflect", "replicate", "skip"], default=None,
                       help="window at the movie's ends (default reflect)")
    model.add_argument("--drift", action="store_true", default=None, help="register neighbour frames (drifting stage)")
    model.add_argument("--background-subtraction", action="store_true", default=None,
                       help="subtract the per-pixel temporal median (StemNet)")
    model.add_argument("--scale", type=float, default=None,
                       help="input scale factor: upsample frames and labels by this much before the network "
                            "(stored in the model; 2 suits cells ~10 px across; default 1)")
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=None, help="epochs (default 40)")
    train.add_argument("--batch-size", type=int, default=None, help="patches per step (default 16)")
    train.add_argument("--patch-size", type=int, default=None, help="patch side in pixels, multiple of 16 (default 64)")
    train.add_argument("--optimizer", default=None,
                       choices=["adamw", "adam", "sgd", "rmsprop", "adamax", "nadam", "adagrad", "adadelta"],
                       help="optimiser (default adamw; stemnet: sgd)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default 4e-3; stemnet 0.15)")
    train.add_argument("--weight-decay", type=float, default=None, help="weight decay (default 1e-4)")
    train.add_argument("--momentum", type=float, default=None, help="SGD/RMSprop momentum (stemnet 0.2)")
    train.add_argument("--scheduler", choices=["cosine", "exponential", "plateau", "none"], default=None,
                       help="learning-rate schedule per epoch (default cosine; stemnet exponential)")
    train.add_argument("--lr-decay", type=float, default=None, help="exponential decay per epoch (default 0.95)")
    train.add_argument("--loss", choices=["ce", "dice", "ce+dice"], default=None, help="loss (default ce+dice)")
    train.add_argument("--class-weighting", choices=["fixed", "median_frequency", "none"], default=None,
                       help="cross-entropy class weights (default fixed: x2 on cells as StemNet)")
    train.add_argument("--cell-weight", type=float, default=None, help="fixed weight of the cell class (default 2)")
    train.add_argument("--weight-map", action="store_true", default=None,
                       help="U-Net border weight map between touching cells")
    train.add_argument("--augment", default=None, choices=["temporal", "light", "strong", "none"],
                       help="augmentation preset (default temporal)")
    train.add_argument("--aug-rate", type=int, default=None, help="augmentation rate: 1, 5 or 10x patches per epoch")
    train.add_argument("--fg-fraction", type=float, default=None, help="share of patches centred on a cell (default 0.8)")
    train.add_argument("--best-metric", choices=["seg", "f1", "ap", "instance_f1", "val_loss"], default=None,
                       help="what makes best.pt best (default seg)")
    train.add_argument("--early-stopping", type=int, default=None, help="stop after N epochs without improvement")
    train.add_argument("--threshold", type=float, default=None, help="foreground threshold stored in the model (0.5)")
    train.add_argument("--min-size", type=int, default=None, help="smallest cell in pixels stored in the model (30)")
    train.add_argument("--calibrate", choices=["validation", "any", "none"], default=None,
                       help="after training, choose threshold and min size by SEG on the validation frames "
                            "(default), also on the training frames without validation (any), or keep them (none)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    run = p.add_argument_group("run")
    run.add_argument("--params", default=None, metavar="JSON",
                     help="start from a params.json (e.g. of an earlier run); flags override it")
    run.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (default 0 = all cores)")
    run.add_argument("--resume", default=None, metavar="LAST_PT", help="continue a run from its last.pt")
    run.add_argument("--overwrite", action="store_true", help="replace a model already in the output folder")
    run.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                     help="folder for best.pt, last.pt, params.json and history.csv")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def build_params(args: argparse.Namespace) -> Any:
    """The :class:`TrainSegParams` of a parsed command line (JSON, then preset, then flags)."""
    from napari_cellnet.segmentation.training import TrainSegParams

    n = len(args.images)
    if args.params:
        path = Path(args.params)
        if not path.is_file():
            raise FileNotFoundError(f"Parameter file not found: {path}. Give the params.json of an earlier run.")
        base = TrainSegParams.from_json(path).to_dict()
        if args.preset != "light" or "preset" not in base:
            base.update(TrainSegParams.from_preset(args.preset).to_dict())
    else:
        base = TrainSegParams.from_preset(args.preset).to_dict()
    for dest, name in _FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            base[name] = value
    if args.frames is not None:
        base["frames"] = parse_frames(args.frames, n)
    if args.val_frames is not None:
        base["val_frames"] = parse_frames(args.val_frames, n)
    params = TrainSegParams.from_dict(base)
    params.validate()
    return params


def _read(paths: list[str], axes: str | None) -> tuple[list[Any], list[str]]:
    from napari_cellnet.core.io import read_stack

    data, found = [], []
    for p in paths:
        stack = read_stack(p, axes=axes)
        data.append(stack.data)
        found.append(stack.axes)
    return data, found


@command("train-seg", _add_arguments)
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


def _resume_params(args: argparse.Namespace) -> Any:
    """The saved settings of the run being resumed, with the flags a resume may change."""
    from napari_cellnet.models.checkpoint import load_checkpoint
    from napari_cellnet.segmentation.training import TrainSegParams

    meta = load_checkpoint(args.resume, task="segmentation").meta
    if "training" not in meta:
        raise ValueError(f"{args.resume} was not written by napari-cellnet training; resume from a last.pt.")
    base = dict(meta["training"]["params"])
    for dest in ("epochs", "device", "threads", "early_stopping", "best_metric"):
        if getattr(args, dest, None) is not None:
            base[dest] = getattr(args, dest)
    return TrainSegParams.from_dict(base)


def _explicit_settings(args: argparse.Namespace) -> bool:
    """Whether the command line sets anything beyond epochs/device/threads (resume keeps the rest)."""
    keep = {"epochs", "device", "threads", "early_stopping", "best_metric"}
    given = [d for d in _FLAG_FIELDS if getattr(args, d, None) is not None and d not in keep]
    return bool(given or args.frames or args.val_frames or args.params or args.preset != "light")
