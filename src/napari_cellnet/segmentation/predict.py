"""The network on stacked windows: batches, tiles blended back into whole frames, mixed
precision and out-of-memory retries.

Shared by inference (:func:`napari_cellnet.segmentation.inference.segment`, which streams
tile progress through :func:`predict`), validation and calibration
(:func:`frame_probabilities`), and the benchmarks (:func:`predict_windows`). The tiling
arithmetic is numpy (:mod:`napari_cellnet.segmentation.tiling`); this module is where
torch runs.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_cellnet.core import device as devices
from napari_cellnet.core.jobs import Progress
from napari_cellnet.segmentation.preprocessing import resize_image
from napari_cellnet.segmentation.tiling import blend_weights, pad_to_multiple, tile_grid

log = logging.getLogger(__name__)

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class NetworkRun:
    """How the network is run; an out-of-memory retry shrinks ``batch``, then ``tile``, and says so.

    Attributes
    ----------
    device : torch.device
    precision : torch.dtype or None
        Autocast dtype on CUDA; None runs float32.
    channels_last : bool
        Memory format of the inputs (the network is converted by :func:`use_channels_last`).
    batch : int
        Windows (or tiles) per forward pass.
    tile : int or None
        Tile size in pixels; None runs whole frames.
    overlap : int or None
        Tile overlap; None covers the receptive field (:func:`default_overlap`).
    retries : list of str
        One message per out-of-memory retry.
    """

    device: torch.device
    precision: torch.dtype | None = None
    channels_last: bool = False
    batch: int = 1
    tile: int | None = None
    overlap: int | None = None
    retries: list[str] = field(default_factory=list)


def precision_dtype(precision: str | None, dev: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` ("auto", "bf16", "fp16", "fp32"/None) on ``dev`` (None off CUDA)."""
    if dev.type != "cuda" or precision in (None, "none", "fp32", False):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}. Use 'auto', 'bf16', 'fp16' or 'fp32'.")
    return PRECISIONS[precision]  # type: ignore[index]


