"""Segmenting a movie with a trained temporal U-Net: the job the CLI, the widget and the
benchmark all run.

:func:`segment` is a generator (see :mod:`napari_cellnet.core.jobs`): it yields
:class:`~napari_cellnet.core.jobs.Progress` for every frame (and every tile of a tiled frame)
and returns a :class:`SegmentationResult`. Sending ``STOP`` returns what is done so far.

It reads as its steps: :func:`resolve_parameters` (the run's parameters, "the model's"
filled in from the checkpoint's :class:`~napari_cellnet.segmentation.checkpoints.SegmentationMeta`),
:func:`prepare_movie` (read lazily, normalised exactly as training did:
:class:`~napari_cellnet.segmentation.preprocessing.MovieNormaliser`), :func:`load_network`,
then the frames in batches (:func:`~napari_cellnet.segmentation.windows.frame_window`,
:func:`~napari_cellnet.segmentation.predict.predict`, labels, IDs through time) and the
result. Frames are handed to ``on_frame`` as they finish so the CLI can write them out and
keep memory flat for any movie length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_cellnet import __version__
from napari_cellnet.core import device as devices
from napari_cellnet.core.jobs import STOP, Progress
from napari_cellnet.models.checkpoint import Checkpoint
from napari_cellnet.segmentation.checkpoints import SegmentationMeta, load_segmentation_model
from napari_cellnet.segmentation.params import SegmentParams
from napari_cellnet.segmentation.postprocessing import probabilities_to_labels
from napari_cellnet.segmentation.predict import (
    NetworkRun,
    default_overlap,
    precision_dtype,
    predict,
    use_channels_last,
)
from napari_cellnet.segmentation.preprocessing import MovieNormaliser, resize_image, scaled_shape
from napari_cellnet.segmentation.tracking import TimeMatcher, frame_centroids, tracks_from_features
from napari_cellnet.segmentation.windows import NormalisedMovie, frame_window, valid_frames

FEATURES = ("frame", "label", "area", "centroid_y", "centroid_x")


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes
    ----------
    probabilities : ndarray, float32, shape (T, Y, X), or None
        Foreground probability ``1 - P(background)`` per frame (None when not kept).
    labels : ndarray, int32, shape (T, Y, X), or None
        Instance labels with IDs consistent through time (None when not kept).
    tracks : ndarray, float64, shape (N, 4)
        ``[track_id, t, y, x]`` for napari ``add_tracks``.
    frames_done : list of int
        Frames that were segmented (skipped frames under ``edge="skip"`` and frames not
        reached before a stop are zero in the arrays).
    params : dict
        Provenance: model, checkpoint, window, edge, drift, normalisation, thresholds,
        device, tiling, package version (for ``layer.metadata`` and the JSON), and
        timings: ``seconds`` in all and ``stage_seconds`` (read_prepare, network,
        postprocess, write).
    graph : dict
        ``{track_id: [parent_id]}`` for divisions (napari Tracks ``graph``).
    features : dict of ndarray
        Per object per frame: ``frame``, ``label``, ``area``, ``centroid_y``, ``centroid_x``.
    stopped : bool
        True when the job was stopped before the last frame.
    """

    probabilities: np.ndarray | None
    labels: np.ndarray | None
    tracks: np.ndarray
    frames_done: list[int]
    params: dict[str, Any]
    graph: dict[int, list[int]] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    stopped: bool = False

    @property
    def mask(self) -> np.ndarray | None:
        """Binary foreground mask ``(T, Y, X)`` (``labels > 0``)."""
        return None if self.labels is None else self.labels > 0

    def resume_arguments(self) -> dict[str, Any]:
        """Keywords for :func:`segment` that continue this stopped run where it ended.

        Raises
        ------
        ValueError
            If the run was not stopped, kept no labels, or did not finish a frame.
        """
        if not self.stopped:
            raise ValueError("This run finished every frame; there is nothing to resume.")
        if self.labels is None or not self.frames_done:
            raise ValueError("Nothing to resume from: no frame was finished (run it again instead).")
        last = max(self.frames_done)
        return {"start": last + 1, "previous_labels": self.labels[last], "next_id": int(self.labels.max()) + 1}

    def extended_by(self, later: SegmentationResult) -> SegmentationResult:
        """This stopped run with the frames of ``later`` (a run resumed from it) added."""
        start = int(later.params.get("start", 0))

        def join(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            if a is None or b is None:
                return None
            out = a.copy()
            out[start:] = b[start:]
            return out

        early = {k: np.asarray(v) for k, v in self.features.items()}
        keep = early["frame"] < start if "frame" in early else slice(None)
        features = {k: np.concatenate([early[k][keep], np.asarray(later.features.get(k, []))])
                    for k in early}
        params = dict(later.params)
        params["frames_done"] = len(self.frames_done) + len(later.frames_done)
        params["resumed_at"] = start
        return SegmentationResult(
            probabilities=join(self.probabilities, later.probabilities),
            labels=join(self.labels, later.labels),
            tracks=tracks_from_features(features),
            frames_done=sorted(set(self.frames_done) | set(later.frames_done)),
            params=params,
            graph={**self.graph, **later.graph},
            features=features,
            stopped=later.stopped,
        )


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


class _MovieFrames:
    """``(T, C, Y, X)`` view of any array-like with axes, reading one frame at a time."""

    def __init__(self, data: Any, axes: str, channel: int | None, in_channels: int) -> None:
        from napari_cellnet.core.io import to_tcyx

        self.view = to_tcyx(data, axes)
        T, C, Y, X = (int(n) for n in self.view.shape)
        if channel is not None:
            if not 0 <= channel < C:
                raise ValueError(f"channel={channel} does not exist: the movie has {C} channel(s) (0..{C - 1}).")
            C = 1
        if C != in_channels:
            rgb = " (an RGB movie?)" if C in (3, 4) and in_channels == 1 else ""
            raise ValueError(
                f"The movie has {C} channel(s) per frame{rgb} but the model expects {in_channels}. "
                f"Pick one channel (channel=0 / --channel 0), convert to grayscale, or use a model "
                f"trained on {C} channel(s)."
            )
        self.channel = channel
        self.axes = axes
        self.shape = (T, C, Y, X)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        item = self.view[int(t)]
        # dask: read in this thread (a thread pool per frame costs memory and time)
        frame = np.asarray(item.compute(scheduler="synchronous") if hasattr(item, "compute") else item)
        if self.channel is not None:
            frame = frame[self.channel:self.channel + 1]
        return frame


def resolve_parameters(params: SegmentParams, meta: SegmentationMeta) -> SegmentParams:
    """``params`` with every "the model's" (None) setting filled in from the checkpoint
    (threshold, min_size, edge, drift and scale are never None afterwards)."""
    return params.replace(
        threshold=meta.threshold if params.threshold is None else float(params.threshold),
        min_size=meta.min_size if params.min_size is None else int(params.min_size),
        edge=meta.edge if params.edge is None else params.edge,
        drift=meta.drift if params.drift is None else bool(params.drift),
        scale=meta.scale if params.scale is None else float(params.scale),
    )


def prepare_movie(movie: Any, meta: SegmentationMeta, axes: str | None = None,
                  channel: int | None = None) -> NormalisedMovie:
    """The movie as the network's preprocessing sees it: ``(T, C, Y, X)`` frames, read one
    at a time and normalised as the checkpoint says training did.

    Parameters
    ----------
    movie : array_like
        numpy, memmap or dask, axes given by ``axes`` (guessed if omitted).
    meta : SegmentationMeta
    axes : str, optional
    channel : int, optional
        Use only this channel of a multi-channel movie.

    Raises
    ------
    ValueError
        For a channel count the model does not take, or NaN/inf pixels.
    """
    from napari_cellnet.core.io import guess_axes

    axes = axes or guess_axes(tuple(getattr(movie, "shape", np.shape(movie))))
    frames = _MovieFrames(movie, axes, channel, meta.in_channels)
    normaliser = MovieNormaliser.fit(frames, meta.normalization, meta.background_subtraction)
    return NormalisedMovie(frames, normaliser)


def load_network(ckpt: Checkpoint, meta: SegmentationMeta, p: SegmentParams, dev: torch.device,
                 frame_shape: tuple[int, int]) -> tuple[Any, NetworkRun]:
    """The network in eval mode on ``dev`` (batch norm fused) and how to run it.

    Raises
    ------
    ValueError
        If the checkpoint's network does not match its ``meta``, or the tile is too small
        for the network's receptive field.
    """
    net = ckpt.build(dev)
    if hasattr(net, "fuse_batchnorm"):
        net.fuse_batchnorm()
    net_window = getattr(net, "window", meta.window)
    if net_window != meta.window or getattr(net, "in_channels", meta.in_channels) != meta.in_channels:
        raise ValueError(
            f"The checkpoint is inconsistent: meta says window {meta.window} x {meta.in_channels} channel(s), the "
            f"network takes {net_window} x {getattr(net, 'in_channels', '?')}. Re-save it with napari-cellnet."
        )
    tile = None if p.tile is None else int(p.tile)
    if tile is not None and p.overlap is None:
        need = default_overlap(net, 10**6)
        if tile < 2 * need and tile < max(frame_shape):
            raise ValueError(
                f"tile={tile} is too small for this model: its receptive field "
                f"({getattr(net, 'receptive_field', '?')} px) needs an overlap of {need} px, so tiles should be at "
                f"least {2 * need} px. Use a larger tile (e.g. 512 or 1024), or tile=None / --tile 0 to run "
                "whole frames."
            )
    if tile is not None and p.overlap is not None and int(p.overlap) >= tile:
        raise ValueError(f"overlap ({p.overlap}) must be smaller than the tile ({tile}).")
    batch = int(p.batch) if p.batch is not None else (1 if dev.type == "cpu" else 4)
    run = NetworkRun(dev, precision_dtype(p.precision, dev), use_channels_last(p.channels_last, dev, net),
                     batch, tile, p.overlap)
    return net, run


def _use_device(device: Any, threads: int | None) -> torch.device:
    """The torch device, with torch's CPU threads set (every core by default on the CPU)."""
    dev = devices.resolve(device) if not isinstance(device, torch.device) else device
    devices.use_threads(threads, dev)
    return dev


def _frames_to_segment(T: int, window: int, edge: str, start: int) -> list[int]:
    """Frames that get a prediction (all but those ``edge="skip"`` leaves out); checks ``start``."""
    if not 0 <= int(start) < T:
        raise ValueError(f"start={start} is outside the movie (frames 0..{T - 1}).")
    return valid_frames(T, window, edge)


def _provenance(ckpt: Checkpoint, meta: SegmentationMeta, p: SegmentParams, axes: str, movie: NormalisedMovie,
                net: Any, run: NetworkRun) -> dict[str, Any]:
    """What :attr:`SegmentationResult.params` records before the frames run."""
    info = devices.describe(run.device)
    return {
        "model": ckpt.model, "checkpoint": str(ckpt.path) if ckpt.path else None, "config": dict(ckpt.config),
        "class_names": list(meta.class_names), "window": meta.window, "in_channels": meta.in_channels,
        "edge": p.edge, "drift": p.drift,
        "normalization": dict(ckpt.meta.get("normalization") or meta.normalization.to_meta()),
        "normalization_values": movie.normaliser.values(),
        "background_subtraction": meta.background_subtraction,
        "threshold": p.threshold, "min_size": p.min_size, "scale": p.scale, "split": p.split, "min_iou": p.min_iou,
        "channel": p.channel, "axes": axes, "shape": list(movie.frames.shape),
        "device": info.name, "device_description": info.description,
        "precision": str(run.precision).replace("torch.", "") if run.precision is not None else "float32",
        "channels_last": run.channels_last, "tile": run.tile,
        "overlap": p.overlap if p.overlap is not None else (default_overlap(net, run.tile) if run.tile else None),
        "batch": run.batch, "package_version": __version__, "checkpoint_package_version": ckpt.package_version,
    }


@dataclass
class _Frames:
    """Where finished frames go (the kept stacks and ``on_frame``, in frame order) and what
    the loop has done so far: the small state of one :func:`segment` run."""

    shape: tuple[int, int]
    window: int
    probabilities: np.ndarray | None
    labels: np.ndarray | None
    on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None
    next_frame: int
    done: list[int] = field(default_factory=list)
    stopped: bool = False
    features: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in FEATURES})
    clock: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("read_prepare", "network", "postprocess", "write"), 0.0))

    def emit(self, t: int, p: np.ndarray, lab: np.ndarray) -> None:
        if self.probabilities is not None:
            self.probabilities[t] = p
        if self.labels is not None:
            self.labels[t] = lab
        if self.on_frame is not None:
            self.on_frame(t, p, lab)

    def emit_empty_until(self, t: int) -> None:
        """Hand out zero frames up to ``t`` (frames skipped under ``edge="skip"``)."""
        while self.next_frame < t:
            self.emit(self.next_frame, np.zeros(self.shape, np.float32), np.zeros(self.shape, np.int32))
            self.next_frame += 1


