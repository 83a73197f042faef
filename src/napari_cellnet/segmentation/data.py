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

This module prepares the arrays (numpy and scipy only, no torch);
:mod:`napari_cellnet.segmentation.training` turns batches into tensors. Preprocessing (normalisation, temporal background, windows, drift) is the
exact code inference uses (:mod:`napari_cellnet.segmentation.preprocessing`), with the same edge policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_cellnet.core.augment import AugmentParams, augment
from napari_cellnet.core.io import guess_axes, to_tcyx
from napari_cellnet.segmentation import preprocessing as pre

IGNORE = -1
"""Target value of pixels that carry no annotation (padding); the losses leave them out.
Defined here, not in :mod:`losses`, so that preparing data does not import torch."""

NORM_MAX_FRAMES = 32
"""Percentiles and the temporal median are taken on at most this many evenly spaced frames
(the whole movie when it is shorter), so a long movie is never read into memory at once."""

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
    lengths = [len(lab) for lab in labels]
    notes: list[str] = []
    tr = _as_per_movie(frames, n, "frames")
    va = _as_per_movie(val_frames, n, "val_frames")
    for spec, name in ((tr, "Training frame"), (va, "Validation frame")):
        for m, per in enumerate(spec or []):
            for t in per:
                if not 0 <= t < lengths[m]:
                    where = f" of movie {m}" if n > 1 else ""
                    raise ValueError(
                        f"{name} {t}{where} does not exist: the movie has {lengths[m]} frames (0 to {lengths[m] - 1})."
                    )
    annotated = [annotated_frames(lab) for lab in labels]
    if tr is None and not any(annotated):
        raise ValueError(
            "The labels contain no annotated frame (every frame is all zero). Paint the cells of at least one "
            "frame (0 = background, 1, 2, ... = cells), or list frames that truly have no cell with frames=/--frames."
        )
    if tr is not None and va is not None:
        for m in range(n):
            both = sorted(set(tr[m]) & set(va[m]))
            if both:
                raise ValueError(
                    f"Frame(s) {both} are both training and validation frames; a validation frame must be held back. "
                    "Remove them from one of the two lists."
                )
    if va is None:
        if tr is not None:
            va = [sorted(set(annotated[m]) - set(tr[m])) for m in range(n)]
            if any(va):
                notes.append("validating on the annotated frames not used for training")
        else:
            pool = [(m, t) for m in range(n) for t in annotated[m]]
            k = int(round(val_fraction * len(pool))) if len(pool) >= 3 and val_fraction > 0 else 0
            k = max(1, k) if len(pool) >= 3 and val_fraction > 0 else 0
            chosen = {pool[min(len(pool) - 1, int((i + 0.5) * len(pool) / k))] for i in range(k)} if k else set()
            va = [sorted(t for (mm, t) in chosen if mm == m) for m in range(n)]
            if k:
                notes.append(f"holding back {k} of {len(pool)} annotated frames for validation")
            else:
                notes.append(
                    f"only {len(pool)} annotated frame(s): training without validation "
                    "(the best model is the one with the lowest training loss)"
                )
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


class _BackgroundSubtracted:
    """Frame-by-frame view ``movie[t] - median`` (what :func:`pre.movie_percentiles` reads)."""

    def __init__(self, movie: Any, median: np.ndarray | None) -> None:
        self.movie = movie
        self.median = median

    def __len__(self) -> int:
        return len(self.movie)

    def __getitem__(self, t: int) -> np.ndarray:
        frame = np.asarray(self.movie[t], dtype=np.float32)
        return frame if self.median is None else frame - self.median


@dataclass
class MovieStats:
    """How one movie is normalised (recorded per movie in the training summary)."""

    low_value: float
    high_value: float
    median: np.ndarray | None


