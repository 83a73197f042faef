"""Segmenting a movie with a trained temporal U-Net: the job the CLI, the widget and the
benchmark all run.

:func:`segment` is a generator (see :mod:`napari_cellnet.core.jobs`): it yields
:class:`~napari_cellnet.core.jobs.Progress` for every frame (and every tile of a tiled frame)
and returns a :class:`SegmentationResult`. Sending ``STOP`` returns what is done so far.

The path of one frame: read it (lazily: only the frames of the current windows are in
memory), subtract the temporal background and normalise with the movie's percentiles
exactly as the checkpoint's ``meta`` says training did, stack the window (edge policy,
optional drift registration), pad to the network's size divisor, run the network in
batches (whole frames, or overlapping tiles blended so that tiled == untiled where the
overlap covers the receptive field), softmax, then labels, IDs through time and tracks
(:mod:`napari_cellnet.segmentation.postprocessing`). Frames are handed to ``on_frame`` as they finish
so the CLI can write them out and keep memory flat for any movie length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_cellnet import __version__
from napari_cellnet.core import device as devices
from napari_cellnet.core.jobs import STOP, Progress
from napari_cellnet.models.checkpoint import Checkpoint, load_checkpoint
from napari_cellnet.segmentation import preprocessing as pp
from napari_cellnet.segmentation.postprocessing import (
    TimeMatcher,
    frame_centroids,
    probabilities_to_labels,
    tracks_from_features,
)

log = logging.getLogger(__name__)

DEFAULT_TILE = 1024
STATS_FRAMES = 32  # frames sampled (evenly) for percentiles and the temporal median, as training does


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
# The network on windows
# ---------------------------------------------------------------------------


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def _run_net(net: Any, x: np.ndarray, dev: torch.device, amp: torch.dtype | None, channels_last: bool) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x)).to(dev, non_blocking=True)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        if amp is not None and dev.type == "cuda":
            with torch.autocast("cuda", dtype=amp):
                logits = net(t)
        else:
            logits = net(t)
        prob = torch.softmax(logits.float(), dim=1)
    return prob.cpu().numpy()


def receptive_margin(net: Any) -> int:
    """Pixels at a tile's inner edge whose prediction sees padding: half the receptive field."""
    rf = getattr(net, "receptive_field", None)
    return int(rf) // 2 + 1 if rf is not None else 64