def _network_step(net: Any, movie: NormalisedMovie, chunk: list[int], p: SegmentParams, run: NetworkRun,
                  state: _Frames, n_todo: int) -> Generator[Progress, Any, np.ndarray | None]:
    """Probabilities ``(B, classes, Y, X)`` of the frames ``chunk`` on the movie's grid; None when stopped."""
    tick = time.perf_counter()
    shape = scaled_shape(state.shape, p.scale or 1.0) if p.scale != 1.0 else None
    wins = np.stack([frame_window(movie, t, state.window, str(p.edge), bool(p.drift), shape) for t in chunk])
    state.clock["read_prepare"] += time.perf_counter() - tick
    tick = time.perf_counter()
    parent = Progress("frame", len(state.done), n_todo, f"frame {len(state.done) + 1} of {n_todo}")
    job = predict(net, wins, run, parent=parent)
    probs = None
    try:
        while True:
            if (yield next(job)) == STOP:
                state.stopped = True
                job.close()
                break
    except StopIteration as fin:
        probs = fin.value
    if probs is not None and p.scale != 1.0:
        probs = resize_image(probs, state.shape)  # back to the movie's grid before post-processing
    state.clock["network"] += time.perf_counter() - tick
    return probs


def _postprocess_frame(t: int, prob: np.ndarray, p: SegmentParams, matcher: TimeMatcher, state: _Frames) -> None:
    """Labels with IDs through time, features and hand-out of one frame."""
    state.emit_empty_until(t)
    tick = time.perf_counter()
    fg = (1.0 - prob[0]).astype(np.float32)
    lab = matcher.update(probabilities_to_labels(prob, threshold=p.threshold or 0.5, min_size=p.min_size or 0,
                                                 split=p.split))
    ids, area, cy, cx = frame_centroids(lab)
    for k, v in zip(FEATURES, (np.full(len(ids), t, np.int64), ids, area, cy, cx), strict=True):
        state.features[k].append(v)
    state.clock["postprocess"] += time.perf_counter() - tick
    tick = time.perf_counter()
    state.emit(t, fg, lab)
    state.clock["write"] += time.perf_counter() - tick
    state.next_frame = t + 1
    state.done.append(t)


