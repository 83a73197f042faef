"""One fixed-size crop per object per frame, from an image movie and its Labels movie.

Classifying the cells that a segmentation found means turning every object of a Labels
layer into a small image the classifier can read: a window of fixed size centred on the
object's centroid, padded where the window leaves the image, optionally with the
neighbouring cells (and the background) masked out so the network sees only this cell.
Each crop comes with one row of a table (``frame``, ``label``, centroid, bounding box,
area, whether it touched the border) so that predictions go straight back into the
Labels layer's ``features``.

Numpy and scikit-image only (no torch), so the napari reader, the CLI and the training
data code can all use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from skimage.measure import regionprops
from skimage.transform import resize

PAD_MODES = ("constant", "edge", "reflect", "wrap")
TABLE_COLUMNS = (
    "frame", "label", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1",
    "area", "crop_y0", "crop_x0", "touches_border",
)


def as_tcyx(image: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """View an image as ``(T, C, Y, X)``.

    Parameters
    ----------
    image : ndarray, shape (Y, X), (Y, X, 3|4) RGB, (T, Y, X), (T, Y, X, 3|4) or (T, C, Y, X)
        A trailing axis of length 3 or 4 on a 3-D/4-D array is taken as colour unless
        ``channel_axis`` says otherwise.
    channel_axis : int, optional
        Axis holding channels, when it is not the trailing RGB axis or axis 1 of a 4-D array.
    """
    a = np.asarray(image)
    if channel_axis is not None:
        a = np.moveaxis(a, channel_axis, -3)
        return a[None] if a.ndim == 3 else a
    if a.ndim == 2:
        return a[None, None]
    if a.ndim == 3:
        if a.shape[-1] in (3, 4) and a.shape[0] > 4:
            return np.moveaxis(a, -1, 0)[None]
        return a[:, None]
    if a.ndim == 4:
        if a.shape[-1] in (3, 4) and a.shape[1] > 4:
            return np.moveaxis(a, -1, 1)
        return a
    raise ValueError(f"Cannot read an image of shape {a.shape} as (T, C, Y, X); give axes explicitly.")


def resize_keep_aspect(image: np.ndarray, size: int, pad_mode: str = "edge", cval: float = 0.0,
                       order: int = 1) -> np.ndarray:
    """Scale ``image`` so its longer side is ``size`` and pad the shorter side to a square.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X)
    size : int
        Side of the square output.
    pad_mode : {"constant", "edge", "reflect", "wrap"}
        How the short side is padded (centred).
    order : int
        Interpolation order (0 for label images).

    Returns
    -------
    ndarray, shape (C, size, size), float32 (the input dtype when ``order=0``)
    """
    if image.ndim != 3:
        raise ValueError(f"resize_keep_aspect expects (C, Y, X), got shape {image.shape}.")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}.")
    _check_pad(pad_mode)
    c, ny, nx = image.shape
    scale = size / max(ny, nx)
    ty, tx = max(1, round(ny * scale)), max(1, round(nx * scale))
    if (ty, tx) == (ny, nx):
        out = image.astype(np.float32) if order else image.copy()
    else:
        out = resize(image, (c, ty, tx), order=order, mode="edge", anti_aliasing=order > 0 and scale < 1,
                     preserve_range=True)
        out = out.astype(np.float32) if order else out.astype(image.dtype)
    py, px = size - ty, size - tx
    if py or px:
        pads = ((0, 0), (py // 2, py - py // 2), (px // 2, px - px // 2))
        out = np.pad(out, pads, mode=pad_mode,  # type: ignore[call-overload]
                     **({"constant_values": cval} if pad_mode == "constant" else {}))
    return out


def _check_pad(pad_mode: str) -> None:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"Unknown pad mode {pad_mode!r}; choose one of {', '.join(PAD_MODES)}.")


def _window(plane: np.ndarray, y0: int, x0: int, size: int, pad_mode: str, cval: float) -> tuple[np.ndarray, bool]:
    """``plane[..., y0:y0+size, x0:x0+size]`` padded where it leaves the image."""
    ny, nx = plane.shape[-2:]
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + size, ny), min(x0 + size, nx)
    piece = plane[..., ya:yb, xa:xb]
    before = (ya - y0, xa - x0)
    after = (y0 + size - yb, x0 + size - xb)
    if not any(before + after):
        return piece.copy(), False
    if piece.shape[-1] == 0 or piece.shape[-2] == 0:
        raise ValueError("Crop window lies entirely outside the image.")
    pads = [(0, 0)] * (plane.ndim - 2) + [(before[0], after[0]), (before[1], after[1])]
    kwargs: dict[str, Any] = {"constant_values": cval} if pad_mode == "constant" else {}
    return np.pad(piece, pads, mode=pad_mode, **kwargs), True  # type: ignore[call-overload]


def object_crops(
    image: np.ndarray,
    labels: np.ndarray,
    crop_size: int = 64,
    output_size: int | None = None,
    mask_neighbours: bool = False,
    mask_background: bool = False,
    mask_value: float | None = None,
    pad_mode: str = "constant",
    cval: float = 0.0,
    frames: list[int] | None = None,
    channel_axis: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cut one square crop per object per frame, centred on the object's centroid.

    Parameters
    ----------
    image : ndarray, shape (T, Y, X), (T, C, Y, X), (T, Y, X, 3), (Y, X) or (Y, X, 3)
        The intensity movie (see :func:`as_tcyx`).
    labels : ndarray of int, shape (T, Y, X) or (Y, X)
        Instance labels (0 is background), same T, Y, X as ``image``.
    crop_size : int
        Side of the window cut from the image, in pixels. The window's top-left corner is
        ``floor(centroid + 0.5) - crop_size // 2``, so the centroid pixel sits at index
        ``crop_size // 2`` of the crop.
    output_size : int, optional
        Resize every crop to this side (aspect kept: the window is square).
    mask_neighbours : bool
        Replace the pixels of *other* objects by ``mask_value``.
    mask_background : bool
        Replace the background (label 0) pixels too, so only the object remains.
    mask_value : float, optional
        Value of masked pixels; default: the median of that frame's background pixels
        per channel (0 when the frame has no background).
    pad_mode : {"constant", "edge", "reflect", "wrap"}
        How windows that leave the image are filled (``"constant"`` uses ``cval``). Labels
        are always padded with 0, so padding is never mistaken for an object.
    cval : float
        Fill value for ``pad_mode="constant"``.
    frames : list of int, optional
        Only these frames (default all).
    channel_axis : int, optional
        See :func:`as_tcyx`.

    Returns
    -------
    crops : ndarray of float32, shape (N, C, S, S)
        ``S = output_size or crop_size``; ``N`` = number of (frame, object) pairs, ordered by
        frame then label. ``N = 0`` when the labels hold no object (not an error).
    table : dict of ndarray, each shape (N,)
        Columns :data:`TABLE_COLUMNS`: ``frame``, ``label``, ``centroid_y/x`` (pixels),
        ``bbox_y0, bbox_x0, bbox_y1, bbox_x1`` (half-open), ``area``, ``crop_y0/x0`` (window
        origin; negative when the window starts outside the image) and ``touches_border``
        (the window needed padding).
    """
    img, lab = _check_movie(image, labels, channel_axis)
    if crop_size < 2:
        raise ValueError(f"crop_size must be >= 2, got {crop_size}.")
    _check_pad(pad_mode)
    size = output_size or crop_size
    crops: list[np.ndarray] = []
    rows: dict[str, list[Any]] = {c: [] for c in TABLE_COLUMNS}
    for t in range(lab.shape[0]) if frames is None else frames:
        if not 0 <= t < lab.shape[0]:
            raise ValueError(f"Frame {t} does not exist (the movie has {lab.shape[0]} frames).")
        frame = np.asarray(img[t], dtype=np.float32)
        fill = None
        if mask_neighbours or mask_background:
            fill = _mask_fill(frame, lab[t], mask_value)
        for crop, row in _frame_crops(frame, lab[t], crop_size, pad_mode, cval, fill, mask_background):
            if output_size and output_size != crop_size:
                crop = resize_keep_aspect(crop, output_size)
            crops.append(crop.astype(np.float32, copy=False))
            for name, value in zip(TABLE_COLUMNS, (t, *row), strict=True):
                rows[name].append(value)
    out = np.stack(crops) if crops else np.zeros((0, img.shape[1], size, size), np.float32)
    dtypes = {"centroid_y": np.float64, "centroid_x": np.float64, "touches_border": bool}
    table = {c: np.asarray(rows[c], dtype=dtypes.get(c, np.int64)) for c in TABLE_COLUMNS}
    return out, table


