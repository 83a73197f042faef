"""Samples for the morphology classifier: galleries and the objects of a Labels layer.

A classifier needs a stack of same-sized, comparably scaled single-cell images with a class
for each. They come from two places:

* a **gallery**: a class-folder dataset (``root/<class>/*.png``, the layout of HuSHeM and
  the seed GUIs) or an image stack with one class per image;
* the **objects of a Labels layer** on an image or movie: one crop per object per frame
  (:mod:`napari_cellnet.classification.crops`) with a class table per ``(frame, label)``.

Both end as a :class:`SampleSet`: images ``(N, C, S, S)`` float32, already resized with
aspect kept and normalised, with integer targets, the class names and a table that says
where each sample came from. Preparing everything once keeps the training loop to
augmentation and arithmetic. The preparation settings are a :class:`Preprocessing` that is
stored in the checkpoint, so prediction prepares new images exactly the same way.

Policies (documented in ``docs/classification.md``):

* **channels**: ``"auto"`` keeps RGB when every image is RGB and grayscale when every image
  is grayscale; a gallery that mixes both is refused with the list of files, unless
  ``"rgb"`` (grayscale repeated to 3 channels) or ``"gray"`` (RGB averaged with ITU-R 601
  luminance weights) is chosen. Alpha channels are dropped.
* **normalisation**: ``"image"`` maps each image's 1st-99.8th percentile (over all its
  channels together, so colour ratios survive) to 0-1; ``"range"`` divides by the dtype's
  maximum (uint8: 255); ``"none"`` leaves values alone.

How the training loop draws batches from the samples (and counters class imbalance) is
:mod:`napari_cellnet.classification.sampling`.

Numpy and scikit-image only: the torch side is in :mod:`napari_cellnet.classification.fit`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.classification.crops import object_crops, object_masks, resize_keep_aspect
from napari_cellnet.classification.orientation import ALIGN_MODES, align
from napari_cellnet.core.io import ClassDataset, read_class_folders, read_image

CHANNEL_MODES = ("auto", "rgb", "gray")
NORMALISATIONS = ("image", "range", "none")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class Preprocessing:
    """How raw images become network input; stored in checkpoints as ``meta["preprocessing"]``.

    Parameters
    ----------
    size : int
        Side of the square network input (images are resized with aspect kept, then padded).
    channels : {"auto", "rgb", "gray"}
        Channel policy (module docstring). After :func:`prepare_images` it is resolved to
        ``"rgb"`` or ``"gray"``.
    normalisation : {"image", "range", "none"}
    percentiles : (float, float)
        Percentiles of ``"image"`` normalisation.
    pad_mode : str
        Padding of the short side (``"edge"``, ``"constant"``, ``"reflect"``, ``"wrap"``).
    crop_fraction : float
        Keep only the central ``crop_fraction`` of each image's height and width before
        resizing (1.0 keeps all). For galleries of centred cells (HuSHeM) this spends the
        input pixels on the cell rather than on the background.
    align : {"none", "major_axis"}
        ``"major_axis"`` rotates every image so its cell is centred with the long axis
        vertical before cropping (:mod:`napari_cellnet.classification.orientation`): the cell is found by
        contrast to the background in galleries, and is the object's own label for
        Labels-layer objects.
    isolate : bool
        With ``align``: paint everything more than 3 pixels from the cell with the
        background colour (tails, neighbours and debris vanish), so only the cell's own
        shape and texture reach the network.
    """

    size: int = 64
    channels: str = "auto"
    normalisation: str = "image"
    percentiles: tuple[float, float] = (1.0, 99.8)
    pad_mode: str = "edge"
    crop_fraction: float = 1.0
    align: str = "none"
    isolate: bool = False

    def __post_init__(self) -> None:
        if self.align not in ALIGN_MODES:
            raise ValueError(f"Unknown alignment {self.align!r}; choose one of {', '.join(ALIGN_MODES)}.")
        if self.isolate and self.align == "none":
            raise ValueError("isolate needs align='major_axis' (CLI: --align major_axis): "
                             "the cell is found while aligning it.")
        if not 0.1 <= self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be between 0.1 and 1, got {self.crop_fraction}.")
        if self.channels not in CHANNEL_MODES:
            raise ValueError(f"Unknown channel policy {self.channels!r}; choose one of {', '.join(CHANNEL_MODES)}.")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"Unknown normalisation {self.normalisation!r}; choose one of {', '.join(NORMALISATIONS)}.")
        if self.size < 8:
            raise ValueError(f"Input size must be >= 8 pixels, got {self.size}.")
        self.percentiles = (float(self.percentiles[0]), float(self.percentiles[1]))

    @property
    def n_channels(self) -> int:
        """1 for ``"gray"``, 3 for ``"rgb"`` (only defined once resolved)."""
        if self.channels == "auto":
            raise ValueError("The channel policy is still 'auto'; prepare images first to resolve it.")
        return 3 if self.channels == "rgb" else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(**{**d, "percentiles": tuple(d.get("percentiles", (1.0, 99.8)))})


@dataclass
class SampleSet:
    """Prepared samples.

    Attributes
    ----------
    images : ndarray of float32, shape (N, C, S, S)
    labels : ndarray of int64, shape (N,)
        Class index per sample; -1 for samples without a class (objects not in the table).
    class_names : list of str
    sources : dict of ndarray, each shape (N,)
        Where each sample came from: ``path`` for galleries, ``index`` for stacks,
        ``frame``, ``label``, centroid and bbox columns for Labels-layer objects.
    preprocessing : Preprocessing
        Resolved preprocessing (``channels`` is ``"rgb"`` or ``"gray"``).
    meta : dict
        How the samples were made, copied into checkpoints (objects: ``crop_size``,
        ``mask_neighbours``, ``mask_background``, ``pad_mode``), so prediction cuts crops
        the same way.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sources: dict[str, np.ndarray] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: np.ndarray) -> SampleSet:
        """The samples at ``idx`` (same classes and preprocessing)."""
        return SampleSet(self.images[idx], self.labels[idx], list(self.class_names),
                         {k: v[idx] for k, v in self.sources.items()}, self.preprocessing, dict(self.meta))

    def labelled(self) -> SampleSet:
        """Only the samples that have a class."""
        return self.subset(np.flatnonzero(self.labels >= 0))

    def counts(self) -> dict[str, int]:
        """Number of samples per class."""
        return {c: int(np.sum(self.labels == i)) for i, c in enumerate(self.class_names)}


