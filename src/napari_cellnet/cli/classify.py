"""``napari-cellnet train-cls``, ``classify`` and ``evaluate-cls``: the classifier from a shell.

``train-cls`` trains on a class-folder gallery or on the annotated objects of a Labels
movie, runs stratified k-fold CV (or a hold-out split), prints the CV table and writes
``model.pt`` (plus per-fold checkpoints, ``report.json``, ``history.csv`` and the
out-of-fold predictions) to the model folder. ``classify`` writes one CSV row per image or
per object (``frame``, ``label``, class, every class probability, per-track majority), ready
to load as ``layer.features``. ``evaluate-cls`` scores a model on a labelled class-folder
dataset with every classification metric.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.cli.app import command, drain


def _say(*parts: str) -> None:
    """Results go to stdout (progress goes to stderr), so they can be piped or redirected."""
    sys.stdout.write(" ".join(parts) + "\n")


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _model_path(value: str | None) -> str:
    if value in (None, "demo"):
        from napari_cellnet.datasets import demo_model_path

        return str(demo_model_path("classification"))
    return value  # type: ignore[return-value]


def _read_movie(image: str, labels: str, axes: str | None) -> tuple[np.ndarray, np.ndarray]:
    from napari_cellnet.core.io import read_stack, to_tcyx

    img = read_stack(image, axes=axes)
    lab = read_stack(labels)
    movie = np.asarray(to_tcyx(img.data, img.axes))
    lab_t = np.asarray(to_tcyx(lab.data, lab.axes))[:, 0]
    if movie.shape[0] != lab_t.shape[0] or movie.shape[-2:] != lab_t.shape[-2:]:
        raise ValueError(
            f"{Path(image).name} (T={movie.shape[0]}, YX={movie.shape[-2:]}) and {Path(labels).name} "
            f"(T={lab_t.shape[0]}, YX={lab_t.shape[-2:]}) do not match; give the labels of this movie."
        )
    return movie, lab_t


# ---------------------------------------------------------------------------
# train-cls
# ---------------------------------------------------------------------------


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", help="class-folder dataset (DATASET/<class>/*.png|tif|bmp|jpg), "
                   "or a TIFF stack of single-cell images with --classes")
    p.add_argument("--image", help="instead of DATASET: an image or movie whose objects are classified")
    p.add_argument("--labels", help="the Labels movie of --image (instance IDs)")
    p.add_argument("--classes", help="CSV frame,label,class of the annotated objects of --labels; "
                   "for a stack DATASET: a 'class' column, one row per image (optional 'index')")
    p.add_argument("--axes", default=None, help="axes of --image, e.g. TYX, TYXC (default: from the file)")
    p.add_argument("--crop-size", type=int, default=64, help="crop window around each object (pixels, default 64)")
    p.add_argument("--no-mask-neighbours", action="store_true", help="keep neighbouring objects in object crops")
    p.add_argument("--output", "-o", required=True, help="model folder (created; model.pt, report.json ...)")
    p.add_argument("--arch", default="small_cnn", help="small_cnn (default), resnet18 or mobilenet_v2")
    p.add_argument("--model-config", default="{}", help='JSON builder options, e.g. \'{"width": 32}\'')
    p.add_argument("--pretrained", default=None, help="weights file to start from (never downloaded)")
    p.add_argument("--activation", default="relu", help="relu, elu, selu, gelu, silu, softplus ... (default relu)")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--size", type=int, default=64, help="network input size in pixels (default 64)")
    p.add_argument("--channels", choices=["auto", "rgb", "gray"], default="auto",
                   help="auto: as the images are (mixed gray/RGB is refused); rgb or gray convert")
    p.add_argument("--crop", type=float, default=1.0, help="central fraction of each image kept (default 1)")
    p.add_argument("--normalisation", choices=["image", "range", "none"], default="image")
    p.add_argument("--align", choices=["none", "major_axis"], default="major_axis",
                   help="major_axis (default): put every cell upright first (centred, long axis vertical) "
                        "and blank its surroundings; none: use the images as they are")
    p.add_argument("--keep-surroundings", action="store_true",
                   help="with --align major_axis: do not blank what lies beyond 3 px of the cell")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", default="adamw", help="sgd, adam, adamw, rmsprop, adamax, nadam, adagrad, adadelta")
    p.add_argument("--scheduler", default="cosine", help="none, exponential, cosine, plateau")
    p.add_argument("--loss", default="ce", choices=["ce", "weighted_ce", "focal"])
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a) parameter (0 = off; 0.2-0.4 usual)")
    p.add_argument("--aug", default=None, help="augmentation preset: aligned (default with --align major_axis), "
                                                "strong (default with --align none: any angle), light, none, temporal")
    p.add_argument("--aug-rate", type=int, default=3, help="augmented copies per image per epoch (1, 5, 10 ...)")
    p.add_argument("--fill-mode", default=None, help="constant, nearest, reflect or wrap (overrides the preset)")
    p.add_argument("--balance", choices=["none", "weights", "sampler"], default="none",
                   help="class imbalance: loss weights or balanced sampling")
    p.add_argument("--folds", type=int, default=5, help="k-fold CV folds; 1 = hold-out split; 0 = no evaluation")
    p.add_argument("--holdout", type=float, default=0.2, help="test fraction when --folds 1")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="inner validation split to pick the best epoch (default 0: last epoch)")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience (needs --val-fraction)")
    p.add_argument("--no-refit", action="store_true", help="do not train the final model on all samples")
    p.add_argument("--tta", type=int, default=1, help="test-time augmentation views when scoring (1-8)")
    p.add_argument("--ensemble", type=int, default=1,
                   help="networks per model, each from its own seed; their probabilities are averaged")
    p.add_argument("--members", default=None, metavar="NETS",
                   help="a mixed ensemble instead of --arch/--model-config/--ensemble, e.g. "
                        "small_cnn*3,mobilenet_v2,resnet18:width=32 (the shipped demo's networks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


@command("train-cls", _add_train_arguments)
def _cmd_train(args: argparse.Namespace) -> int:
    """Train a morphology classifier with k-fold CV and print the CV table."""
    from napari_cellnet.classification.data import Preprocessing, load_class_folders, load_objects
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.classification.report import cv_table
    from napari_cellnet.classification.training import train_classifier
    from napari_cellnet.core.augment import AugmentParams
    from napari_cellnet.models.classifier import parse_members

    prep = Preprocessing(size=args.size, channels=args.channels, normalisation=args.normalisation,
                         crop_fraction=args.crop, align=args.align,
                         isolate=args.align != "none" and not args.keep_surroundings)
    aug = AugmentParams.preset(args.aug or ("strong" if args.align == "none" else "aligned"))
    if args.fill_mode:
        aug = AugmentParams(**{**aug.to_dict(), "fill_mode": args.fill_mode})
    cfg = ClassifierTrainConfig(
        arch=args.arch, model_config=json.loads(args.model_config), activation=args.activation,
        dropout=args.dropout, pretrained=args.pretrained, preprocessing=prep, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
        scheduler=args.scheduler, loss=args.loss, label_smoothing=args.label_smoothing, mixup=args.mixup, augment=aug,
        aug_rate=args.aug_rate, balance=args.balance, folds=args.folds, holdout=args.holdout,
        val_fraction=args.val_fraction, patience=args.patience, refit=not args.no_refit, tta=args.tta, ensemble=args.ensemble,
        members=parse_members(args.members) if args.members else None, seed=args.seed, device=args.device, threads=args.threads,
    )
    if args.image or args.labels:
        if not (args.image and args.labels and args.classes):
            raise ValueError("Training on objects needs --image, --labels and --classes (CSV frame,label,class).")
        if args.dataset:
            raise ValueError("Give either a DATASET folder or --image/--labels/--classes, not both.")
        from napari_cellnet.core.io import read_table

        movie, labels = _read_movie(args.image, args.labels, args.axes)
        table = read_table(args.classes)
        samples = load_objects(movie, labels, table, prep=prep, crop_size=args.crop_size,
                               mask_neighbours=not args.no_mask_neighbours)
    elif args.dataset and Path(args.dataset).is_file():
        samples = _stack_samples(args.dataset, args.classes, prep)
    elif args.dataset:
        samples = load_class_folders(args.dataset, prep)
    else:
        raise ValueError("Give a DATASET folder (DATASET/<class>/*.png) or --image, --labels and --classes.")
    result = drain(train_classifier(samples, cfg, args.output), quiet=args.quiet)
    if result.folds:
        _say(cv_table(result))
    if result.stopped:
        _say("(stopped early: the table covers the folds that finished)")
    if result.checkpoint is not None:
        _say(f"model: {result.checkpoint}")
    return 0


def _stack_samples(path: str, classes: str | None, prep: Any) -> Any:
    """A TIFF stack of single-cell images (N, Y, X[, 3]) with a CSV of one class per image."""
    from napari_cellnet.classification.data import load_image_stack
    from napari_cellnet.core.io import read_stack, read_table

    if not classes:
        raise ValueError(f"{Path(path).name} is an image stack: give --classes CSV with a 'class' column "
                         "(one row per image, in stack order, or with an 'index' column).")
    stack = np.asarray(read_stack(path).data)
    table = read_table(classes)
    if "class" not in table:
        raise ValueError(f"{classes} needs a 'class' column (it has {list(table)}).")
    n = stack.shape[0]
    per_image: list[Any] = [None] * n
    index = table.get("index", list(range(len(table["class"]))))
    for i, c in zip(index, table["class"], strict=True):
        if not 0 <= int(i) < n:
            raise ValueError(f"{classes} names image {i}, but the stack has {n} images (0..{n - 1}).")
        per_image[int(i)] = str(c)
    return load_image_stack(stack, per_image, None, prep)


# ---------------------------------------------------------------------------
# classify
# ---------------------------------------------------------------------------


def _add_classify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", help="folder of single-cell images (sub-folders included)")
    p.add_argument("--model", "-m", default="demo", help="classification checkpoint (.pt); default: the demo model")
    p.add_argument("--image", help="instead of a folder: an image or movie")
    p.add_argument("--labels", help="the Labels movie of --image; one row per object per frame")
    p.add_argument("--axes", default=None, help="axes of --image (default: from the file)")
    p.add_argument("--crop-size", type=int, default=None, help="crop window around objects (default: the model's)")
    p.add_argument("--output", "-o", required=True, help="CSV table to write")
    p.add_argument("--tta", type=int, default=1, help="average over this many flips/rotations (1-8)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--quiet", "-q", action="store_true")


@command("classify", _add_classify_arguments)
def _cmd_classify(args: argparse.Namespace) -> int:
    """Classify a folder of cell images, or every object of a Labels movie, into a CSV table."""
    from napari_cellnet.classification.inference import classify
    from napari_cellnet.core.io import write_table

    _threads(args.threads)
    model = _model_path(args.model)
    if args.image or args.labels:
        if not (args.image and args.labels) or args.folder:
            raise ValueError("Give either a FOLDER, or --image together with --labels.")
        movie, labels = _read_movie(args.image, args.labels, args.axes)
        job = classify(model, image=movie, labels=labels, device=args.device, batch_size=args.batch,
                       tta=args.tta, crop_size=args.crop_size)
    elif args.folder:
        job = classify(model, folder=args.folder, device=args.device, batch_size=args.batch, tta=args.tta)
    else:
        raise ValueError("Give a FOLDER of images, or --image and --labels.")
    table = drain(job, quiet=args.quiet)
    seconds = table.pop("_seconds", None)
    write_table(args.output, {k: list(v) for k, v in table.items()})
    n = len(table["class"])
    counts: dict[str, int] = {}
    for c in table["class"]:
        counts[str(c)] = counts.get(str(c), 0) + 1
    rate = f" in {seconds:.2f} s" if seconds else ""
    _say(f"{n} {'objects' if 'label' in table else 'images'} classified{rate}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    _say(f"table: {args.output}")
    return 0


# ---------------------------------------------------------------------------
# evaluate-cls
# ---------------------------------------------------------------------------


def _add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="labelled class-folder dataset (class names must be the model's)")
    p.add_argument("--model", "-m", default="demo", help="classification checkpoint (.pt); default: the demo model")
    p.add_argument("--output", "-o", default=None, help="write the full report as JSON here")
    p.add_argument("--predictions", default=None, help="write per-image predictions (CSV) here")
    p.add_argument("--tta", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--quiet", "-q", action="store_true")


def format_report(report: dict[str, Any]) -> str:
    """Accuracy, confusion matrix and per-class table of a classification report."""
    names = report["class_names"]
    w = max(8, *(len(n) for n in names))
    lines = [f"n {report['n']}  accuracy {report['accuracy']:.3f}  balanced accuracy "
             f"{report['balanced_accuracy']:.3f}  macro F1 {report['macro']['f1']:.3f}  "
             f"macro AUC {report['macro'].get('auc', float('nan')):.3f}", "",
             "confusion matrix (rows: true, columns: predicted)",
             " " * (w + 1) + " ".join(f"{n[:8]:>8}" for n in names)]
    for n, row in zip(names, report["confusion_matrix"], strict=True):
        lines.append(f"{n:>{w}} " + " ".join(f"{v:>8}" for v in row))
    lines += ["", f"{'class':>{w}} {'precision':>9} {'recall':>7} {'F1':>6} {'specif.':>8} {'NPV':>6} "
              f"{'AUC':>6} {'n':>5}"]
    for n in names:
        c = report["per_class"][n]
        lines.append(f"{n:>{w}} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} "
                     f"{c['specificity']:>8.3f} {c['npv']:>6.3f} {c.get('auc', float('nan')):>6.3f} "
                     f"{c['support']:>5}")
    return "\n".join(lines)


@command("evaluate-cls", _add_evaluate_arguments)
def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a classifier on a labelled class-folder dataset (all classification metrics)."""
    from napari_cellnet.classification.inference import evaluate
    from napari_cellnet.classification.report import jsonable
    from napari_cellnet.core.io import write_table

    _threads(args.threads)
    out = drain(evaluate(_model_path(args.model), args.dataset, device=args.device, tta=args.tta),
                quiet=args.quiet)
    _say(format_report(out["report"]))
    if args.output:
        Path(args.output).write_text(json.dumps(jsonable(out["report"]), indent=1))
    if args.predictions:
        write_table(args.predictions, {k: list(v) for k, v in out["table"].items()})
    return 0


if __name__ == "__main__":  # pragma: no cover
    from napari_cellnet.cli.app import main

    sys.exit(main())
