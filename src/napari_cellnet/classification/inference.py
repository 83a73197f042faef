"""Classify galleries and the objects of a Labels layer with a trained checkpoint.

Prediction is a job generator like every long job here (:mod:`napari_cellnet.core.jobs`): it
yields :class:`~napari_cellnet.core.jobs.Progress` per batch and returns a table, a dict of
equal-length columns. For Labels-layer objects the table has ``frame`` and ``label``
columns and can be assigned to ``labels_layer.features`` as it is; every class gets a
``p_<class>`` probability column, and when label IDs are consistent through time (a
tracked movie) ``track_class`` gives the majority class of each label ID over its frames.

Images are prepared with the :class:`~napari_cellnet.classification.data.Preprocessing` stored in
the checkpoint (read through :class:`~napari_cellnet.classification.meta.ClassifierMeta`), and
object crops are cut as the training crops were, so a model sees new cells exactly as it
saw its training cells.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellnet.classification.data import (
    Preprocessing,
    SampleSet,
    load_class_folders,
    load_image_stack,
    load_objects,
    prepare_images,
)
from napari_cellnet.classification.meta import ClassifierMeta
from napari_cellnet.classification.params import ClassifyParams
from napari_cellnet.core import device as devices
from napari_cellnet.core.jobs import STOP, Progress
from napari_cellnet.core.metrics import classification_report
from napari_cellnet.models.checkpoint import Checkpoint, load_checkpoint


def load_classifier(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a classification checkpoint and check it carries what prediction needs
    (:meth:`ClassifierMeta.from_dict <napari_cellnet.classification.meta.ClassifierMeta.from_dict>`
    raises a ValueError otherwise)."""
    ckpt = load_checkpoint(path, task="classification")
    ClassifierMeta.from_dict(ckpt.meta, path)
    return ckpt


_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]
# Views that keep an aligned cell's long axis vertical: identity, mirror, upside down, both.
_AXIS_KEEPING = [(0, False), (0, True), (2, False), (2, True)]


def _tta_views(x: torch.Tensor, n: int, aligned: bool = False) -> list[torch.Tensor]:
    views = []
    for k, flip in (_AXIS_KEEPING if aligned else _DIHEDRAL)[:n]:
        v = torch.flip(x, dims=(-1,)) if flip else x
        views.append(torch.rot90(v, k, dims=(-2, -1)) if k else v)
    return views


