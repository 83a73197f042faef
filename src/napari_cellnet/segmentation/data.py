"""Training samples for the temporal U-Net from sparsely annotated movies.

A biologist paints cells in a few frames of a movie; every other frame of the label movie
stays all zero (or is simply not listed as annotated). Training needs, for each annotated
frame ``t``, the *temporal window* of frames ``t-k .. t+k`` of the image movie (the
unannotated neighbours still feed the input, as in StemNet's Network_5) and the instance
labels of frame ``t`` turned into the 3-class target (background / cell / boundary) that
separates touching cells.

Memory is bounded by the annotated windows, not by the movies: images and labels may be
lazy arrays (memory-mapped or dask TIFFs from :func:`napari_cellnet.core.io.read_stack`), only
the frames of the windows around the chosen frames are read, and only those windows are
kept. A 1000-frame 1024x1024 movie with 6 annotated frames holds 6 windows.

This module chooses the frames and reads their windows (numpy only, no torch); targets are
in :mod:`~napari_cellnet.segmentation.targets`, patches in
:mod:`~napari_cellnet.segmentation.patches`. Normalisation and windows are the exact code
inference uses (:class:`~napari_cellnet.segmentation.preprocessing.MovieNormaliser`,
:func:`~napari_cellnet.segmentation.windows.frame_window`), with the same edge policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_cellnet.core.io import guess_axes, to_tcyx
from napari_cellnet.segmentation import preprocessing as pre
from napari_cellnet.segmentation.preprocessing import MovieNormaliser, Normalisation
from napari_cellnet.segmentation.windows import NormalisedMovie, frame_window, window_indices

FrameRef = tuple[int, int]
"""``(movie index, frame index)``."""


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def as_movie_list(images: Any, labels: Any, image_axes: str | Sequence[str] | None = None
                  ) -> tuple[list[Any], list[Any]]:
    """Bring one or several movies to lists of ``(T, C, Y, X)`` images and ``(T, Y, X)`` labels.

    Nothing is read: lazy arrays stay lazy.

    Parameters
    ----------
    images : array_like, shape (T, Y, X) or (T, C, Y, X), or a list of them
    labels : array_like, shape (T, Y, X), or a list of them (one per movie)
    image_axes : str or list of str, optional
        Axes of each image movie (e.g. ``"TYX"``, ``"TCYX"``, ``"TYXC"``); guessed otherwise.

    Raises
    ------
    ValueError
        If the numbers of movies differ, the shapes do not match, a label movie is not
        ``(T, Y, X)``, or the movies have different numbers of channels.
    """
    many = isinstance(images, (list, tuple))
    imgs = list(images) if many else [images]
    labs = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    if len(imgs) != len(labs):
        raise ValueError(
            f"Got {len(imgs)} image movie(s) but {len(labs)} label movie(s); give one label movie per image movie."
        )
    if not imgs:
        raise ValueError("No movie given; pass an image movie (T, Y, X) and its label movie.")
    if image_axes is None or isinstance(image_axes, str):
        axes_list = [image_axes] * len(imgs)
    else:
        axes_list = list(image_axes)
    out_i, out_l = [], []
    for m, (img, lab, ax) in enumerate(zip(imgs, labs, axes_list, strict=True)):
        name = f"movie {m}" if len(imgs) > 1 else "the movie"
        if img.ndim == 2:
            raise ValueError(
                f"The images of {name} are a single 2-D frame {tuple(img.shape)}; training needs a movie (T, Y, X). "
                "Add a time axis (image[None]) and use window 1."
            )
        axes = ax or guess_axes(img.shape)
        tcyx = to_tcyx(img, axes)
        if lab.ndim == 4 and lab.shape[1] == 1:
            lab = lab[:, 0]
        if lab.ndim != 3:
            raise ValueError(
                f"The labels of {name} have shape {tuple(lab.shape)}; they must be a label movie (T, Y, X) "
                "with one instance-label image per frame (0 = background)."
            )
        T, C, Y, X = (int(n) for n in tcyx.shape)
        if tuple(int(n) for n in lab.shape) != (T, Y, X):
            raise ValueError(
                f"The images of {name} have T, Y, X = {(T, Y, X)} (axes {axes}) but the labels have shape "
                f"{tuple(int(n) for n in lab.shape)}. The label movie must have one frame per image frame "
                "and the same height and width; check that you picked the matching files/layers."
            )
        if lab.dtype.kind not in "biuf":
            raise ValueError(f"The labels of {name} have dtype {lab.dtype}; give integer instance labels.")
        out_i.append(tcyx)
        out_l.append(lab)
    channels = {int(i.shape[1]) for i in out_i}
    if len(channels) > 1:
        raise ValueError(f"The movies have different numbers of channels {sorted(channels)}; train on movies of one kind.")
    return out_i, out_l


def check_label_frame(frame: Any, where: str = "the labels") -> np.ndarray:
    """Validate one label frame and return it as int32 instance labels.

    Float labels are accepted only when every value is a whole number (some tools save
    label images as float); negative values and fractions are refused.

    Raises
    ------
    ValueError
        For fractional or negative values or more than 2**31 labels, naming the fix.
    """
    arr = np.asarray(frame)
    if arr.dtype.kind == "b":
        return arr.astype(np.int32)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))]
            raise ValueError(
                f"{where} hold non-integer values (e.g. {float(bad.flat[0]):.3g}): this looks like a probability or "
                "intensity image, not instance labels. Give a label image with whole numbers (0 = background, "
                "1, 2, ... = cells), e.g. a napari Labels layer."
            )
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"{where} hold negative values (min {arr.min()}). Instance labels must be 0 for background and "
            "positive integers for cells; relabel them (e.g. skimage.measure.label(labels > 0))."
        )
    if arr.size and arr.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{where} hold labels above 2**31; relabel them with skimage.segmentation.relabel_sequential.")
    return arr.astype(np.int32, copy=False)


def annotated_frames(labels: Any) -> list[int]:
    """Frames of a label movie that contain at least one labelled pixel.

    The movie is read one frame at a time (lazy arrays stay lazy).

    Parameters
    ----------
    labels : array_like, shape (T, Y, X)
    """
    return [t for t in range(len(labels)) if np.any(np.asarray(labels[t]))]


def _as_per_movie(spec: Any, n_movies: int, name: str) -> list[list[int]] | None:
    if spec is None:
        return None
    spec = list(spec)
    if all(isinstance(s, (int, np.integer)) for s in spec):
        if n_movies > 1 and spec:
            raise ValueError(
                f"{name} is a flat list {spec} but there are {n_movies} movies; give one list per movie, "
                "e.g. [[0, 4], [2]]."
            )
        return [[int(s) for s in spec]] if n_movies == 1 else [[] for _ in range(n_movies)]
    if len(spec) != n_movies:
        raise ValueError(f"{name} has {len(spec)} list(s) but there are {n_movies} movies; give one list per movie.")
    return [[int(s) for s in per] for per in spec]


def split_frames(
    labels: Sequence[Any],
    frames: Any = None,
    val_frames: Any = None,
    val_fraction: float = 0.2,
) -> tuple[list[FrameRef], list[FrameRef], list[str]]:
    """Choose the training and validation frames (whole frames, never patches of one frame).

    Parameters
    ----------
    labels : list of array_like, each shape (T, Y, X)
        Label movies; a frame with any labelled pixel counts as annotated.
    frames : list of int, list of lists of int, or None
        Training frames (one list per movie for several movies). Frames listed here count as
        annotated even when all zero (a frame with truly no cell). None: every annotated
        frame that is not a validation frame.
    val_frames : list of int, list of lists of int, or None
        Validation frames. ``[]`` means no validation. None means automatic: the annotated
        frames left out of ``frames`` when ``frames`` is given, otherwise an evenly spread
        ``val_fraction`` of the annotated frames when there are at least 3 of them.
    val_fraction : float
        Share of annotated frames held back automatically.

    Returns
    -------
    train, val : list of (movie, frame)
    notes : list of str
        Human-readable remarks for the job's first event (what was chosen and why).

    Raises
    ------
    ValueError
        No annotated frame; a frame outside the movie; a frame both in training and
        validation; a validation frame without cells; nothing left to train on.
    """
    n = len(labels)
    tr = _as_per_movie(frames, n, "frames")
    va = _as_per_movie(val_frames, n, "val_frames")
    _check_frame_lists(tr, va, [len(lab) for lab in labels])
    annotated = [annotated_frames(lab) for lab in labels]
    if tr is None and not any(annotated):
        raise ValueError(
            "The labels contain no annotated frame (every frame is all zero). Paint the cells of at least one "
            "frame (0 = background, 1, 2, ... = cells), or list frames that truly have no cell with frames=/--frames."
        )
    notes: list[str] = []
    if va is None:
        va = _choose_validation(annotated, tr, val_fraction, notes)
    if tr is None:
        tr = [sorted(set(annotated[m]) - set(va[m])) for m in range(n)]
    for m in range(n):
        empty = [t for t in va[m] if t not in annotated[m]]
        if empty:
            raise ValueError(
                f"Validation frame(s) {empty} have no annotated cell, so their quality cannot be measured. "
                "Choose annotated frames for validation."
            )
    train = [(m, t) for m in range(n) for t in sorted(set(tr[m]))]
    val = [(m, t) for m in range(n) for t in sorted(set(va[m]))]
    if not train:
        total = sum(len(a) for a in annotated)
        raise ValueError(
            f"No frame is left for training: {total} annotated frame(s), all used for validation. "
            "Annotate another frame, or train without validation (val_frames=[], CLI --val-frames none)."
        )
    unlabelled = [f"{t}" + (f" (movie {m})" if n > 1 else "") for (m, t) in train if t not in annotated[m]]
    if unlabelled:
        notes.append(f"training frame(s) {', '.join(unlabelled)} have no labelled cell and teach 'no cell here'")
    return train, val, notes


def _check_frame_lists(tr: list[list[int]] | None, va: list[list[int]] | None, lengths: list[int]) -> None:
    """Every listed frame exists, and none is both a training and a validation frame."""
    n = len(lengths)
    for spec, name in ((tr, "Training frame"), (va, "Validation frame")):
        for m, per in enumerate(spec or []):
            for t in per:
                if not 0 <= t < lengths[m]:
                    where = f" of movie {m}" if n > 1 else ""
                    raise ValueError(
                        f"{name} {t}{where} does not exist: the movie has {lengths[m]} frames (0 to {lengths[m] - 1})."
                    )
    if tr is not None and va is not None:
        for m in range(n):
            both = sorted(set(tr[m]) & set(va[m]))
            if both:
                raise ValueError(
                    f"Frame(s) {both} are both training and validation frames; a validation frame must be held back. "
                    "Remove them from one of the two lists."
                )


def _choose_validation(annotated: list[list[int]], tr: list[list[int]] | None, val_fraction: float,
                       notes: list[str]) -> list[list[int]]:
    """Validation frames when none are given: the annotated frames not trained on, or an
    evenly spread ``val_fraction`` of them (at least 3 annotated frames); says why in ``notes``."""
    n = len(annotated)
    if tr is not None:
        va = [sorted(set(annotated[m]) - set(tr[m])) for m in range(n)]
        if any(va):
            notes.append("validating on the annotated frames not used for training")
        return va
    pool = [(m, t) for m in range(n) for t in annotated[m]]
    k = int(round(val_fraction * len(pool))) if len(pool) >= 3 and val_fraction > 0 else 0
    k = max(1, k) if len(pool) >= 3 and val_fraction > 0 else 0
    chosen = {pool[min(len(pool) - 1, int((i + 0.5) * len(pool) / k))] for i in range(k)} if k else set()
    if k:
        notes.append(f"holding back {k} of {len(pool)} annotated frames for validation")
    else:
        notes.append(
            f"only {len(pool)} annotated frame(s): training without validation "
            "(the best model is the one with the lowest training loss)"
        )
    return [sorted(t for (mm, t) in chosen if mm == m) for m in range(n)]


# ---------------------------------------------------------------------------
# Windows around the annotated frames
# ---------------------------------------------------------------------------


@dataclass
class FrameSample:
    """One annotated frame with its temporal window, ready to cut patches from.

    Attributes
    ----------
    movie, frame : int
        Where it comes from.
    window : ndarray, shape (window * C, Y, X), float32
        Normalised (and background-subtracted) frames ``t-k .. t+k``, frame-major.
    labels : ndarray, shape (Y, X), int32
        Instance labels of frame ``t``, on the network's grid (the window's).
    native_labels : ndarray, shape (Y0, X0), int32, or None
        The labels on the movie's own grid when the window was rescaled (``scale != 1``);
        None when ``labels`` already are. Validation and calibration score against these,
        as inference does.
    """

    movie: int
    frame: int
    window: np.ndarray
    labels: np.ndarray
    native_labels: np.ndarray | None = None
    _fg: np.ndarray | None = field(default=None, repr=False)

    @property
    def movie_labels(self) -> np.ndarray:
        """The labels on the movie's own grid (what predictions are scored against)."""
        return self.labels if self.native_labels is None else self.native_labels

    @property
    def foreground(self) -> np.ndarray:
        """Flat indices of labelled pixels (cached), for foreground-biased patch sampling."""
        if self._fg is None:
            self._fg = np.flatnonzero(self.labels)
        return self._fg