def _segment_frames(net: Any, movie: NormalisedMovie, todo: list[int], p: SegmentParams, run: NetworkRun,
                    matcher: TimeMatcher, state: _Frames) -> Generator[Progress, Any, None]:
    """The frame loop: batches of windows through the network, then post-processing, in order."""
    import scipy.optimize  # noqa: F401  (import post-processing's libraries before the stage clocks run)
    import skimage.measure  # noqa: F401
    import skimage.morphology  # noqa: F401
    import skimage.segmentation  # noqa: F401

    i = 0
    while i < len(todo):
        chunk = todo[i:i + run.batch]
        probs = yield from _network_step(net, movie, chunk, p, run, state, len(todo))
        if probs is None:
            return
        for t, prob in zip(chunk, probs, strict=True):
            _postprocess_frame(t, prob, p, matcher, state)
        movie.forget_before(min(chunk[-1] + 1, len(movie)) - state.window)
        i += len(chunk)
        reply = yield Progress("frame", len(state.done), len(todo), f"frame {len(state.done)} of {len(todo)}")
        if reply == STOP and len(state.done) < len(todo):
            state.stopped = True
            return


def segment(
    movie: Any,
    model: Any,
    params: SegmentParams | None = None,
    *,
    axes: str | None = None,
    on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    keep: bool = True,
    keep_probabilities: bool = True,
    stop_keeps: bool = True,
    start: int = 0,
    previous_labels: np.ndarray | None = None,
    next_id: int | None = None,
    **overrides: Any,
) -> Generator[Progress, Any, SegmentationResult]:
    """Segment a time-lapse movie; a job generator (yields progress, returns the result).

    Parameters
    ----------
    movie : array_like
        The movie (numpy, memmap or dask; read one frame at a time), axes given by ``axes``.
    model : Checkpoint or path
        A segmentation checkpoint (see :mod:`napari_cellnet.models.checkpoint`).
    params : SegmentParams, optional
        Device, post-processing, window, tiling and precision settings; None fields mean
        "the model's". Default ``SegmentParams()``.
    axes : str, optional
        Axes of ``movie`` (``"TYX"``, ``"TCYX"``, ``"TYXC"``, ``"YX"`` ...); guessed if omitted.
    on_frame : callable, optional
        ``on_frame(t, probability (Y, X) float32, labels (Y, X) int32)`` for every frame in
        order, including zero frames for those skipped under ``edge="skip"``.
    keep, keep_probabilities : bool
        Keep ``(T, Y, X)`` labels (and probabilities) in the result (the CLI keeps neither).
    stop_keeps : bool
        On STOP return the frames done so far (True) or raise ``InterruptedError``.
    start : int
        First frame: resumes a stopped run (normalisation still uses the whole movie, so
        frames match). Frames before it stay zero and skip ``on_frame``.
    previous_labels : ndarray of int, shape (Y, X), optional
    next_id : int, optional
        With ``start``: the earlier run's last labels and first unused ID, so IDs continue
        (:meth:`SegmentationResult.resume_arguments` gives all three).
    **overrides
        Fields of :class:`SegmentParams` (``device="cpu"``, ``threads=1``, ``tile=None`` ...).

    Yields
    ------
    Progress
        ``stage="frame"`` (index = frames finished) with nested ``stage="tile"`` events.

    Returns
    -------
    SegmentationResult

    Raises
    ------
    ValueError
        A movie that does not fit the model, NaN/inf pixels, a bad checkpoint, an unknown
        device or parameter; messages name the fix.
    """
    t_start, start = time.perf_counter(), int(start)
    params = (params or SegmentParams()).replace(**overrides)
    params.validate()
    ckpt = load_segmentation_model(model)
    meta = SegmentationMeta.from_checkpoint(ckpt)
    p = resolve_parameters(params, meta)
    dev = _use_device(p.device, p.threads)
    nmovie = prepare_movie(movie, meta, axes, p.channel)
    T, _, Y, X = nmovie.frames.shape
    valid = _frames_to_segment(T, meta.window, str(p.edge), start)
    net, run = load_network(ckpt, meta, p, dev, scaled_shape((Y, X), p.scale or 1.0))
    provenance = _provenance(ckpt, meta, p, nmovie.frames.axes, nmovie, net, run)
    matcher = _time_matcher(p.min_iou, previous_labels, next_id, (Y, X))
    state = _Frames((Y, X), meta.window, np.zeros((T, Y, X), np.float32) if keep and keep_probabilities else None,
                    np.zeros((T, Y, X), np.int32) if keep else None, on_frame, start)
    yield from _segment_frames(net, nmovie, [t for t in valid if t >= start], p, run, matcher, state)
    if state.stopped and not stop_keeps:
        raise InterruptedError("Segmentation stopped.")
    if not state.stopped:
        state.emit_empty_until(T)
    devices.empty_cache(dev)
    return _result(state, matcher, {**provenance, **_run_summary(state, run, T, valid, start, t_start)})


