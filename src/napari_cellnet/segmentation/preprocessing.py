"""What a movie goes through before the network sees it: normalisation, temporal
background, temporal windows (with an explicit edge policy and optional drift
compensation) and tiling.

numpy and scikit-image only, so that training (:mod:`napari_cellnet.segmentation.data`), inference
and the widgets prepare frames identically, and a checkpoint's ``meta`` (window, edge
policy, normalisation, background subtraction, drift) fully describes what was done.

Windows are stacked frame-major: for ``window=3`` and two channels per frame the
channels are ``(t-1, c0), (t-1, c1), (t, c0), (t, c1), (t+1, c0), (t+1, c1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EDGE_POLICIES = ("reflect", "replicate", "skip")


# ---------------------------------------------------------------------------
# Intensities
# ---------------------------------------------------------------------------


def check_finite(movie: Any, what: str = "movie") -> None:
    """Raise a clear error if ``movie`` holds NaN or infinite pixels.

    Raises
    ------
    ValueError
        Naming how many pixels are bad and how to fix it.
    """
    arr = np.asarray(movie)
    if arr.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        n = int(bad.sum())
        frames = np.unique(np.nonzero(bad)[0]) if arr.ndim >= 3 else np.array([0])
        raise ValueError(
            f"The {what} has {n} NaN or infinite pixel(s) (first in frame {int(frames[0])}). "
            "Replace them before segmenting, e.g. numpy.nan_to_num(movie, nan=numpy.nanmedian(movie)), "
            "or crop the frames that hold them."
        )


def movie_percentiles(movie: Any, low: float = 1.0, high: float = 99.8,
                      max_frames: int | None = None) -> tuple[float, float]:
    """Intensity percentiles of a whole movie (optionally of evenly spaced frames).

    Parameters
    ----------
    movie : array_like, shape (T, ...)
        Any array whose first axis is time; lazy arrays are read frame by frame.
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    max_frames : int, optional
        Use at most this many evenly spaced frames (bounded memory for long movies).

    Returns
    -------
    (float, float)
        The ``low`` and ``high`` percentile values.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"Percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}.")
    n = len(movie)
    idx = np.arange(n) if max_frames is None or n <= max_frames else np.linspace(0, n - 1, max_frames).round().astype(int)
    sample = np.stack([np.asarray(movie[int(i)], dtype=np.float32) for i in idx])
    check_finite(sample)
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


def apply_normalization(frames: Any, lo: float, hi: float) -> np.ndarray:
    """Map ``lo -> 0`` and ``hi -> 1`` (no clipping), as float32.

    A constant movie (``hi == lo``) maps to zeros instead of dividing by zero.
    """
    arr = np.asarray(frames, dtype=np.float32)
    scale = float(hi) - float(lo)
    if scale <= 0:
        return np.zeros_like(arr)
    return ((arr - np.float32(lo)) / np.float32(scale)).astype(np.float32, copy=False)


