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

from napari_cellnet.classification.params import ClassifierTrainConfig, ClassifyParams
from napari_cellnet.cli.app import command, drain
from napari_cellnet.cli.flags import params_from_args


def _say(*parts: str) -> None:
    """Results go to stdout (progress goes to stderr), so they can be piped or redirected."""
    sys.stdout.write(" ".join(parts) + "\n")


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
    # inputs and outputs only: every training choice is a flag made from ClassifierTrainConfig
    p.add_argument("dataset", nargs="?", help="class-folder dataset (DATASET/<class>/*.png|tif|bmp|jpg), "
                   "or a TIFF stack of single-cell images with --classes")
    p.add_argument("--image", help="instead of DATASET: an image or movie whose objects are classified")
    p.add_argument("--labels", help="the Labels movie of --image (instance IDs)")
    p.add_argument("--classes", help="CSV frame,label,class of the annotated objects of --labels; "
                   "for a stack DATASET: a 'class' column, one row per image (optional 'index')")
    p.add_argument("--axes", default=None, help="axes of --image, e.g. TYX, TYXC (default: from the file)")
    p.add_argument("--output", "-o", required=True, help="model folder (created; model.pt, report.json ...)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


@command("train-cls", _add_train_arguments, params=ClassifierTrainConfig)
def _cmd_train(args: argparse.Namespace) -> int:
    """Train a morphology classifier with k-fold CV and print the CV table."""
    from napari_cellnet.classification.data import load_class_folders, load_objects
    from napari_cellnet.classification.report import cv_table
    from napari_cellnet.classification.training import train_classifier

    cfg = params_from_args(ClassifierTrainConfig, args)
    prep = cfg.preprocessing
    if args.image or args.labels:
        if not (args.image and args.labels and args.classes):
            raise ValueError("Training on objects needs --image, --labels and --classes (CSV frame,label,class).")
        if args.dataset:
            raise ValueError("Give either a DATASET folder or --image/--labels/--classes, not both.")
        from napari_cellnet.core.io import read_table

        movie, labels = _read_movie(args.image, args.labels, args.axes)
        table = read_table(args.classes)
        samples = load_objects(movie, labels, table, prep=prep, crop_size=cfg.crop_size,
                               mask_neighbours=cfg.mask_neighbours)
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
    # inputs and outputs only: the run's choices are flags made from ClassifyParams
    p.add_argument("folder", nargs="?", help="folder of single-cell images (sub-folders included)")
    p.add_argument("--model", "-m", default="demo", help="classification checkpoint (.pt); default: the demo model")
    p.add_argument("--image", help="instead of a folder: an image or movie")
    p.add_argument("--labels", help="the Labels movie of --image; one row per object per frame")
    p.add_argument("--axes", default=None, help="axes of --image (default: from the file)")
    p.add_argument("--output", "-o", required=True, help="CSV table to write")
    p.add_argument("--quiet", "-q", action="store_true")


@command("classify", _add_classify_arguments, params=ClassifyParams)
def _cmd_classify(args: argparse.Namespace) -> int:
    """Classify a folder of cell images, or every object of a Labels movie, into a CSV table."""
    from napari_cellnet.classification.inference import classify
    from napari_cellnet.core.io import write_table

    params = params_from_args(ClassifyParams, args)
    model = _model_path(args.model)
    if args.image or args.labels:
        if not (args.image and args.labels) or args.folder:
            raise ValueError("Give either a FOLDER, or --image together with --labels.")
        movie, labels = _read_movie(args.image, args.labels, args.axes)
        job = classify(model, image=movie, labels=labels, params=params)
    elif args.folder:
        _objects_only(params)
        job = classify(model, folder=args.folder, params=params)
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


def _objects_only(params: ClassifyParams) -> None:
    """Refuse the object-crop options for a gallery, where they would silently do nothing."""
    given = [i.flag for i in params.infos() if i.spec.group == "objects" and getattr(params, i.name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} set how objects of a Labels movie are cropped; a folder of single-cell "
                         "images is used as it is. Leave them out, or classify --image with --labels.")


# ---------------------------------------------------------------------------
# evaluate-cls
# ---------------------------------------------------------------------------


def _add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    # inputs and outputs only: the prediction choices are those of classify (ClassifyParams)
    p.add_argument("dataset", help="labelled class-folder dataset (class names must be the model's)")
    p.add_argument("--model", "-m", default="demo", help="classification checkpoint (.pt); default: the demo model")
    p.add_argument("--output", "-o", default=None, help="write the full report as JSON here")
    p.add_argument("--predictions", default=None, help="write per-image predictions (CSV) here")
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


@command("evaluate-cls", _add_evaluate_arguments, params=ClassifyParams)
def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a classifier on a labelled class-folder dataset (all classification metrics)."""
    from napari_cellnet.classification.inference import evaluate
    from napari_cellnet.classification.report import jsonable
    from napari_cellnet.core.io import write_table

    params = params_from_args(ClassifyParams, args)
    _objects_only(params)
    out = drain(evaluate(_model_path(args.model), args.dataset, params), quiet=args.quiet)
    _say(format_report(out["report"]))
    if args.output:
        Path(args.output).write_text(json.dumps(jsonable(out["report"]), indent=1))
    if args.predictions:
        write_table(args.predictions, {k: list(v) for k, v in out["table"].items()})
    return 0


if __name__ == "__main__":  # pragma: no cover
    from napari_cellnet.cli.app import main

    sys.exit(main())