def _check_movie(image: np.ndarray, labels: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as ``(T, C, Y, X)`` and ``labels`` as integer ``(T, Y, X)`` of the same movie."""
    img = as_tcyx(image, channel_axis)
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    if lab.ndim != 3:
        raise ValueError(f"Labels must have shape (T, Y, X) or (Y, X), got {np.shape(labels)}.")
    if not np.issubdtype(lab.dtype, np.integer):
        if np.any(lab != np.round(lab)):
            raise ValueError("Labels must be integers (instance IDs); this array holds fractions.")
        lab = lab.astype(np.int64)
    if img.shape[0] != lab.shape[0] or img.shape[-2:] != lab.shape[-2:]:
        raise ValueError(
            f"Image (T={img.shape[0]}, Y, X={img.shape[-2:]}) and labels (T={lab.shape[0]}, "
            f"Y, X={lab.shape[-2:]}) do not match; choose the Labels layer made from this image."
        )
    return img, lab


def _mask_fill(frame: np.ndarray, lframe: np.ndarray, mask_value: float | None) -> np.ndarray:
    """Per-channel value of masked pixels ``(C,)``: ``mask_value``, else the frame's background median."""
    if mask_value is not None:
        return np.full(frame.shape[0], mask_value, np.float32)
    bg = lframe == 0
    return np.median(frame[:, bg], axis=1) if bg.any() else np.zeros(frame.shape[0], np.float32)


def _frame_crops(frame: np.ndarray, lframe: np.ndarray, crop_size: int, pad_mode: str, cval: float,
                 fill: np.ndarray | None, mask_background: bool) -> Iterator[tuple[np.ndarray, tuple[Any, ...]]]:
    """The crop ``(C, crop_size, crop_size)`` and table row (all columns but ``frame``) of
    every object of one frame; ``fill`` given: other objects (and with ``mask_background``
    the background) painted with it."""
    half = crop_size // 2
    for p in regionprops(lframe):
        cy, cx = p.centroid
        y0, x0 = int(np.floor(cy + 0.5)) - half, int(np.floor(cx + 0.5)) - half
        crop, padded = _window(frame, y0, x0, crop_size, pad_mode, cval)
        if fill is not None:
            lcrop, _ = _window(lframe, y0, x0, crop_size, "constant", 0)
            hide = (lcrop != p.label) & (lcrop != 0) if not mask_background else lcrop != p.label
            crop[:, hide] = fill[:, None]
        b = p.bbox
        yield crop, (p.label, cy, cx, b[0], b[1], b[2], b[3], int(p.area), y0, x0, padded)


def object_masks(labels: np.ndarray, table: Mapping[str, np.ndarray], crop_size: int) -> np.ndarray:
    """The object's own mask in each crop cut by :func:`object_crops` (same windows).

    Parameters
    ----------
    labels : ndarray of int, shape (T, Y, X) or (Y, X)
    table : dict of ndarray
        The table :func:`object_crops` returned (``frame``, ``label``, ``crop_y0/x0``).
    crop_size : int
        The ``crop_size`` given to :func:`object_crops`.

    Returns
    -------
    ndarray of bool, shape (N, crop_size, crop_size)
    """
    lab = np.asarray(labels)
    lab = lab[None] if lab.ndim == 2 else lab
    out = np.zeros((len(table["label"]), crop_size, crop_size), bool)
    for i, (t, v, y0, x0) in enumerate(zip(table["frame"], table["label"], table["crop_y0"], table["crop_x0"],
                                         strict=True)):
        window, _ = _window(lab[int(t)], int(y0), int(x0), crop_size, "constant", 0)
        out[i] = window == v
    return out