def default_overlap(net: Any, tile: int) -> int:
    """Overlap that makes tiled output equal untiled output (2 x margin + a blending ramp),
    rounded up to the size divisor, or the largest overlap the tile allows."""
    div = int(getattr(net, "size_divisor", 1))
    want = 2 * receptive_margin(net) + 16
    want = -(-want // div) * div
    return min(want, max(tile - div, 0))


def _predict_iter(
    net: Any,
    windows: np.ndarray,
    dev: torch.device,
    tile: int | None,
    overlap: int | None,
    batch: int,
    amp: torch.dtype | None,
    channels_last: bool,
    state: dict[str, Any],
    parent: Progress | None = None,
) -> Generator[Progress, Any, np.ndarray]:
    """Probabilities for a batch of windows; yields tile progress; OOM-safe on CUDA."""
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"Expected windows of shape (B, window*C, Y, X), got {x.shape}.")
    B, _, H, W = x.shape
    div = int(getattr(net, "size_divisor", 1))
    xp, _ = pp.pad_to_multiple(x, div)
    Hp, Wp = xp.shape[-2:]
    tile_size = max(Hp, Wp) if tile is None else max(int(tile), div)
    tile_size = -(-tile_size // div) * div
    while True:
        try:
            if tile_size >= Hp and tile_size >= Wp:
                out = []
                for i in range(0, B, state["batch"]):
                    out.append(_run_net(net, xp[i:i + state["batch"]], dev, amp, channels_last))
                probs = np.concatenate(out)
                if parent is not None:
                    yield Progress("tile", 1, 1, parent=parent)
            else:
                ov = default_overlap(net, tile_size) if overlap is None else int(overlap)
                margin = min(receptive_margin(net), max(ov // 2 - 1, 0))
                ramp = max(ov - 2 * margin, 0)
                grid = pp.tile_grid((Hp, Wp), tile_size, ov, div)
                classes = None
                acc: np.ndarray | None = None
                wsum = np.zeros((Hp, Wp), np.float32)
                jobs = [(b, sl) for sl in grid for b in range(B)]
                n_tiles = len(grid)
                for j in range(0, len(jobs), state["batch"]):
                    chunk = jobs[j:j + state["batch"]]
                    xb = np.stack([xp[b][(slice(None), sl[0], sl[1])] for b, sl in chunk])
                    pb = _run_net(net, xb, dev, amp, channels_last)
                    if acc is None:
                        classes = pb.shape[1]
                        acc = np.zeros((B, classes, Hp, Wp), np.float32)
                    for (b, sl), p in zip(chunk, pb, strict=True):
                        w = pp.blend_weights(p.shape[-2:], sl, (Hp, Wp), margin, ramp)
                        acc[b][(slice(None), sl[0], sl[1])] += p * w
                        if b == 0:
                            wsum[sl] += w
                    if parent is not None:
                        k = j + len(chunk)
                        yield Progress("tile", k, len(jobs), f"tile {k} of {len(jobs)} ({n_tiles} per frame)",
                                       parent=parent)
                assert acc is not None and classes is not None
                probs = acc / np.maximum(wsum, 1e-12)[None, None]
            return probs[:, :, :H, :W].astype(np.float32, copy=False)
        except RuntimeError as err:
            if dev.type != "cuda" or not _is_oom(err):
                raise
            devices.empty_cache(dev)
            if state["batch"] > 1:
                state["batch"] = max(1, state["batch"] // 2)
                msg = f"CUDA out of memory: retrying with batch {state['batch']}"
            elif tile_size > 2 * div and tile_size > 128:
                tile_size = max(128, (tile_size // 2) // div * div)
                msg = f"CUDA out of memory: retrying with tiles of {tile_size} px"
            else:
                raise RuntimeError(
                    "CUDA ran out of memory even with batch 1 and small tiles. Close other GPU programs "
                    "or use device 'cpu'."
                ) from err
            log.warning(msg)
            state.setdefault("retries", []).append(msg)
            state["tile"] = tile_size
            if parent is not None:
                yield Progress("tile", 0, 1, msg, parent=parent)


def predict_windows(
    net: Any,
    windows: np.ndarray,
    device: Any = "auto",
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = 8,
    amp: str | None = "auto",
    channels_last: bool | None = None,
) -> np.ndarray:
    """Softmax probabilities of a network on stacked windows (training validation uses this).

    Parameters
    ----------
    net : torch.nn.Module
        In eval mode, on ``device``.
    windows : ndarray, float32, shape (B, window * C, Y, X)
        Already normalised windows (:func:`napari_cellnet.segmentation.preprocessing.make_window`).
    device : str or torch.device
    tile : int, optional
        Tile size; None runs whole frames.
    overlap : int, optional
        Tile overlap; default covers the receptive field (tiled == untiled).
    batch : int
        Windows (or tiles) per forward pass.
    amp : {"auto", "bf16", "fp16", None}
        Mixed precision on CUDA ("auto": bf16 where supported, else fp16); ignored on CPU.
    channels_last : bool, optional
        Default on for CUDA and the CPU (measured faster on both, see docs/performance.md).

    Returns
    -------
    ndarray, float32, shape (B, classes, Y, X)
    """
    dev = devices.resolve(device) if isinstance(device, str) else device
    use_cl = _channels_last(channels_last, dev, net)
    job = _predict_iter(net, windows, dev, tile, overlap, max(1, int(batch)), _amp_dtype(amp, dev),
                        use_cl, {"batch": max(1, int(batch))})
    try:
        while True:
            next(job)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if use_cl:  # leave the caller's network (e.g. one being trained) as it was
            net.to(memory_format=torch.contiguous_format)


def _amp_dtype(amp: str | None, dev: torch.device) -> torch.dtype | None:
    if dev.type != "cuda" or amp in (None, "none", "fp32", False):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in table:
        raise ValueError(f"Unknown precision {amp!r}. Use 'auto', 'bf16', 'fp16' or None.")
    return table[amp]


def _channels_last(flag: bool | None, dev: torch.device, net: Any) -> bool:
    # channels_last is faster for oneDNN on the CPU too (1.3-2x in benchmarks/bench_segment.py)
    use = dev.type in ("cuda", "cpu") if flag is None else bool(flag)
    if use:
        net.to(memory_format=torch.channels_last)
    return use


# ---------------------------------------------------------------------------
# The movie
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


class _Raw:
    """Frames minus the temporal background, as float32 (what the percentiles are taken of)."""

    def __init__(self, frames: _MovieFrames, background: np.ndarray | None) -> None:
        self.frames = frames
        self.background = background

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t: int) -> np.ndarray:
        f = np.asarray(self.frames[int(t)], dtype=np.float32)
        return f if self.background is None else f - self.background


class _Prepared:
    """Frames after background subtraction and normalisation, cached around the current window.

    Exactly what training does (:func:`napari_cellnet.segmentation.data.movie_stats`): temporal median
    and one pair of percentiles for the whole movie (all channels together), both from
    at most :data:`STATS_FRAMES` evenly spaced frames.
    """

    def __init__(self, frames: _MovieFrames, meta: dict[str, Any]) -> None:
        self.frames = frames
        norm = dict(meta.get("normalization") or {"method": "percentile", "low": 1.0, "high": 99.8})
        kind = norm.get("method", norm.get("kind", "percentile"))
        T = len(frames)
        self.background: np.ndarray | None = None
        self.bg_frames = 0
        if meta.get("background_subtraction"):
            self.background = pp.temporal_median(frames, max_frames=STATS_FRAMES)
            self.bg_frames = min(T, STATS_FRAMES)
        self.raw = _Raw(frames, self.background)
        if kind == "percentile":
            self.lo, self.hi = pp.movie_percentiles(self.raw, float(norm.get("low", 1.0)),
                                                    float(norm.get("high", 99.8)), max_frames=STATS_FRAMES)
        elif kind == "fixed":
            self.lo = float(norm.get("offset", 0.0))
            self.hi = self.lo + float(norm.get("scale", 1.0))
        else:
            raise ValueError(f"Unknown normalisation {kind!r} in the checkpoint (expected 'percentile' or 'fixed').")
        self.stats_frames = min(T, STATS_FRAMES)
        self.cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t: int) -> np.ndarray:
        t = int(t)
        if t not in self.cache:
            f = self.raw[t]
            pp.check_finite(f, what=f"movie (frame {t})")
            self.cache[t] = pp.apply_normalization(f, self.lo, self.hi)
        return self.cache[t]

    def forget_before(self, t: int) -> None:
        for k in [k for k in self.cache if k < t]:
            del self.cache[k]


def _as_checkpoint(checkpoint_or_path: Any) -> Checkpoint:
    if isinstance(checkpoint_or_path, Checkpoint):
        ckpt = checkpoint_or_path
    else:
        ckpt = load_checkpoint(checkpoint_or_path, task="segmentation")
    if ckpt.task != "segmentation":
        raise ValueError(f"{ckpt.path or 'The checkpoint'} is a {ckpt.task} model; choose a segmentation model.")
    return ckpt


def segment(
    movie: Any,
    checkpoint_or_path: Any,
    *,
    axes: str | None = None,
    device: str | Any = "auto",
    tile: int | None = DEFAULT_TILE,
    overlap: int | None = None,
    batch: int | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    edge: str | None = None,
    drift: bool | None = None,
    channel: int | None = None,
    split: str = "auto",
    min_iou: float = 0.3,
    amp: str | None = "auto",
    channels_last: bool | None = None,
    keep: bool = True,
    keep_probabilities: bool = True,
    on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    stop_keeps: bool = True,
    threads: int | None = None,
    scale: float | None = None,
    start: int = 0,
    previous_labels: np.ndarray | None = None,
    next_id: int | None = None,
) -> Generator[Progress, Any, SegmentationResult]:
    """Segment a time-lapse movie; a job generator (yields progress, returns the result).

    Parameters
    ----------
    movie : array_like
        The movie (numpy, memmap or dask; read one frame at a time), axes given by ``axes``.
    checkpoint_or_path : Checkpoint or path
        A segmentation checkpoint (see :mod:`napari_cellnet.models.checkpoint`).
    axes : str, optional
        Axes of ``movie`` (``"TYX"``, ``"TCYX"``, ``"TYXC"``, ``"YX"`` ...); guessed if omitted.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    tile : int or None
        Tile size in pixels; frames up to this size run whole. None never tiles.
    overlap : int, optional
        Tile overlap; the default covers the network's receptive field so tiles blend
        into exactly the untiled result.
    batch : int, optional
        Frames (or tiles) per forward pass; halved automatically on CUDA out-of-memory.
        Default 4 on a GPU, 1 on the CPU (a 1024^2 frame already keeps every core busy,
        and each extra frame in a batch costs ~90 MB of activations).
    threshold, min_size : optional
        Foreground threshold and smallest object (pixels); default from the checkpoint
        (``meta["threshold"]``, ``meta["min_size"]``) or 0.5 and 30.
    edge : {"reflect", "replicate", "skip"}, optional
        Edge policy for the first and last frames; default the checkpoint's.
    drift : bool, optional
        Register neighbours onto the centre frame; default whatever the model was trained with.
    channel : int, optional
        Use only this channel of a multi-channel movie (e.g. 0 of an RGB movie).
    split : {"auto", "boundary", "distance", "none"}
        How touching cells are split (:func:`~napari_cellnet.segmentation.postprocessing.probabilities_to_labels`).
    min_iou : float
        IoU for carrying an ID to the next frame.
    amp : {"auto", "bf16", "fp16", None}
        Mixed precision on CUDA.
    channels_last : bool, optional
        Memory format; default on for CUDA and the CPU.
    keep : bool
        Keep ``(T, Y, X)`` labels (and probabilities) in the result. The CLI sets False
        and writes frames through ``on_frame`` so memory does not grow with T.
    keep_probabilities : bool
        Keep the probability stack too (when ``keep``).
    on_frame : callable, optional
        ``on_frame(t, probability (Y, X) float32, labels (Y, X) int32)`` for every frame in
        order, including zero frames for those skipped under ``edge="skip"``.
    stop_keeps : bool
        On STOP return the frames done so far (True) or raise ``InterruptedError``.
    threads : int, optional
        CPU threads for torch; default all cores the process may use.
    scale : float, optional
        Input scale factor: every window is resampled by this factor before the network
        and the probabilities are brought back to the movie's grid before post-processing,
        so labels always have the movie's shape. Default the checkpoint's
        (``meta["scale"]``, 1 for models saved before it existed). Override it only when
        your cells are larger or smaller (in pixels) than those the model was trained on.
        ``tile`` and ``overlap`` are in pixels of the rescaled frame.
    start : int
        First frame to segment: resumes a stopped run. Normalisation and background are
        computed from the whole movie exactly as in the first run, so frames match. Frames
        before ``start`` are left zero and are not handed to ``on_frame``.
    previous_labels : ndarray of int, shape (Y, X), optional
        With ``start``: the labels of the last frame the earlier run finished, so IDs
        continue through time instead of starting again.
    next_id : int, optional
        With ``previous_labels``: the first ID the earlier run did not use (default: one
        more than the largest ID in ``previous_labels``).

    Yields
    ------
    Progress
        ``stage="frame"`` (index = frames finished) with nested ``stage="tile"`` events
        when tiling.

    Returns
    -------
    SegmentationResult

    Raises
    ------
    ValueError
        For a movie that does not fit the model (channels, window with ``skip``), NaN/inf
        pixels, a bad checkpoint, an unknown device or parameter; messages name the fix.
    """
    from napari_cellnet.core.io import guess_axes

    t_start = time.perf_counter()
    ckpt = _as_checkpoint(checkpoint_or_path)
    meta = ckpt.meta
    window = pp.check_window(int(meta.get("window", ckpt.config.get("window", 1))))
    in_channels = int(meta.get("in_channels", ckpt.config.get("in_channels", 1)))
    edge = pp.check_edge(edge if edge is not None else meta.get("edge", "reflect"))
    drift = bool(meta.get("drift", False)) if drift is None else bool(drift)
    threshold = float(meta.get("threshold", 0.5)) if threshold is None else float(threshold)
    min_size = int(meta.get("min_size", 30)) if min_size is None else int(min_size)
    scale = pp.check_scale(meta.get("scale", 1.0) if scale is None else scale)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}.")
    if batch is not None and int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}.")
    if tile is not None and int(tile) < 32:
        raise ValueError(f"tile must be at least 32 pixels (or None for whole frames), got {tile}.")
    dev = devices.resolve(device) if not isinstance(device, torch.device) else device
    batch = int(batch) if batch is not None else (1 if dev.type == "cpu" else 4)
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}.")
        torch.set_num_threads(int(threads))
    elif dev.type == "cpu":
        devices.use_all_cores()

    shape = tuple(getattr(movie, "shape", np.shape(movie)))
    axes = axes or guess_axes(shape)
    frames = _MovieFrames(movie, axes, channel, in_channels)
    T, C, Y, X = frames.shape
    Ys, Xs = pp.scaled_shape((Y, X), scale)
    if not 0 <= int(start) < T:
        raise ValueError(f"start={start} is outside the movie (frames 0..{T - 1}).")
    valid = pp.valid_frames(T, window, edge)
    todo = [t for t in valid if t >= int(start)]
    net = ckpt.build(dev)
    if hasattr(net, "fuse_batchnorm"):
        net.fuse_batchnorm()
    net_window = getattr(net, "window", window)
    if net_window != window or getattr(net, "in_channels", in_channels) != in_channels:
        raise ValueError(
            f"The checkpoint is inconsistent: meta says window {window} x {in_channels} channel(s), the "
            f"network takes {net_window} x {getattr(net, 'in_channels', '?')}. Re-save it with napari-cellnet."
        )
    if tile is not None and overlap is None:
        need = default_overlap(net, 10**6)
        if int(tile) < 2 * need and int(tile) < max(Ys, Xs):
            raise ValueError(
                f"tile={tile} is too small for this model: its receptive field ({getattr(net, 'receptive_field', '?')} px) "
                f"needs an overlap of {need} px, so tiles should be at least {2 * need} px. Use a larger tile "
                "(e.g. 512 or 1024), or tile=None / --tile 0 to run whole frames."
            )
    if tile is not None and overlap is not None and int(overlap) >= int(tile):
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile}).")
    amp_dtype = _amp_dtype(amp, dev)
    use_cl = _channels_last(channels_last, dev, net)
    prepared = _Prepared(frames, meta)
    state: dict[str, Any] = {"batch": int(batch), "tile": tile}
    info = devices.describe(dev)
    params: dict[str, Any] = {
        "model": ckpt.model,
        "checkpoint": str(ckpt.path) if ckpt.path else None,
        "config": dict(ckpt.config),
        "class_names": list(meta.get("class_names", [])),
        "window": window,
        "in_channels": in_channels,
        "edge": edge,
        "drift": drift,
        "normalization": dict(meta.get("normalization") or {"method": "percentile", "low": 1.0, "high": 99.8}),
        "normalization_values": {"lo": float(prepared.lo), "hi": float(prepared.hi),
                                 "frames_sampled": prepared.stats_frames,
                                 "background_frames": prepared.bg_frames},
        "background_subtraction": bool(meta.get("background_subtraction", False)),
        "threshold": threshold,
        "min_size": min_size,
        "scale": scale,
        "split": split,
        "min_iou": min_iou,
        "channel": channel,
        "axes": axes,
        "shape": [T, C, Y, X],
        "device": info.name,
        "device_description": info.description,
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "float32",
        "channels_last": use_cl,
        "tile": tile,
        "overlap": overlap if overlap is not None else (default_overlap(net, int(tile)) if tile else None),
        "batch": int(batch),
        "package_version": __version__,
        "checkpoint_package_version": ckpt.package_version,
    }

    probs_out = np.zeros((T, Y, X), np.float32) if keep and keep_probabilities else None
    labels_out = np.zeros((T, Y, X), np.int32) if keep else None
    matcher = TimeMatcher(min_iou)
    if previous_labels is not None:
        if tuple(np.shape(previous_labels)) != (Y, X):
            raise ValueError(f"previous_labels has shape {np.shape(previous_labels)}, frames are {(Y, X)}.")
        matcher.resume(previous_labels, next_id)
    feats: dict[str, list[np.ndarray]] = {k: [] for k in ("frame", "label", "area", "centroid_y", "centroid_x")}
    done: list[int] = []
    zero_p = np.zeros((Y, X), np.float32)
    zero_l = np.zeros((Y, X), np.int32)
    next_emit = int(start)  # frames are handed out in order
    stopped = False

    def emit(t: int, p: np.ndarray, lab: np.ndarray) -> None:
        if probs_out is not None:
            probs_out[t] = p
        if labels_out is not None:
            labels_out[t] = lab
        if on_frame is not None:
            on_frame(t, p, lab)

    import scipy.optimize  # noqa: F401  (import post-processing's libraries before the stage clocks run)
    import skimage.measure  # noqa: F401
    import skimage.morphology  # noqa: F401
    import skimage.segmentation  # noqa: F401

    clock = {"read_prepare": 0.0, "network": 0.0, "postprocess": 0.0, "write": 0.0}
    i = 0
    while i < len(todo):
        chunk = todo[i:i + state["batch"]]
        tick = time.perf_counter()
        wins = np.stack([
            pp.make_window(prepared, t, window, edge, drift=drift, indices=pp.window_indices(t, T, window, edge))
            for t in chunk
        ])
        if scale != 1.0:
            wins = pp.resize_image(wins, (Ys, Xs))
        clock["read_prepare"] += time.perf_counter() - tick
        tick = time.perf_counter()
        frame_prog = Progress("frame", len(done), len(todo), f"frame {len(done) + 1} of {len(todo)}")
        job = _predict_iter(net, wins, dev, state.get("tile", tile), overlap, state["batch"], amp_dtype, use_cl,
                            state, parent=frame_prog)
        try:
            while True:
                reply = yield next(job)
                if reply == STOP:
                    stopped = True
                    job.close()
                    break
        except StopIteration as fin:
            probs = fin.value
        if not stopped and scale != 1.0:
            probs = pp.resize_image(probs, (Y, X))  # back to the movie's grid before post-processing
        clock["network"] += time.perf_counter() - tick
        if stopped:
            break
        for t, p in zip(chunk, probs, strict=True):
            while next_emit < t:  # frames skipped under "skip"
                emit(next_emit, zero_p, zero_l)
                next_emit += 1
            tick = time.perf_counter()
            fg = (1.0 - p[0]).astype(np.float32)
            lab = matcher.update(probabilities_to_labels(p, threshold=threshold, min_size=min_size, split=split))
            ids, area, cy, cx = frame_centroids(lab)
            for k, v in zip(("frame", "label", "area", "centroid_y", "centroid_x"),
                            (np.full(len(ids), t, np.int64), ids, area, cy, cx), strict=True):
                feats[k].append(v)
            clock["postprocess"] += time.perf_counter() - tick
            tick = time.perf_counter()
            emit(t, fg, lab)
            clock["write"] += time.perf_counter() - tick
            next_emit = t + 1
            done.append(t)
        prepared.forget_before(min(chunk[-1] + 1, T) - window)
        i += len(chunk)
        reply = yield Progress("frame", len(done), len(todo), f"frame {len(done)} of {len(todo)}")
        if reply == STOP and len(done) < len(todo):
            stopped = True
            break
    if stopped and not stop_keeps:
        raise InterruptedError("Segmentation stopped.")
    if not stopped:
        while next_emit < T:
            emit(next_emit, zero_p, zero_l)
            next_emit += 1
    devices.empty_cache(dev)
    features = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in feats.items()}
    params.update({
        "frames_done": len(done),
        "frames_total": T,
        "skipped_frames": sorted(set(range(T)) - set(valid)),
        "start": int(start),
        "stopped": stopped,
        "seconds": round(time.perf_counter() - t_start, 3),
        "oom_retries": state.get("retries", []),
        "batch_used": state["batch"],
        "stage_seconds": {k: round(v, 3) for k, v in clock.items()},
    })
    return SegmentationResult(
        probabilities=probs_out,
        labels=labels_out,
        tracks=tracks_from_features(features),
        frames_done=done,
        params=params,
        graph=dict(matcher.divisions),
        features=features,
        stopped=stopped,
    )