@torch.no_grad()
def predict_proba(net: torch.nn.Module, images: np.ndarray, device: Any = "cpu", batch_size: int = 128,
                  tta: int = 1, aligned: bool = False) -> Generator[Progress, Any, np.ndarray]:
    """Class probabilities of prepared images (a job generator).

    Parameters
    ----------
    net : torch.nn.Module
        In eval mode.
    images : ndarray of float32, shape (N, C, S, S)
        Prepared with the model's preprocessing.
    tta : int
        Test-time augmentation: average the softmax over this many of the 8 flips/90 degree
        rotations (1 = off, 8 = all).
    aligned : bool
        The images were aligned (``Preprocessing.align``): only the 4 views that keep the
        long axis vertical are used (mirror first), so ``tta`` above 4 counts as 4.

    Returns
    -------
    ndarray of float32, shape (N, K)
        Rows sum to 1. On STOP, rows of images not yet classified are NaN.
    """
    if not 1 <= tta <= 8:
        raise ValueError(f"tta must be between 1 (off) and 8 (all flips and rotations), got {tta}.")
    dev = devices.resolve(device) if isinstance(device, str) else device
    net.eval()
    n = images.shape[0]
    out: np.ndarray | None = None
    total = max(1, -(-n // batch_size))
    # channels-last convolutions were 1.5x faster on the CPU (small CNN, interleaved A/B runs);
    # the network is put back in the default format afterwards for the caller's training.
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    net.to(memory_format=fmt)  # type: ignore[call-overload]
    try:
        for b, start in enumerate(range(0, n, batch_size)):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(dev)
            views = [v.contiguous(memory_format=fmt) for v in _tta_views(x, tta, aligned)]
            probs = torch.stack([torch.softmax(net(v), dim=1) for v in views]).mean(0)
            p = probs.float().cpu().numpy()
            if out is None:
                out = np.full((n, p.shape[1]), np.nan, np.float32)
            out[start:start + len(p)] = p
            if (yield Progress("batch", b + 1, total, f"batch {b + 1} of {total}")) == STOP:
                break
    finally:
        net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if out is None:
        k = int(getattr(getattr(net, "head", None), "fc", torch.nn.Linear(1, 2)).out_features)
        out = np.zeros((0, k), np.float32)
    return out


def majority_per_track(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority class of every label ID over its frames.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Label ID of each object row.
    classes : ndarray of int, shape (N,)
        Predicted class index of each row.

    Returns
    -------
    track_class : ndarray of int, shape (N,)
        The most frequent class of the row's label ID (ties: the lowest class index).
    track_agreement : ndarray of float, shape (N,)
        Share of that ID's rows that voted for ``track_class``.
    """
    labels = np.asarray(labels)
    classes = np.asarray(classes)
    track_class = np.empty_like(classes)
    agreement = np.empty(len(classes), np.float64)
    for lab in np.unique(labels):
        rows = labels == lab
        votes = np.bincount(classes[rows])
        track_class[rows] = int(votes.argmax())
        agreement[rows] = votes.max() / rows.sum()
    return track_class, agreement


def result_table(samples: SampleSet, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Columns for ``layer.features`` / a CSV: sources, ``class``, ``class_index``,
    ``confidence``, one ``p_<class>`` per class and, for objects, ``track_class``."""
    ok = ~np.isnan(proba).any(axis=1)
    idx = np.where(ok, np.nan_to_num(proba).argmax(axis=1), -1)
    table: dict[str, Any] = {k: np.asarray(v) for k, v in samples.sources.items()}
    names = np.asarray(list(class_names) + [""], dtype=object)
    table["class"] = names[idx]
    table["class_index"] = idx
    table["confidence"] = np.where(ok, np.nan_to_num(proba).max(axis=1), np.nan)
    for i, c in enumerate(class_names):
        table[f"p_{c}"] = proba[:, i]
    if "label" in table and "frame" in table and ok.all() and len(idx):
        tc, agree = majority_per_track(table["label"], idx)
        table["track_class"] = names[tc]
        table["track_agreement"] = agree
    if samples.labels.size and (samples.labels >= 0).any():
        table["true_class"] = np.asarray(
            [samples.class_names[i] if i >= 0 else "" for i in samples.labels], dtype=object)
    return table


def classify(
    model: str | os.PathLike[str] | Checkpoint,
    folder: str | os.PathLike[str] | None = None,
    stack: np.ndarray | None = None,
    image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    params: ClassifyParams | None = None,
    **overrides: Any,
) -> Generator[Progress, Any, dict[str, Any]]:
    """Classify a gallery folder, an image stack, or the objects of a Labels layer.

    Object crops are cut as the model's training crops were (``crop_size``, masking and
    padding from the checkpoint; a gallery-trained model uses crops of its input size
    unless ``crop_size`` is given: choose a window about as large, relative to the cell, as
    the gallery images were).

    Give exactly one of ``folder`` (images in it and in its sub-folders; sub-folder names
    are kept as ``true_class`` when they match the model's classes), ``stack``
    (``(N, Y, X[, 3])``) or ``image`` + ``labels`` (a movie and its Labels layer).

    ``params`` (:class:`~napari_cellnet.classification.params.ClassifyParams`, the object the
    widget and ``napari-cellnet classify`` build) holds the choices; keywords named like its
    fields (``device="cpu"``, ``tta=4`` ...) override it.

    Returns
    -------
    dict of ndarray
        See :func:`result_table`; for objects the rows are ordered by frame, then label.
        An image whose Labels layer has no object gives an empty table (no error).
    """
    p = (params or ClassifyParams()).replace(**overrides)
    p.validate()
    ckpt = model if isinstance(model, Checkpoint) else load_classifier(model)
    meta = ClassifierMeta.from_dict(ckpt.meta, ckpt.path or "the checkpoint")
    prep, names = meta.preprocessing, meta.class_names
    given = sum(x is not None for x in (folder, stack, image))
    if given != 1 or (image is None) != (labels is None):
        raise ValueError("Give exactly one of: a folder, an image stack, or an image with its labels.")
    if folder is not None:
        samples = load_folder_for_prediction(folder, prep, names)
    elif stack is not None:
        samples = load_image_stack(stack, None, names, prep)
    else:
        samples = load_objects(image, labels, None, names, prep,  # type: ignore[arg-type]
                               **meta.crop_options(p.crop_size, p.mask_neighbours))
    if samples.images.shape[1] != prep.n_channels:
        raise ValueError(f"The model expects {prep.n_channels}-channel input but got {samples.images.shape[1]}.")
    dev = devices.resolve(p.device)
    net = ckpt.build(dev)
    t0 = time.perf_counter()
    with devices.torch_threads(p.threads):
        proba = yield from predict_proba(net, samples.images, dev, p.batch_size, p.tta, prep.align != "none")
    table = result_table(samples, proba, names)
    table["_seconds"] = time.perf_counter() - t0  # type: ignore[assignment]
    return table


def load_folder_for_prediction(folder: str | os.PathLike[str], prep: Preprocessing,
                               class_names: Sequence[str]) -> SampleSet:
    """Images in ``folder`` (and its sub-folders); sub-folder names that are classes of the
    model become the true class (so the same call serves ``evaluate``)."""
    from napari_cellnet.core.io import CLASS_IMAGE_SUFFIXES, read_image

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"No such folder: {root}.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CLASS_IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise ValueError(f"{root} holds no images ({', '.join(CLASS_IMAGE_SUFFIXES)}).")
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.asarray([index.get(p.parent.name, -1) if p.parent != root else -1 for p in files], np.int64)
    images, resolved = prepare_images([read_image(p) for p in files], prep, [str(p) for p in files])
    rel = np.asarray([p.relative_to(root).as_posix() for p in files])
    return SampleSet(images, labels, list(class_names), {"path": rel}, resolved)


def evaluate(
    model: str | os.PathLike[str] | Checkpoint,
    dataset: str | os.PathLike[str],
    params: ClassifyParams | None = None,
    **overrides: Any,
) -> Generator[Progress, Any, dict[str, Any]]:
    """Score a model on a class-folder dataset whose class names are the model's.

    Returns
    -------
    dict
        ``report`` (:func:`napari_cellnet.core.metrics.classification_report`) and ``table``
        (per-image predictions).

    Raises
    ------
    ValueError
        If a class folder of the dataset is not a class of the model (both lists named).
    """
    p = (params or ClassifyParams()).replace(**overrides)
    p.validate()
    ckpt = model if isinstance(model, Checkpoint) else load_classifier(model)
    meta = ClassifierMeta.from_dict(ckpt.meta, ckpt.path or "the checkpoint")
    names = meta.class_names
    samples = load_class_folders(dataset, meta.preprocessing)
    unknown = [c for c in samples.class_names if c not in names]
    if unknown:
        raise ValueError(
            f"The dataset's classes {samples.class_names} are not all classes of the model "
            f"({names}); unknown: {unknown}. Rename the folders or choose the matching model."
        )
    remap = np.asarray([names.index(c) for c in samples.class_names])
    samples = SampleSet(samples.images, remap[samples.labels], names, samples.sources, samples.preprocessing)
    dev = devices.resolve(p.device)
    net = ckpt.build(dev)
    with devices.torch_threads(p.threads):
        proba = yield from predict_proba(net, samples.images, dev, p.batch_size, p.tta,
                                         samples.preprocessing.align != "none")
    done = ~np.isnan(proba).any(axis=1)
    report = classification_report(samples.labels[done], proba[done].argmax(1), proba[done], names)
    return {"report": report, "table": result_table(samples, proba, names)}
