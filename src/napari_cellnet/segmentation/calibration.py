"""Choosing the post-processing a trained model ships with: the foreground threshold and
the minimum object size that maximise CTC SEG on annotated frames.

A network trained with class weights and Dice predicts cells a little larger or smaller
than the annotator drew them; calibration moves every outline to where the annotations
are. Training runs :func:`calibrate_checkpoint` on ``best.pt`` when asked
(``TrainSegParams.calibrate``); the probabilities come from
:func:`~napari_cellnet.segmentation.predict.frame_probabilities`, exactly as inference
computes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellnet.segmentation.data import FrameSample

CALIBRATION_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
CALIBRATION_MIN_SIZES = (0, 10, 20, 30, 50, 100)
CALIBRATION_MAX_FRAMES = 8


def calibrate_postprocessing(
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    thresholds: Sequence[float] = CALIBRATION_THRESHOLDS,
    min_sizes: Sequence[int] = CALIBRATION_MIN_SIZES,
    default: tuple[float, int] = (0.5, 30),
) -> dict[str, Any]:
    """The foreground threshold and minimum object size that maximise CTC SEG on annotated frames.

    A network trained with class weights and Dice predicts cells a little larger or smaller
    than the annotator drew them; the threshold of
    :func:`~napari_cellnet.segmentation.postprocessing.probabilities_to_labels` moves every predicted
    outline in or out, and the minimum size removes specks. Both are chosen here by a grid
    search of SEG, objects pooled over the frames (ties go to the pair nearest ``default``).

    Parameters
    ----------
    probs : sequence of ndarray, each shape (classes, Y, X)
        Softmax probabilities of the frames (as :func:`~napari_cellnet.segmentation.predict.predict_windows` gives).
    labels : sequence of ndarray, each shape (Y, X), int
        Their instance labels.
    thresholds, min_sizes : sequences
        The grid.
    default : (float, int)
        The uncalibrated pair, reported for comparison and preferred on ties.

    Returns
    -------
    dict
        ``threshold``, ``min_size``, ``seg`` (at the chosen pair), ``default_seg`` (at
        ``default``), ``frames`` (how many) and ``grid`` (``[threshold, min_size, seg]`` rows).
    """
    from napari_cellnet.core.metrics import seg_score
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels

    if len(probs) != len(labels) or not len(probs):
        raise ValueError("Calibration needs the probabilities and labels of at least one annotated frame.")
    gts = [np.asarray(g).astype(np.int64) for g in labels]
    pairs = [(float(t), int(m)) for t in thresholds for m in min_sizes]
    if (float(default[0]), int(default[1])) not in pairs:
        pairs.append((float(default[0]), int(default[1])))

    def seg_of(thr: float, ms: int) -> float:
        total, n = 0.0, 0
        for p, g in zip(probs, gts, strict=True):
            k = int(np.count_nonzero(np.unique(g)))
            if k == 0:
                continue
            s = seg_score(g, probabilities_to_labels(p, threshold=thr, min_size=ms))
            total, n = total + s * k, n + k
        return total / n if n else float("nan")

    grid = [[thr, ms, seg_of(thr, ms)] for thr, ms in pairs]
    scored = [r for r in grid if not math.isnan(r[2])]
    if not scored:
        raise ValueError("The calibration frames hold no object; annotate at least one cell.")
    dist = lambda r: abs(r[0] - default[0]) + abs(r[1] - default[1]) / 100.0  # noqa: E731
    best = max(scored, key=lambda r: (round(r[2], 6), -dist(r)))
    base = next(r for r in grid if r[0] == float(default[0]) and r[1] == int(default[1]))
    return {"threshold": float(best[0]), "min_size": int(best[1]), "seg": float(best[2]),
            "default_seg": float(base[2]), "frames": len(probs), "grid": grid}


def calibrate_checkpoint(path: Path, frames: Sequence[FrameSample], device: torch.device,
                         source: str) -> dict[str, Any]:
    """Calibrate a checkpoint's threshold and minimum size on ``frames`` (at most
    :data:`CALIBRATION_MAX_FRAMES`) and re-save it with them and the calibration record.

    Returns
    -------
    dict
        What :func:`calibrate_postprocessing` chose, with ``source`` (which frames).
    """
    from napari_cellnet.segmentation.checkpoints import (
        SegmentationMeta,
        load_segmentation_model,
        save_segmentation_model,
    )
    from napari_cellnet.segmentation.predict import frame_probabilities

    ckpt = load_segmentation_model(path)
    meta = SegmentationMeta.from_checkpoint(ckpt)
    net = ckpt.build(device)
    use = list(frames)[:CALIBRATION_MAX_FRAMES]
    probs = frame_probabilities(net, [s.window for s in use], device, [s.movie_labels.shape for s in use])
    cal = calibrate_postprocessing(probs, [s.movie_labels for s in use], default=(meta.threshold, meta.min_size))
    cal["source"] = source
    save_segmentation_model(path, net, ckpt.config,
                            meta.replace(threshold=cal["threshold"], min_size=cal["min_size"], calibration=cal))
    return cal