# ---------------------------------------------------------------------------
# Targets


def extract_windows(
    images: Sequence[Any],
    labels: Sequence[Any],
    refs: Sequence[FrameRef],
    window: int,
    edge: str = "reflect",
    drift: bool = False,
    low: float = 1.0,
    high: float = 99.8,
    background_subtraction: bool = False,
    stats: Sequence[MovieNormaliser] | None = None,
    scale: float = 1.0,
) -> tuple[list[FrameSample], list[MovieNormaliser]]:
    """Read and normalise the windows around the frames ``refs``; nothing else is kept.

    Parameters
    ----------
    images : list of array_like, each shape (T, C, Y, X)
    labels : list of array_like, each shape (T, Y, X)
    refs : list of (movie, frame)
    window : int
        Odd window length.
    edge : {"reflect", "replicate", "skip"}
        Edge policy at the movie's ends (as in inference).
    drift : bool
        Register neighbours onto the centre frame.
    low, high : float
        Normalisation percentiles.
    background_subtraction : bool
        Subtract the per-pixel temporal median first (StemNet).
    stats : list of MovieNormaliser, optional
        Reuse normalisers fitted before (validation shares the training movies').
    scale : float
        Input scale factor: windows are resampled bilinearly and labels nearest-neighbour
        to ``round(Y * scale), round(X * scale)``; the original labels are kept in
        ``native_labels``. 1 keeps the movie's pixels.

    Returns
    -------
    samples : list of FrameSample
    stats : list of MovieNormaliser, one per movie

    Raises
    ------
    ValueError
        If the window is longer than a movie, or ``edge="skip"`` leaves an annotated frame
        without a full window.
    """
    window, edge, scale = pre.check_window(window), pre.check_edge(edge), pre.check_scale(scale)
    for m, img in enumerate(images):
        check_window_fits(len(img), window, f"The movie{f' {m}' if len(images) > 1 else ''}")
    if stats is None:
        stats = [MovieNormaliser.fit(img, Normalisation(low=low, high=high), background_subtraction)
                 for img in images]
    movies = [NormalisedMovie(img, st) for img, st in zip(images, stats, strict=True)]
    samples: list[FrameSample] = []
    for m, t in refs:
        idx = window_indices(t, len(images[m]), window, edge)
        if idx is None:
            raise ValueError(
                f"Annotated frame {t} is within {window // 2} frame(s) of the movie's end, so it has no full window "
                f"of {window} under edge policy 'skip'. Use edge 'reflect' or 'replicate', or leave frame {t} out."
            )
        for other in movies:  # keep only frames this window reuses: memory stays ~ one window
            other.keep_only(idx if other is movies[m] else ())
        lab = check_label_frame(labels[m][t], where=f"The labels of frame {t}")
        shape = pre.scaled_shape(lab.shape, scale) if scale != 1.0 else None
        win = frame_window(movies[m], t, window, edge, drift, shape)
        native = None
        if shape is not None:
            native, lab = lab, pre.resize_labels(lab, shape)
        samples.append(FrameSample(m, t, np.ascontiguousarray(win), lab, native))
    return samples, list(stats)


def check_window_fits(T: int, window: int, what: str = "The movie") -> None:
    """Refuse a window longer than a movie of ``T`` frames, naming the largest that fits."""
    if window > T:
        raise ValueError(
            f"{what} has T={T} frame(s) but the window is {window} frames. "
            f"Choose a window of at most {T if T % 2 else T - 1} (window 1 uses single frames)."
        )
