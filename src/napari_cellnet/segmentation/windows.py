"""Temporal windows: the frames ``t-k .. t+k`` stacked as channels, with an explicit edge
policy at the movie's ends and optional drift compensation.

The one place that builds the network's input from a normalised movie, so training
(:func:`napari_cellnet.segmentation.data.extract_windows`), validation, calibration and
inference (:func:`napari_cellnet.segmentation.inference.segment`) feed the network the
same pixels (:func:`frame_window`; a test checks that training's and inference's windows
of a frame are identical).

Windows are stacked frame-major: for ``window=3`` and two channels per frame the
channels are ``(t-1, c0), (t-1, c1), (t, c0), (t, c1), (t+1, c0), (t+1, c1)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from napari_cellnet.segmentation.preprocessing import (
    MovieNormaliser,
    check_edge,
    check_window,
    resize_image,
)


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



class NormalisedMovie:
    """``(T, C, Y, X)`` frames of a movie after its :class:`MovieNormaliser`, read lazily and
    cached around the current window (memory stays at about one window for any T).

    Parameters
    ----------
    frames : array_like, shape (T, C, Y, X)
        Any frame-indexable movie (numpy, memmap, dask, a reader).
    normaliser : MovieNormaliser
        Fitted on this movie (:meth:`MovieNormaliser.fit`).
    """

    def __init__(self, frames: Any, normaliser: MovieNormaliser) -> None:
        self.frames = frames
        self.normaliser = normaliser
        self.cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t: int) -> np.ndarray:
        t = int(t)
        if t not in self.cache:
            self.cache[t] = self.normaliser(self.frames[t], what=f"movie (frame {t})")
        return self.cache[t]

    def forget_before(self, t: int) -> None:
        """Drop cached frames before ``t`` (frames are visited in order)."""
        self.keep_only(k for k in self.cache if k >= t)

    def keep_only(self, frames: Iterable[int]) -> None:
        """Drop every cached frame not in ``frames``."""
        keep = set(frames)
        for k in [k for k in self.cache if k not in keep]:
            del self.cache[k]


def frame_window(movie: NormalisedMovie, t: int, window: int, edge: str = "reflect", drift: bool = False,
                 shape: Sequence[int] | None = None) -> np.ndarray:
    """The network's input for frame ``t``: its window, resampled to the network's grid.

    Parameters
    ----------
    movie : NormalisedMovie
        The normalised movie (training and inference build it the same way).
    t : int
        Centre frame.
    window : int
        Odd window length.
    edge : {"reflect", "replicate", "skip"}
    drift : bool
        Register neighbours onto frame ``t`` (:func:`make_window`).
    shape : (int, int), optional
        ``(Y', X')`` of the network's grid when the input scale is not 1
        (:func:`~napari_cellnet.segmentation.preprocessing.scaled_shape`); None keeps the movie's.

    Returns
    -------
    ndarray, float32, shape (window * C, Y', X')

    Raises
    ------
    ValueError
        If ``edge="skip"`` and ``t`` has no full window.
    """
    win = make_window(movie, t, window, edge, drift=drift, indices=window_indices(t, len(movie), window, edge))
    if shape is not None and tuple(shape) != win.shape[-2:]:
        win = resize_image(win, shape)
    return win
