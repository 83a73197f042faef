"""What a movie goes through before the network sees it: one movie normaliser (temporal
background and intensity percentiles), the checks of the settings a checkpoint stores
(window, edge policy, input scale) and resampling to the network's scale.

:class:`MovieNormaliser` is the only code that maps a movie's intensities: training,
validation, calibration (:func:`napari_cellnet.segmentation.data.extract_windows`) and
inference (:func:`napari_cellnet.segmentation.inference.segment`) all fit it on the movie
and apply it frame by frame, and :class:`Normalisation` is how a checkpoint's ``meta``
records it. numpy and scikit-image only (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EDGE_POLICIES = ("reflect", "replicate", "skip")
NORMALISATION_METHODS = ("percentile", "fixed")
STATS_FRAMES = 32
"""Percentiles and the temporal median are taken on at most this many evenly spaced frames
(the whole movie when it is shorter), so a long movie is never read into memory at once."""


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


def sample_frames(movie: Any, max_frames: int | None = None) -> np.ndarray:
    """Evenly spaced frames of a movie (all of them when ``max_frames`` is None or the movie
    is shorter), read one by one, as float32; NaN/inf pixels are refused.

    Returns
    -------
    ndarray, float32, shape (min(T, max_frames), ...)
    """
    n = len(movie)
    idx = np.arange(n) if max_frames is None or n <= max_frames else np.linspace(0, n - 1, max_frames).round().astype(int)
    sample = np.stack([np.asarray(movie[int(i)], dtype=np.float32) for i in idx])
    check_finite(sample)
    return sample


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
    sample = sample_frames(movie, max_frames)
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
    sample = sample_frames(movie, max_frames)
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
# The movie normaliser
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalisation:
    """How intensities are mapped to the network's range: a checkpoint's ``meta["normalization"]``.

    Attributes
    ----------
    method : {"percentile", "fixed"}
        ``"percentile"``: the movie's ``low`` and ``high`` percentiles map to 0 and 1 (one
        pair for the whole movie, all channels together). ``"fixed"``: ``offset`` maps to 0
        and ``offset + scale`` to 1 whatever the movie.
    low, high : float
        Percentiles in [0, 100] (``"percentile"``).
    offset, scale : float
        The fixed mapping (``"fixed"``).
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    offset: float = 0.0
    scale: float = 1.0

    @classmethod
    def from_meta(cls, d: dict[str, Any] | None) -> Normalisation:
        """Read ``meta["normalization"]``; older checkpoints spell the method ``kind``.

        Raises
        ------
        ValueError
            For a method this version does not know.
        """
        d = dict(d or {})
        method = str(d.get("method", d.get("kind", "percentile")))
        if method not in NORMALISATION_METHODS:
            raise ValueError(f"Unknown normalisation {method!r} in the checkpoint (expected 'percentile' or 'fixed').")
        return cls(method, float(d.get("low", 1.0)), float(d.get("high", 99.8)),
                   float(d.get("offset", 0.0)), float(d.get("scale", 1.0)))

    def to_meta(self) -> dict[str, Any]:
        """What a checkpoint stores (the keys every version reads: ``method``, ``low``, ``high`` ...)."""
        if self.method == "fixed":
            return {"method": "fixed", "offset": self.offset, "scale": self.scale}
        return {"method": "percentile", "low": self.low, "high": self.high, "max_frames": STATS_FRAMES,
                "scope": "movie"}


@dataclass
class MovieNormaliser:
    """The intensity mapping of one movie, fitted once and applied frame by frame.

    ``frame -> (frame - median - low_value) / (high_value - low_value)`` as float32
    (no clipping; the median only with background subtraction).

    Attributes
    ----------
    low_value, high_value : float
        Intensities that map to 0 and 1.
    median : ndarray, float32, shape (C, Y, X), or None
        Per-pixel temporal median subtracted first (StemNet eq. 3), or None.
    frames_sampled, background_frames : int
        How many frames the percentiles and the median were taken on (provenance).
    """

    low_value: float
    high_value: float
    median: np.ndarray | None = None
    frames_sampled: int = 0
    background_frames: int = 0

    @classmethod
    def fit(cls, movie_tcyx: Any, normalisation: Normalisation | None = None,
            background_subtraction: bool = False) -> MovieNormaliser:
        """Fit the mapping on a movie, read frame by frame (at most :data:`STATS_FRAMES` frames).

        Parameters
        ----------
        movie_tcyx : array_like, shape (T, C, Y, X)
            Any frame-indexable movie (lazy arrays stay lazy).
        normalisation : Normalisation, optional
            Default: the 1 and 99.8 percentiles.
        background_subtraction : bool
            Subtract the per-pixel temporal median before the percentiles.

        Raises
        ------
        ValueError
            If the sampled frames hold NaN/inf pixels or the percentiles are invalid.
        """
        norm = normalisation or Normalisation()
        T = len(movie_tcyx)
        median = temporal_median(movie_tcyx, max_frames=STATS_FRAMES) if background_subtraction else None
        out = cls(0.0, 1.0, median, min(T, STATS_FRAMES), min(T, STATS_FRAMES) if median is not None else 0)
        if norm.method == "fixed":
            out.low_value, out.high_value = norm.offset, norm.offset + norm.scale
        else:
            out.low_value, out.high_value = movie_percentiles(_Subtracted(movie_tcyx, out), norm.low, norm.high,
                                                              max_frames=STATS_FRAMES)
        return out

    def subtract(self, frame: Any) -> np.ndarray:
        """A frame minus the temporal background, as float32 (what the percentiles are taken of)."""
        f = np.asarray(frame, dtype=np.float32)
        return f if self.median is None else f - self.median

    def __call__(self, frame: Any, what: str = "movie") -> np.ndarray:
        """The normalised frame, float32, same shape.

        Raises
        ------
        ValueError
            If the frame holds NaN or infinite pixels (``what`` names it in the message).
        """
        f = self.subtract(frame)
        check_finite(f, what=what)
        return apply_normalization(f, self.low_value, self.high_value)

    def values(self) -> dict[str, Any]:
        """Provenance: ``lo``, ``hi``, ``frames_sampled``, ``background_frames``."""
        return {"lo": float(self.low_value), "hi": float(self.high_value), "frames_sampled": self.frames_sampled,
                "background_frames": self.background_frames}


class _Subtracted:
    """Frame-by-frame view ``movie[t] - median`` (what :func:`movie_percentiles` reads)."""

    def __init__(self, movie: Any, normaliser: MovieNormaliser) -> None:
        self.movie = movie
        self.normaliser = normaliser

    def __len__(self) -> int:
        return len(self.movie)

    def __getitem__(self, t: int) -> np.ndarray:
        return self.normaliser.subtract(self.movie[t])


# ---------------------------------------------------------------------------
# Settings a checkpoint stores: window, edge policy (and scale, below)
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