def normalize_movie(movie: Any, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Per-movie percentile normalisation: the ``low`` percentile -> 0, ``high`` -> 1.

    One pair of percentiles for the whole movie (not per frame), so a frame that
    darkens over time stays darker, as the network saw it in training.

    Parameters
    ----------
    movie : array_like, shape (T, ...)
    low, high : float
        Percentiles in [0, 100].

    Returns
    -------
    ndarray, float32, same shape as ``movie``

    Raises
    ------
    ValueError
        If the movie holds NaN/inf pixels or the percentiles are invalid.
    """
    arr = np.asarray(movie)
    lo, hi = movie_percentiles(arr, low, high)
    return apply_normalization(arr, lo, hi)


def temporal_median(movie: Any, max_frames: int | None = None) -> np.ndarray:
    """Per-pixel median over time (StemNet eq. 3's background image).

    Parameters
    ----------
    movie : array_like, shape (T, ...)
    max_frames : int, optional
        Use at most this many evenly spaced frames (bounded memory for long movies).

    Returns
    -------
    ndarray, float32, shape ``movie.shape[1:]``
    """
    n = len(movie)
    idx = np.arange(n) if max_frames is None or n <= max_frames else np.linspace(0, n - 1, max_frames).round().astype(int)
    sample = np.stack([np.asarray(movie[int(i)], dtype=np.float32) for i in idx])
    check_finite(sample)
    return np.median(sample, axis=0).astype(np.float32)


def subtract_temporal_median(movie: Any) -> np.ndarray:
    """Subtract the per-pixel median over time from every frame (StemNet eq. 3).

    Removes what does not move (debris, microwell edges, uneven illumination).

    Parameters
    ----------
    movie : array_like, shape (T, ...)

    Returns
    -------
    ndarray, float32, same shape
    """
    arr = np.asarray(movie, dtype=np.float32)
    if arr.ndim < 3:
        raise ValueError(f"Temporal median subtraction needs a movie (T, Y, X), got shape {arr.shape}.")
    return (arr - temporal_median(arr)[None]).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------
# Temporal windows
# ---------------------------------------------------------------------------


def check_edge(edge: str) -> str:
    """Validate an edge policy name and return it lower-cased."""
    e = str(edge).strip().lower()
    if e not in EDGE_POLICIES:
        raise ValueError(f"Unknown edge policy {edge!r}. Use one of {', '.join(EDGE_POLICIES)}.")
    return e


def check_window(window: int) -> int:
    """Validate a temporal window (odd, >= 1) and return it as int."""
    w = int(window)
    if w < 1 or w % 2 == 0 or w != window:
        raise ValueError(f"The temporal window must be an odd number of frames (1, 3, 5, ...), got {window}.")
    return w


def window_indices(t: int, T: int, window: int, edge: str = "reflect") -> list[int] | None:
    """Frame indices of the window centred on frame ``t``.

    Parameters
    ----------
    t : int
        Centre frame, ``0 <= t < T``.
    T : int
        Number of frames in the movie.
    window : int
        Odd window length ``2k + 1``.
    edge : {"reflect", "replicate", "skip"}
        What to use for the ``k`` frames before the start or after the end:
        ``"reflect"`` mirrors the movie about its first/last frame (t-1 -> 1 at t=0),
        ``"replicate"`` repeats the centre frame ``t`` (what StemNet's code did),
        ``"skip"`` returns None (frame ``t`` is not segmented).

    Returns
    -------
    list of int (length ``window``) or None

    Examples
    --------
    >>> window_indices(0, 10, 5, "reflect")
    [2, 1, 0, 1, 2]
    >>> window_indices(0, 10, 5, "replicate")
    [0, 0, 0, 1, 2]
    >>> window_indices(1, 10, 5, "skip") is None
    True
    """
    w = check_window(window)
    e = check_edge(edge)
    if not 0 <= t < T:
        raise IndexError(f"Frame {t} is outside the movie (T={T}).")
    k = w // 2
    raw = list(range(t - k, t + k + 1))
    if all(0 <= i < T for i in raw):
        return raw
    if e == "skip":
        return None
    if e == "replicate":
        return [i if 0 <= i < T else t for i in raw]
    if T == 1:
        return [0] * w
    period = 2 * (T - 1)
    out = []
    for i in raw:
        m = i % period
        out.append(m if m < T else period - m)
    return out


def valid_frames(T: int, window: int, edge: str) -> list[int]:
    """Frames that get a prediction under ``edge`` (all of them unless ``"skip"``).

    Raises
    ------
    ValueError
        If ``"skip"`` leaves no frame at all (a movie shorter than the window).
    """
    frames = [t for t in range(T) if window_indices(t, T, window, edge) is not None]
    if not frames:
        raise ValueError(
            f"The movie has T={T} frame(s) but the model needs a window of {window} and the edge policy "
            "is 'skip', so no frame can be segmented. Choose edge policy 'reflect' or 'replicate', "
            "or a model with window 1."
        )
    return frames


def register_translation(ref: np.ndarray, mov: np.ndarray, upsample_factor: int = 1) -> tuple[float, float]:
    """Translation that moves ``mov`` onto ``ref`` (phase cross-correlation, scikit-image).

    Parameters
    ----------
    ref, mov : ndarray, shape (Y, X)
    upsample_factor : int
        1 for whole pixels (fast); 10 for 0.1 px.

    Returns
    -------
    (dy, dx) : float
        Shift to apply to ``mov`` (e.g. ``scipy.ndimage.shift(mov, (dy, dx))``) so it
        lines up with ``ref``.
    """
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(
        np.asarray(ref, dtype=np.float32), np.asarray(mov, dtype=np.float32),
        upsample_factor=upsample_factor, normalization=None,
    )
    return float(shift[0]), float(shift[1])


def shift_frame(frame: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift a ``(..., Y, X)`` frame by ``(dy, dx)``, filling uncovered pixels with the nearest edge."""
    from scipy import ndimage

    arr = np.asarray(frame, dtype=np.float32)
    if dy == 0 and dx == 0:
        return arr
    shift = (0,) * (arr.ndim - 2) + (dy, dx)
    order = 0 if float(dy).is_integer() and float(dx).is_integer() else 1
    return ndimage.shift(arr, shift, order=order, mode="nearest").astype(np.float32, copy=False)


def make_window(movie_tcyx: Any, t: int, window: int, edge: str = "reflect", drift: bool = False,
                indices: Sequence[int] | None = None) -> np.ndarray:
    """Stack the frames of the window centred on ``t`` as channels.

    Parameters
    ----------
    movie_tcyx : array_like, shape (T, C, Y, X)
        Already normalised movie (lazy arrays are read frame by frame).
    t : int
        Centre frame.
    window : int
        Odd window length.
    edge : {"reflect", "replicate", "skip"}
        See :func:`window_indices`.
    drift : bool
        Register each neighbour onto frame ``t`` (translation by phase cross-correlation
        on the channel mean) before stacking, so a drifting stage does not blur the window.
    indices : sequence of int, optional
        Precomputed window indices (skips :func:`window_indices`).

    Returns
    -------
    ndarray, float32, shape (window * C, Y, X)

    Raises
    ------
    ValueError
        If ``edge="skip"`` and ``t`` is too close to either end.
    """
    T = len(movie_tcyx)
    idx = list(indices) if indices is not None else window_indices(t, T, window, edge)
    if idx is None:
        raise ValueError(
            f"Frame {t} has no full window of {window} frames in a movie of {T} under edge policy 'skip'; "
            "use 'reflect' or 'replicate' to segment the first and last frames too."
        )
    cache: dict[int, np.ndarray] = {}
    for i in idx:
        if i not in cache:
            cache[i] = np.asarray(movie_tcyx[i], dtype=np.float32)
    centre = cache[t] if t in cache else np.asarray(movie_tcyx[t], dtype=np.float32)
    if centre.ndim != 3:
        raise ValueError(f"make_window expects a (T, C, Y, X) movie, got frames of shape {centre.shape}.")
    parts = []
    ref = centre.mean(axis=0) if drift else None
    for i in idx:
        frame = cache[i]
        if drift and i != t:
            dy, dx = register_translation(ref, frame.mean(axis=0))  # type: ignore[arg-type]
            frame = shift_frame(frame, dy, dx)
        parts.append(frame)
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------


def pad_to_multiple(image: np.ndarray, divisor: int, mode: str = "reflect") -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes at the bottom/right up to multiples of ``divisor``.

    Returns
    -------
    padded : ndarray, shape (..., Y', X')
    (pad_y, pad_x) : the rows and columns added (crop them off the output).
    """
    y, x = image.shape[-2:]
    py, px = (-y) % divisor, (-x) % divisor
    if py == 0 and px == 0:
        return image, (0, 0)
    # reflect needs the padded size < the axis; fall back to edge for tiny images
    m = mode if (py < y and px < x) else "edge"
    widths = [(0, 0)] * (image.ndim - 2) + [(0, py), (0, px)]
    return np.pad(image, widths, mode=m), (py, px)  # type: ignore[call-overload]


def tile_starts(size: int, tile: int, overlap: int, divisor: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap``.

    Starts are multiples of ``divisor`` (so pooling grids line up with the untiled
    image) except possibly the last, which is flush with the end; that last one is also
    a multiple of ``divisor`` when ``size`` and ``tile`` are.

    Raises
    ------
    ValueError
        If ``overlap >= tile`` or the rounded step is zero.
    """
    if tile >= size:
        return [0]
    if overlap >= tile:
        raise ValueError(f"Tile overlap ({overlap}) must be smaller than the tile ({tile}); use a larger tile.")
    step = ((tile - overlap) // divisor) * divisor
    if step <= 0:
        raise ValueError(
            f"Tile {tile} with overlap {overlap} leaves no step that is a multiple of {divisor}; use a larger tile."
        )
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def tile_grid(shape: tuple[int, int], tile: int, overlap: int, divisor: int = 1) -> list[tuple[slice, slice]]:
    """All ``(rows, cols)`` slices of a tiling of a ``(Y, X)`` image; see :func:`tile_starts`."""
    ys = tile_starts(shape[0], tile, overlap, divisor)
    xs = tile_starts(shape[1], tile, overlap, divisor)
    ty, tx = min(tile, shape[0]), min(tile, shape[1])
    return [(slice(y, y + ty), slice(x, x + tx)) for y in ys for x in xs]


def blend_weights(tile_shape: tuple[int, int], where: tuple[slice, slice], image_shape: tuple[int, int],
                  margin: int, ramp: int) -> np.ndarray:
    """Blending weight of one tile, shape ``tile_shape``, float32.

    On each side that lies inside the image (not on the image border) the weight is 0
    for the ``margin`` outermost pixels (the network saw padding there), then rises
    linearly over ``ramp`` pixels to 1. Accumulate ``sum(w * p) / sum(w)``: where every
    contributing tile is at least ``margin`` from its inner edges, and ``margin`` is at
    least half the receptive field, the blend equals the untiled prediction exactly.
    """
    out = np.ones(tile_shape, dtype=np.float32)
    for axis in (0, 1):
        n = tile_shape[axis]
        s = where[axis]
        prof = np.ones(n, dtype=np.float32)
        ramp_vals = np.clip((np.arange(n, dtype=np.float32) - margin + 1) / max(ramp + 1, 1), 0, 1)
        if s.start > 0:
            prof = np.minimum(prof, ramp_vals)
        if s.stop < image_shape[axis]:
            prof = np.minimum(prof, ramp_vals[::-1])
        out *= prof[:, None] if axis == 0 else prof[None, :]
    return out


# ---------------------------------------------------------------------------
# Input scale (cellpose's "diameter" rescaling)
# ---------------------------------------------------------------------------
#
# A network whose first layer halves the image sees a 10 px cell as 5 px: too few pixels
# to place an outline to within one original pixel, which is what a good CTC SEG needs on
# small cells. Upsampling the input (and the labels, for training) by a ``scale`` lets the
# same network work on larger cells; probabilities are brought back to the movie's grid
# before post-processing, so labels always have the movie's shape. Every resampling here
# uses pixel-centre ("grid mode") coordinates, so an integer upsampling by ``s`` replicates
# each label pixel into an ``s x s`` block and downsampling averages it back: nothing shifts.

SCALE_RANGE = (0.25, 8.0)


def check_scale(scale: float) -> float:
    """Validate an input scale factor (1 = the movie's own pixels)."""
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a number (1 = no rescaling, 2 = twice larger), got {scale!r}.") from None
    if not np.isfinite(s) or not SCALE_RANGE[0] <= s <= SCALE_RANGE[1]:
        raise ValueError(
            f"scale must be between {SCALE_RANGE[0]} and {SCALE_RANGE[1]} (1 = no rescaling; 2 when cells are "
            f"about 10 px across), got {scale}."
        )
    return s


def scaled_shape(shape: Sequence[int], scale: float) -> tuple[int, int]:
    """``(Y, X)`` of a frame of ``shape`` (last two axes) after rescaling by ``scale``."""
    y, x = (int(n) for n in tuple(shape)[-2:])
    return max(1, int(round(y * scale))), max(1, int(round(x * scale)))


def resize_image(image: np.ndarray, shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Resample the last two axes of ``image`` to ``shape`` (pixel-centre aligned).

    Parameters
    ----------
    image : ndarray, shape (..., Y, X)
        Intensities or probabilities (interpolated in float32).
    shape : (int, int)
        Target ``(Y', X')``.
    order : int
        Spline order (1 = bilinear). Downsampling averages first (anti-aliasing), so an
        integer downsampling of probabilities is the mean of each block.

    Returns
    -------
    ndarray, float32, shape (..., Y', X')
    """
    from skimage.transform import resize

    arr = np.asarray(image, dtype=np.float32)
    out_shape = tuple(arr.shape[:-2]) + tuple(int(n) for n in shape)
    if out_shape == arr.shape:
        return arr
    down = out_shape[-1] < arr.shape[-1] or out_shape[-2] < arr.shape[-2]
    if down and order == 1 and all(a % b == 0 for a, b in zip(arr.shape[-2:], out_shape[-2:], strict=True)):
        # integer factor: the exact block mean (what bilinear at pixel centres gives for 2x)
        fy, fx = arr.shape[-2] // out_shape[-2], arr.shape[-1] // out_shape[-1]
        blocks = arr.reshape(arr.shape[:-2] + (out_shape[-2], fy, out_shape[-1], fx))
        return blocks.mean(axis=(-3, -1)).astype(np.float32, copy=False)
    out = resize(arr, out_shape, order=order, mode="edge", anti_aliasing=down, preserve_range=True)
    return np.asarray(out, dtype=np.float32)


def resize_labels(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling of a label image to ``shape`` (pixel-centre aligned).

    An integer upsampling by ``s`` turns every pixel into an ``s x s`` block of the same
    label, so ``resize_labels(resize_labels(lab, up), lab.shape)`` gives ``lab`` back.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
    shape : (int, int)

    Returns
    -------
    ndarray, int32, shape (Y', X')
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"resize_labels takes one (Y, X) label frame, got shape {lab.shape}.")
    Y, X = lab.shape
    ty, tx = (int(n) for n in shape)
    # centre of output pixel i lies at (i + 0.5) * Y / ty - 0.5 in input pixels; floor(+0.5) is nearest
    iy = np.minimum(((np.arange(ty) + 0.5) * Y / ty).astype(np.int64), Y - 1)
    ix = np.minimum(((np.arange(tx) + 0.5) * X / tx).astype(np.int64), X - 1)
    return np.ascontiguousarray(lab[iy[:, None], ix[None, :]]).astype(np.int32, copy=False)