def _run_summary(state: _Frames, run: NetworkRun, T: int, valid: list[int], start: int,
                 t_start: float) -> dict[str, Any]:
    """What :attr:`SegmentationResult.params` records once the frames ran (timings, retries)."""
    return {"frames_done": len(state.done), "frames_total": T, "skipped_frames": sorted(set(range(T)) - set(valid)),
            "start": int(start), "stopped": state.stopped, "seconds": round(time.perf_counter() - t_start, 3),
            "oom_retries": list(run.retries), "batch_used": run.batch,
            "stage_seconds": {k: round(v, 3) for k, v in state.clock.items()}}


def _time_matcher(min_iou: float, previous_labels: np.ndarray | None, next_id: int | None,
                  shape: tuple[int, int]) -> TimeMatcher:
    """The ID matcher, continuing a stopped run's IDs when its last labels are given."""
    matcher = TimeMatcher(min_iou)
    if previous_labels is not None:
        if tuple(np.shape(previous_labels)) != shape:
            raise ValueError(f"previous_labels has shape {np.shape(previous_labels)}, frames are {shape}.")
        matcher.resume(previous_labels, next_id)
    return matcher


def _result(state: _Frames, matcher: TimeMatcher, provenance: dict[str, Any]) -> SegmentationResult:
    features = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in state.features.items()}
    return SegmentationResult(
        probabilities=state.probabilities, labels=state.labels, tracks=tracks_from_features(features),
        frames_done=state.done, params=provenance, graph=dict(matcher.divisions), features=features,
        stopped=state.stopped,
    )