# --------------------------------------------------------------------------- preparation


def _to_cyx(img: np.ndarray, source: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return np.moveaxis(a[..., :3], -1, 0)  # drop alpha
    if a.ndim == 3 and a.shape[-1] == 2:  # gray + alpha
        return a[None, ..., 0]
    raise ValueError(f"{source}: expected a grayscale (Y, X) or RGB (Y, X, 3) image, got shape {a.shape}.")


def resolve_channels(n_channels: Sequence[int], policy: str, sources: Sequence[str] = ()) -> str:
    """Decide ``"rgb"`` or ``"gray"`` for images with the given channel counts (1 or 3).

    Raises
    ------
    ValueError
        For ``"auto"`` on a mix of grayscale and RGB images, naming an example of each.
    """
    if policy != "auto":
        return policy
    kinds = set(n_channels)
    if kinds == {1}:
        return "gray"
    if kinds == {3}:
        return "rgb"
    if not kinds:
        return "gray"
    one = next((s for s, n in zip(sources, n_channels, strict=False) if n == 1), "?")
    three = next((s for s, n in zip(sources, n_channels, strict=False) if n == 3), "?")
    raise ValueError(
        f"The images mix grayscale (e.g. {one}) and RGB (e.g. {three}). Choose channels='rgb' "
        "(grayscale repeated to 3 channels) or channels='gray' (RGB converted to luminance)."
    )


def _convert_channels(cyx: np.ndarray, mode: str) -> np.ndarray:
    if mode == "rgb" and cyx.shape[0] == 1:
        return np.repeat(cyx, 3, axis=0)
    if mode == "gray" and cyx.shape[0] == 3:
        return np.tensordot(_LUMA, cyx.astype(np.float32), axes=(0, 0))[None]
    if mode == "gray" and cyx.shape[0] != 1 or mode == "rgb" and cyx.shape[0] != 3:
        raise ValueError(f"Cannot make {mode} input from an image with {cyx.shape[0]} channels.")
    return cyx


def normalise(cyx: np.ndarray, prep: Preprocessing, dtype_max: float | None = None) -> np.ndarray:
    """Apply ``prep.normalisation`` to one image ``(C, Y, X)``; returns float32."""
    x = cyx.astype(np.float32, copy=False)
    if prep.normalisation == "image":
        lo, hi = np.percentile(x, prep.percentiles)
        return ((x - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if prep.normalisation == "range":
        return x / np.float32(dtype_max or 1.0)
    return x


def _dtype_max(a: np.ndarray) -> float:
    return float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0


def prepare_images(images: Sequence[np.ndarray], prep: Preprocessing, sources: Sequence[str] | None = None,
                   dtype_max: float | None = None,
                   masks: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, Preprocessing]:
    """Turn raw images of any size into network input.

    Parameters
    ----------
    images : sequence of ndarray, each (Y, X), (Y, X, 3|4) or already (C, Y, X) float crops
    prep : Preprocessing
    sources : sequence of str, optional
        Names for error messages (file paths).
    dtype_max : float, optional
        Full-scale value for ``"range"`` normalisation (default: the maximum of each
        image's integer dtype, 1.0 for floats); object crops pass their movie's.
    masks : sequence of ndarray of bool, each (Y, X), optional
        The cell in each image, for ``prep.align`` (found by contrast when omitted).

    Returns
    -------
    batch : ndarray of float32, shape (N, C, size, size)
    prep : Preprocessing
        With ``channels`` resolved.
    """
    names = list(sources) if sources is not None else [f"image {i}" for i in range(len(images))]
    cyx = [_to_cyx(im, s) if not (np.ndim(im) == 3 and np.shape(im)[0] in (1, 3)
                                   and np.shape(im)[-1] not in (3, 4)) else np.asarray(im)
           for im, s in zip(images, names, strict=True)]
    mode = resolve_channels([a.shape[0] for a in cyx], prep.channels, names)
    resolved = Preprocessing(**{**prep.to_dict(), "channels": mode, "percentiles": prep.percentiles})
    out = np.zeros((len(cyx), resolved.n_channels, prep.size, prep.size), np.float32)
    for i, (a, raw) in enumerate(zip(cyx, images, strict=True)):
        if prep.align == "major_axis":
            a = align(a, None if masks is None else masks[i], keep_only_cell=prep.isolate)
        a = normalise(_convert_channels(_centre(a, prep.crop_fraction), mode), resolved, dtype_max or _dtype_max(np.asarray(raw)))
        out[i] = resize_keep_aspect(a, prep.size, pad_mode=prep.pad_mode)
    return out, resolved


def _centre(cyx: np.ndarray, fraction: float) -> np.ndarray:
    if fraction >= 1.0:
        return cyx
    ny, nx = cyx.shape[-2:]
    ty, tx = max(1, round(ny * fraction)), max(1, round(nx * fraction))
    y0, x0 = (ny - ty) // 2, (nx - tx) // 2
    return cyx[:, y0:y0 + ty, x0:x0 + tx]


# --------------------------------------------------------------------------- sources


def load_class_folders(root: str | os.PathLike[str] | ClassDataset, prep: Preprocessing | None = None) -> SampleSet:
    """A class-folder gallery (``root/<class>/*.png``) as prepared samples.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing folder, no class folders, an empty class folder (named), an unreadable
        image (named), or mixed grayscale/RGB with ``channels="auto"``.
    """
    ds = root if isinstance(root, ClassDataset) else read_class_folders(root)
    prep = prep or Preprocessing()
    raw = [read_image(p) for p in ds.paths]
    images, resolved = prepare_images(raw, prep, [str(p) for p in ds.paths])
    rel = np.asarray([_relative(p, ds.root) for p in ds.paths])
    return SampleSet(images, np.asarray(ds.labels, np.int64), list(ds.class_names), {"path": rel}, resolved)


def _relative(p: Path, root: Path) -> str:
    try:
        return Path(p).relative_to(root).as_posix()
    except ValueError:
        return str(p)


def load_image_stack(stack: np.ndarray, classes: Sequence[Any] | None, class_names: Sequence[str] | None = None,
                     prep: Preprocessing | None = None, rgb: bool | None = None) -> SampleSet:
    """A stack of single-cell images with one class per image.

    Parameters
    ----------
    stack : ndarray, shape (N, Y, X), (N, Y, X, 3) or (N, C, Y, X)
    classes : sequence, length N, optional
        Class per image, as names or indices into ``class_names``; ``None`` for prediction.
    class_names : sequence of str, optional
        Order of the classes (default: sorted unique names of ``classes``).
    rgb : bool, optional
        Whether the last axis is colour (default: guessed from a last axis of 3 or 4).
    """
    a = np.asarray(stack)
    if a.ndim == 3 or (a.ndim == 4 and (rgb or (rgb is None and a.shape[-1] in (3, 4)))):
        items = list(a)
    elif a.ndim == 4:
        items = [np.moveaxis(x, 0, -1) if x.shape[0] == 3 else x[0] for x in a]
    else:
        raise ValueError(f"An image stack must be (N, Y, X), (N, Y, X, 3) or (N, C, Y, X); got {a.shape}.")
    labels, names = encode_classes(classes, class_names, len(items))
    images, resolved = prepare_images(items, prep or Preprocessing(), [f"image {i}" for i in range(len(items))])
    return SampleSet(images, labels, names, {"index": np.arange(len(items))}, resolved)


def encode_classes(classes: Sequence[Any] | None, class_names: Sequence[str] | None,
                   n: int) -> tuple[np.ndarray, list[str]]:
    """Class names or indices -> indices into the class list (``-1`` for empty/None)."""
    if classes is None:
        return np.full(n, -1, np.int64), list(class_names or [])
    values = list(classes)
    if len(values) != n:
        raise ValueError(f"{len(values)} classes given for {n} images; give one class per image.")
    def empty(v: Any) -> bool:
        return v is None or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and np.isnan(v))
    if class_names is None:
        if all(isinstance(v, (int, np.integer)) for v in values if not empty(v)):
            raise ValueError("Classes given as numbers need class_names to say what each number means.")
        class_names = sorted({str(v) for v in values if not empty(v)})
    names = [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(names)}
    out = np.full(n, -1, np.int64)
    for i, v in enumerate(values):
        if empty(v):
            continue
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < len(names):
                raise ValueError(f"Class index {v} is out of range for classes {names}.")
            out[i] = int(v)
        elif str(v) in index:
            out[i] = index[str(v)]
        else:
            raise ValueError(f"Unknown class {v!r}; the classes are {names}.")
    return out, names


def load_objects(
    image: np.ndarray,
    labels: np.ndarray,
    class_table: Mapping[str, Sequence[Any]] | None = None,
    class_names: Sequence[str] | None = None,
    prep: Preprocessing | None = None,
    crop_size: int = 64,
    mask_neighbours: bool = True,
    mask_background: bool = False,
    pad_mode: str = "constant",
    channel_axis: int | None = None,
) -> SampleSet:
    """The objects of a Labels layer as samples (one crop per object per frame).

    Parameters
    ----------
    image : ndarray, shape (T, Y, X), (T, Y, X, 3), (T, C, Y, X), (Y, X) or (Y, X, 3)
    labels : ndarray of int, shape (T, Y, X) or (Y, X)
    class_table : dict of sequences, optional
        Columns ``frame`` (optional for a single image; default 0), ``label`` and
        ``class`` (names or indices): the annotated objects. Objects not in the table get
        class -1 (kept for prediction, left out of training).
    class_names : sequence of str, optional
        Order of the classes (default: sorted names in the table).
    crop_size, mask_neighbours, mask_background, pad_mode, channel_axis
        See :func:`napari_cellnet.classification.crops.object_crops`; crops are then resized to
        ``prep.size`` with aspect kept.

    Raises
    ------
    ValueError
        When the table names ``(frame, label)`` pairs that are not objects of the Labels
        layer (the first few are listed), or lacks a ``label``/``class`` column.
    """
    prep = prep or Preprocessing()
    crops, table = object_crops(image, labels, crop_size=crop_size, mask_neighbours=mask_neighbours,
                                mask_background=mask_background, pad_mode=pad_mode, channel_axis=channel_axis)
    if class_table is not None:
        targets, names = object_targets(class_table, table, class_names)
    else:
        targets, names = np.full(crops.shape[0], -1, np.int64), list(class_names or [])
    images, resolved = _prepare_crops(crops, table, labels, prep, crop_size, _dtype_max(np.asarray(image)))
    meta = {"source": "objects", "crop_size": crop_size, "mask_neighbours": mask_neighbours,
            "mask_background": mask_background, "pad_mode": pad_mode}
    return SampleSet(images, targets, names, dict(table), resolved, meta)


def object_targets(class_table: Mapping[str, Sequence[Any]], table: Mapping[str, np.ndarray],
                   class_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The class of every object row of ``table`` from an annotation table.

    Parameters
    ----------
    class_table : dict of sequences
        Columns ``frame`` (optional; default 0), ``label`` and ``class`` (names or indices).
    table : dict of ndarray, each shape (N,)
        The object table of :func:`~napari_cellnet.classification.crops.object_crops`
        (``frame``, ``label``).
    class_names : sequence of str, optional
        Order of the classes (default: sorted names in ``class_table``).

    Returns
    -------
    targets : ndarray of int64, shape (N,)
        Class index per object row; -1 for objects the annotation does not name.
    names : list of str

    Raises
    ------
    ValueError
        A missing ``label``/``class`` column, or ``(frame, label)`` pairs that are not objects
        of the Labels layer (the first five are listed).
    """
    for col in ("label", "class"):
        if col not in class_table:
            raise ValueError(f"The class table needs a {col!r} column (it has {list(class_table)}).")
    t_frames = list(class_table.get("frame", [0] * len(class_table["label"])))
    keys = list(zip((int(f) for f in t_frames), (int(v) for v in class_table["label"]), strict=True))
    present = {(int(f), int(v)): i for i, (f, v) in enumerate(zip(table["frame"], table["label"], strict=True))}
    missing = [k for k in keys if k not in present]
    if missing:
        shown = ", ".join(f"(frame {f}, label {v})" for f, v in missing[:5])
        raise ValueError(
            f"The class table names {len(missing)} object(s) that are not in the Labels layer: {shown}"
            f"{' ...' if len(missing) > 5 else ''}. Fix the table or choose the matching Labels layer."
        )
    idx_labels, names = encode_classes(list(class_table["class"]), class_names, len(keys))
    targets = np.full(len(table["label"]), -1, np.int64)
    for k, c in zip(keys, idx_labels, strict=True):
        targets[present[k]] = c
    return targets, names


def _prepare_crops(crops: np.ndarray, table: Mapping[str, np.ndarray], labels: np.ndarray, prep: Preprocessing,
                   crop_size: int, dtype_max: float) -> tuple[np.ndarray, Preprocessing]:
    """:func:`prepare_images` of object crops ``(N, C, S, S)``; an empty input keeps its channels."""
    if crops.shape[0]:
        masks = list(object_masks(labels, table, crop_size)) if prep.align != "none" else None
        names = [f"frame {f} label {v}" for f, v in zip(table["frame"], table["label"], strict=True)]
        return prepare_images(list(crops), prep, names, dtype_max=dtype_max, masks=masks)
    nch = 3 if prep.channels == "rgb" else 1 if prep.channels == "gray" else crops.shape[1]
    resolved = Preprocessing(**{**prep.to_dict(), "percentiles": prep.percentiles,
                                "channels": "rgb" if nch == 3 else "gray"})
    return np.zeros((0, nch, prep.size, prep.size), np.float32), resolved