def use_channels_last(flag: bool | None, dev: torch.device, net: Any) -> bool:
    """Whether to run channels-last (default on for CUDA and the CPU); converts ``net`` if so."""
    # channels_last is faster for oneDNN on the CPU too (1.3-2x in benchmarks/bench_segment.py)
    use = dev.type in ("cuda", "cpu") if flag is None else bool(flag)
    if use:
        net.to(memory_format=torch.channels_last)
    return use


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


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def _forward(net: Any, x: np.ndarray, run: NetworkRun) -> np.ndarray:
    """Softmax probabilities ``(B, classes, Y, X)`` of one batch."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(run.device, non_blocking=True)
    if run.channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        if run.precision is not None and run.device.type == "cuda":
            with torch.autocast("cuda", dtype=run.precision):
                logits = net(t)
        else:
            logits = net(t)
        prob = torch.softmax(logits.float(), dim=1)
    return prob.cpu().numpy()


def _whole_frames(net: Any, xp: np.ndarray, run: NetworkRun,
                  parent: Progress | None) -> Generator[Progress, Any, np.ndarray]:
    out = [_forward(net, xp[i:i + run.batch], run) for i in range(0, len(xp), run.batch)]
    if parent is not None:
        yield Progress("tile", 1, 1, parent=parent)
    return np.concatenate(out)


def _tiles(net: Any, xp: np.ndarray, run: NetworkRun, tile: int,
           parent: Progress | None) -> Generator[Progress, Any, np.ndarray]:
    """Overlapping tiles of every window, blended (``sum(w * p) / sum(w)``) into whole frames."""
    B, _, Hp, Wp = xp.shape
    div = int(getattr(net, "size_divisor", 1))
    ov = default_overlap(net, tile) if run.overlap is None else int(run.overlap)
    margin = min(receptive_margin(net), max(ov // 2 - 1, 0))
    ramp = max(ov - 2 * margin, 0)
    grid = tile_grid((Hp, Wp), tile, ov, div)
    acc: np.ndarray | None = None
    wsum = np.zeros((Hp, Wp), np.float32)
    jobs = [(b, sl) for sl in grid for b in range(B)]
    for j in range(0, len(jobs), run.batch):
        chunk = jobs[j:j + run.batch]
        pb = _forward(net, np.stack([xp[b][(slice(None), sl[0], sl[1])] for b, sl in chunk]), run)
        if acc is None:
            acc = np.zeros((B, pb.shape[1], Hp, Wp), np.float32)
        for (b, sl), p in zip(chunk, pb, strict=True):
            w = blend_weights(p.shape[-2:], sl, (Hp, Wp), margin, ramp)
            acc[b][(slice(None), sl[0], sl[1])] += p * w
            if b == 0:
                wsum[sl] += w
        if parent is not None:
            k = j + len(chunk)
            yield Progress("tile", k, len(jobs), f"tile {k} of {len(jobs)} ({len(grid)} per frame)", parent=parent)
    assert acc is not None
    return acc / np.maximum(wsum, 1e-12)[None, None]


def _shrink_after_oom(err: RuntimeError, run: NetworkRun, tile: int, div: int) -> int:
    """Halve the batch, else the tile, after CUDA ran out of memory; the tile to use next."""
    if run.device.type != "cuda" or not _is_oom(err):
        raise err
    devices.empty_cache(run.device)
    if run.batch > 1:
        run.batch = max(1, run.batch // 2)
        msg = f"CUDA out of memory: retrying with batch {run.batch}"
    elif tile > 2 * div and tile > 128:
        tile = max(128, (tile // 2) // div * div)
        msg = f"CUDA out of memory: retrying with tiles of {tile} px"
    else:
        raise RuntimeError(
            "CUDA ran out of memory even with batch 1 and small tiles. Close other GPU programs "
            "or use device 'cpu'."
        ) from err
    log.warning(msg)
    run.retries.append(msg)
    run.tile = tile
    return tile


def predict(net: Any, windows: np.ndarray, run: NetworkRun,
            parent: Progress | None = None) -> Generator[Progress, Any, np.ndarray]:
    """Probabilities of a batch of windows; a generator that yields tile progress (under
    ``parent``) and returns ``(B, classes, Y, X)`` float32. OOM-safe on CUDA (``run`` shrinks).

    Parameters
    ----------
    net : torch.nn.Module
        In eval mode, on ``run.device``.
    windows : ndarray, float32, shape (B, window * C, Y, X)
    run : NetworkRun
    parent : Progress, optional
        The frame event tile events nest under; None yields nothing.
    """
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"Expected windows of shape (B, window*C, Y, X), got {x.shape}.")
    H, W = x.shape[-2:]
    div = int(getattr(net, "size_divisor", 1))
    xp, _ = pad_to_multiple(x, div)
    Hp, Wp = xp.shape[-2:]
    tile = max(Hp, Wp) if run.tile is None else max(int(run.tile), div)
    tile = -(-tile // div) * div
    while True:
        try:
            if tile >= Hp and tile >= Wp:
                probs = yield from _whole_frames(net, xp, run, parent)
            else:
                probs = yield from _tiles(net, xp, run, tile, parent)
            return probs[:, :, :H, :W].astype(np.float32, copy=False)
        except RuntimeError as err:
            tile = _shrink_after_oom(err, run, tile, div)
            if parent is not None:
                yield Progress("tile", 0, 1, run.retries[-1], parent=parent)


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
    """Softmax probabilities of a network on stacked windows (validation and benchmarks use this).

    Parameters
    ----------
    net : torch.nn.Module
        In eval mode, on ``device``.
    windows : ndarray, float32, shape (B, window * C, Y, X)
        Already normalised windows (:func:`napari_cellnet.segmentation.windows.frame_window`).
    device : str or torch.device
    tile : int, optional
        Tile size; None runs whole frames.
    overlap : int, optional
        Tile overlap; default covers the receptive field (tiled == untiled).
    batch : int
        Windows (or tiles) per forward pass.
    amp : {"auto", "bf16", "fp16", "fp32", None}
        Mixed precision on CUDA ("auto": bf16 where supported, else fp16; None or "fp32":
        none); ignored on the CPU.
    channels_last : bool, optional
        Default on for CUDA and the CPU (measured faster on both, see docs/performance.md).

    Returns
    -------
    ndarray, float32, shape (B, classes, Y, X)
    """
    dev = devices.resolve(device) if isinstance(device, str) else device
    run = NetworkRun(dev, precision_dtype(amp, dev), use_channels_last(channels_last, dev, net),
                     max(1, int(batch)), tile, overlap)
    job = predict(net, windows, run)
    try:
        while True:
            next(job)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if run.channels_last:  # leave the caller's network (e.g. one being trained) as it was
            net.to(memory_format=torch.contiguous_format)


def frame_probabilities(net: Any, windows: Sequence[np.ndarray], device: torch.device,
                        shapes: Sequence[tuple[int, ...]] | None = None) -> list[np.ndarray]:
    """Softmax probabilities ``(classes, Y, X)`` of whole frames, exactly as inference computes them.

    Validation and calibration score these. Windows of one shape are run together.

    Parameters
    ----------
    net : torch.nn.Module
    windows : sequence of ndarray, each shape (window * C, Y', X')
    device : torch.device
    shapes : sequence of tuple, optional
        The movie's ``(Y, X)`` per window when the windows were rescaled: the probabilities
        are resampled back to them, as :func:`~napari_cellnet.segmentation.inference.segment` does.

    Returns
    -------
    list of ndarray, float32, each shape (classes, Y, X)
    """
    net.eval()
    out: list[np.ndarray | None] = [None] * len(windows)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(tuple(w.shape), []).append(i)
    for idx in groups.values():
        prob = predict_windows(net, np.stack([windows[i] for i in idx]), device, batch=2, amp=None)
        for i, p in zip(idx, prob, strict=True):
            out[i] = np.asarray(p) if shapes is None else resize_image(p, shapes[i][-2:])
    return out  # type: ignore[return-value]
