"""StemNet's pixel metrics of a binary mask against the ground truth.

Error rate, precision, recall, F1/Dice, IoU, false white and WP accuracy, all from one set
of pixel counts, so the numbers agree with each other and with the papers' tables.
"""

from __future__ import annotations

import numpy as np

PIXEL_KEYS = ("error_rate", "accuracy", "precision", "recall", "f1", "dice", "iou",
              "false_white", "false_white_rate", "wp_accuracy")


def _ratio(num: float, den: float, both_empty: bool) -> float:
    # A ratio with nothing to count is perfect when both masks are empty, else 0.
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num) / float(den)


def _pixel_counts(pred_mask: np.ndarray, gt_mask: np.ndarray) -> tuple[int, int, int, int]:
    p = np.asarray(pred_mask) > 0
    g = np.asarray(gt_mask) > 0
    if p.shape != g.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from ground truth shape {g.shape}.")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    tn = int(p.size - tp - fp - fn)
    return tp, fp, fn, tn


def _pixel_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    n = tp + fp + fn + tn
    empty = tp + fp + fn == 0
    return {
        "error_rate": (fp + fn) / n if n else 0.0,
        "accuracy": (tp + tn) / n if n else 1.0,
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "iou": _ratio(tp, tp + fp + fn, empty),
        "false_white": float(fp),
        "false_white_rate": fp / n if n else 0.0,
        "wp_accuracy": _ratio(tp, tp + fn, empty),
        "tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn),
    }


def pixel_metrics(pred_mask: np.ndarray, gt_mask: np.ndarray) -> dict[str, float]:
    """StemNet's pixel metrics of a binary prediction (any non-zero pixel is "cell").

    Parameters
    ----------
    pred_mask, gt_mask : ndarray, shape (Y, X) or (T, Y, X)
        Masks or label images; for a stack the counts are pooled over all frames.

    Returns
    -------
    dict
        ``error_rate`` (share of pixels wrong), ``accuracy``, ``precision``, ``recall``,
        ``f1``, ``dice`` (equal to ``f1`` for binary masks), ``iou``, ``false_white``
        (number of pixels wrongly called cell), ``false_white_rate`` (that as a share of
        all pixels), ``wp_accuracy`` (share of cell pixels found, = recall) and the
        counts ``tp``, ``fp``, ``fn``, ``tn``. A ratio whose denominator is 0 is 1.0 when
        both masks are empty and 0.0 otherwise.
    """
    return _pixel_from_counts(*_pixel_counts(pred_mask, gt_mask))


def pixel_metrics_per_frame(pred_mask: np.ndarray, gt_mask: np.ndarray) -> list[dict[str, float]]:
    """:func:`pixel_metrics` of every frame of ``(T, Y, X)`` stacks."""
    p, g = np.asarray(pred_mask), np.asarray(gt_mask)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"Expected two (T, Y, X) stacks of the same shape, got {p.shape} and {g.shape}.")
    return [pixel_metrics(p[t], g[t]) for t in range(p.shape[0])]