def movie_stats(movie_tcyx: Any, low: float, high: float, background_subtraction: bool) -> MovieStats:
    """Temporal median (optional) and intensity percentiles of a movie, read frame by frame.

    At most :data:`NORM_MAX_FRAMES` evenly spaced frames are used.
    """
    median = pre.temporal_median(movie_tcyx, max_frames=NORM_MAX_FRAMES) if background_subtraction else None
    lo, hi = pre.movie_percentiles(_BackgroundSubtracted(movie_tcyx, median), low, high,
                                   max_frames=NORM_MAX_FRAMES)
    return MovieStats(lo, hi, median)


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
    stats: Sequence[MovieStats] | None = None,
    scale: float = 1.0,
) -> tuple[list[FrameSample], list[MovieStats]]:
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
    stats : list of MovieStats, optional
        Reuse statistics computed before (validation shares the training movies' stats).
    scale : float
        Input scale factor: windows are resampled bilinearly and labels nearest-neighbour
        to ``round(Y * scale), round(X * scale)`` (:func:`napari_cellnet.segmentation.preprocessing.resize_image`,
        :func:`~napari_cellnet.segmentation.preprocessing.resize_labels`); the original labels are kept
        in ``native_labels``. 1 keeps the movie's pixels.

    Returns
    -------
    samples : list of FrameSample
    stats : list of MovieStats, one per movie

    Raises
    ------
    ValueError
        If the window is longer than a movie, or ``edge="skip"`` leaves an annotated frame
        without a full window.
    """
    window = pre.check_window(window)
    edge = pre.check_edge(edge)
    scale = pre.check_scale(scale)
    for m, img in enumerate(images):
        T = len(img)
        if window > T:
            raise ValueError(
                f"The movie{f' {m}' if len(images) > 1 else ''} has T={T} frame(s) but the window is {window} frames. "
                f"Choose a window of at most {T if T % 2 else T - 1} (window 1 uses single frames)."
            )
    if stats is None:
        stats = [movie_stats(img, low, high, background_subtraction) for img in images]
    samples: list[FrameSample] = []
    cache: dict[FrameRef, np.ndarray] = {}
    k = window // 2
    for m, t in refs:
        T = len(images[m])
        idx = pre.window_indices(t, T, window, edge)
        if idx is None:
            raise ValueError(
                f"Annotated frame {t} is within {k} frame(s) of the movie's end, so it has no full window of "
                f"{window} under edge policy 'skip'. Use edge 'reflect' or 'replicate', or leave frame {t} out."
            )
        needed = {(m, i) for i in idx}
        for key in list(cache):  # keep only frames this window reuses: memory stays ~ one window
            if key not in needed:
                del cache[key]
        st = stats[m]
        for i in idx:
            if (m, i) not in cache:
                frame = np.asarray(images[m][i], dtype=np.float32)
                if st.median is not None:
                    frame = frame - st.median
                cache[(m, i)] = pre.apply_normalization(frame, st.low_value, st.high_value)
        local = np.stack([cache[(m, i)] for i in idx])
        win = pre.make_window(local, k, window, edge, drift=drift, indices=list(range(window)))
        lab = check_label_frame(labels[m][t], where=f"The labels of frame {t}")
        native = None
        if scale != 1.0:
            shape = pre.scaled_shape(lab.shape, scale)
            win, native, lab = pre.resize_image(win, shape), lab, pre.resize_labels(lab, shape)
        samples.append(FrameSample(m, t, np.ascontiguousarray(win), lab, native))
    return samples, list(stats)


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


def make_target(labels: np.ndarray, classes: int) -> np.ndarray:
    """Class map for instance labels: 0 background, 1 cell, 2 boundary (3 classes) or 0/1 (2 classes).

    Parameters
    ----------
    labels : ndarray, shape (Y, X), int
    classes : {2, 3}

    Returns
    -------
    ndarray, shape (Y, X), int64
    """
    if classes == 2:
        return (np.asarray(labels) > 0).astype(np.int64)
    from napari_cellnet.segmentation.postprocessing import instance_target

    return np.asarray(instance_target(labels), dtype=np.int64)


def unet_weight_map(
    labels: np.ndarray,
    class_weights: Sequence[float] | np.ndarray,
    target: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
) -> np.ndarray:
    """U-Net weight map (Ronneberger et al. 2015, eq. 2) for instance labels.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` on background pixels,
    where ``d1`` and ``d2`` are the distances to the nearest and second-nearest cell; the
    thin gaps between touching cells get the largest weight. Cells are visited one at a
    time (running minima), so memory stays at a few frames whatever the cell count.

    Parameters
    ----------
    labels : ndarray, shape (Y, X), int
        Instance labels (0 background).
    class_weights : sequence of float, shape (classes,)
        ``w_c`` per target class.
    target : ndarray, shape (Y, X), int, optional
        Class map (:func:`make_target`); built from ``labels`` with ``len(class_weights)``
        classes when omitted. :data:`IGNORE` pixels get weight 0.
    w0, sigma : float
        Border weight and its width in pixels (the paper's 10 and 5).

    Returns
    -------
    ndarray, shape (Y, X), float32
    """
    labels = np.asarray(labels)
    cw = np.asarray(class_weights, dtype=np.float32)
    if target is None:
        target = make_target(labels, len(cw))
    valid = target != IGNORE
    out = np.where(valid, cw[np.clip(target, 0, None)], 0).astype(np.float32)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) < 2 or w0 == 0:
        return out
    d1 = np.full(labels.shape, np.inf, dtype=np.float32)
    d2 = np.full(labels.shape, np.inf, dtype=np.float32)
    for i in ids:
        d = ndi.distance_transform_edt(labels != i).astype(np.float32)
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        d1 = np.where(closer, d, d1)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    bg = (labels == 0) & valid
    out[bg] += border[bg].astype(np.float32)
    return out


# ---------------------------------------------------------------------------
# Random patches
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchSpec:
    """Where one training patch comes from: fully determined before the epoch starts."""

    sample: int
    y0: int
    x0: int
    seed: int


class PatchSampler:
    """Random (augmented) patches from the annotated windows, reproducible by seed.

    Every patch of an epoch is drawn from ``numpy.random.default_rng([seed, epoch])``
    before the epoch starts and carries its own augmentation seed, so resuming in the
    middle of an epoch continues with exactly the patches an uninterrupted run would see.

    Parameters
    ----------
    samples : list of FrameSample
    patch_size : int
        Side of the square patches; frames smaller than a patch are padded (the padding
        is :data:`IGNORE` in the target).
    classes : {2, 3}
    augment_params : AugmentParams, optional
        Applied identically to all frames of a window and, nearest-neighbour, to its labels.
    rate : int
        Augmentation rate: an epoch has ``rate`` times as many patches as it takes to
        cover the annotated frames once (1x, 5x, 10x as the sperm-morphology GUI offered).
    fg_fraction : float
        Share of patches centred on a random labelled pixel (cells are rare).
    weight_map : bool
        Also return the U-Net weight map (``class_weights``, ``w0``, ``sigma``).
    """

    def __init__(
        self,
        samples: Sequence[FrameSample],
        patch_size: int,
        classes: int = 3,
        augment_params: AugmentParams | None = None,
        rate: int = 1,
        fg_fraction: float = 0.5,
        weight_map: bool = False,
        class_weights: Sequence[float] | np.ndarray | None = None,
        w0: float = 10.0,
        sigma: float = 5.0,
    ) -> None:
        if not samples:
            raise ValueError("No training frame to sample patches from.")
        if patch_size < 8:
            raise ValueError(f"Patch size must be at least 8 pixels, got {patch_size}.")
        if int(rate) < 1:
            raise ValueError(f"The augmentation rate must be 1 or more (1x, 5x, 10x), got {rate}.")
        if not 0.0 <= fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must be between 0 and 1, got {fg_fraction}.")
        self.samples = list(samples)
        self.patch_size = int(patch_size)
        self.classes = int(classes)
        self.augment_params = augment_params
        self.rate = int(rate)
        self.fg_fraction = float(fg_fraction)
        self.weight_map = bool(weight_map)
        self.class_weights = np.ones(classes, np.float32) if class_weights is None else np.asarray(class_weights, np.float32)
        self.w0, self.sigma = float(w0), float(sigma)

    def patches_per_frame(self, s: FrameSample) -> int:
        """Patches needed to cover one frame once."""
        y, x = s.labels.shape
        return int(np.ceil(y / self.patch_size) * np.ceil(x / self.patch_size))

    def __len__(self) -> int:
        """Patches per epoch."""
        return self.rate * sum(self.patches_per_frame(s) for s in self.samples)

    def plan(self, seed: int, epoch: int) -> list[PatchSpec]:
        """The patches of one epoch, in order."""
        rng = np.random.default_rng([int(seed), int(epoch)])
        base = [i for i, s in enumerate(self.samples) for _ in range(self.patches_per_frame(s))]
        order = np.concatenate([rng.permutation(base) for _ in range(self.rate)])
        specs = []
        p = self.patch_size
        for i in order:
            s = self.samples[int(i)]
            y, x = s.labels.shape
            fg = s.foreground
            if len(fg) and rng.random() < self.fg_fraction:
                cy, cx = np.unravel_index(fg[rng.integers(len(fg))], (y, x))
                y0 = int(np.clip(cy - p // 2, 0, max(0, y - p)))
                x0 = int(np.clip(cx - p // 2, 0, max(0, x - p)))
            else:
                y0 = int(rng.integers(0, max(0, y - p) + 1))
                x0 = int(rng.integers(0, max(0, x - p) + 1))
            specs.append(PatchSpec(int(i), y0, x0, int(rng.integers(2**31))))
        return specs

    def make(self, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Cut, pad and augment one patch.

        Returns
        -------
        image : ndarray, shape (window * C, P, P), float32
        target : ndarray, shape (P, P), int64 (:data:`IGNORE` outside the frame)
        weights : ndarray, shape (P, P), float32, or None
        """
        s = self.samples[spec.sample]
        p = self.patch_size
        img = s.window[:, spec.y0:spec.y0 + p, spec.x0:spec.x0 + p]
        # +1 so that 0 marks "no annotation" (padding, or pixels rotated in from outside)
        lab = s.labels[spec.y0:spec.y0 + p, spec.x0:spec.x0 + p].astype(np.int32) + 1
        py, px = p - img.shape[1], p - img.shape[2]
        if py or px:
            mode = "reflect" if (py < img.shape[1] and px < img.shape[2]) else "edge"
            img = np.pad(img, ((0, 0), (0, py), (0, px)), mode=mode)  # type: ignore[call-overload]
            lab = np.pad(lab, ((0, py), (0, px)), mode="constant")
        if self.augment_params is not None and self.augment_params.active:
            img, lab_aug = augment(np.random.default_rng(spec.seed), img, lab, self.augment_params)
            lab = lab_aug if lab_aug is not None else lab
        valid = lab > 0
        inst = np.where(valid, lab - 1, 0)
        target = make_target(inst, self.classes)
        target[~valid] = IGNORE
        weights = None
        if self.weight_map:
            weights = unet_weight_map(inst, self.class_weights, target, self.w0, self.sigma)
        return np.ascontiguousarray(img, dtype=np.float32), target, weights

    def batch(self, specs: Sequence[PatchSpec]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Stack patches: images ``(B, window*C, P, P)``, targets ``(B, P, P)``, weights or None."""
        parts = [self.make(s) for s in specs]
        x = np.stack([a for a, _, _ in parts])
        y = np.stack([b for _, b, _ in parts])
        w = np.stack([c for _, _, c in parts]) if self.weight_map else None  # type: ignore[misc]
        return x, y, w
