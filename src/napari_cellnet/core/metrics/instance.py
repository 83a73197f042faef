"""Object-level segmentation quality: Cell Tracking Challenge SEG, matched AP/F1, and the
report that gathers every segmentation metric of a stack.

Objects are compared through one overlap matrix per frame; :func:`segmentation_report` is
what training validation, the CLI and the Evaluate widget all call.
"""

from __future__ import annotations

import numpy as np

from napari_cellnet.core.metrics.pixel import _ratio, pixel_metrics


def _overlaps(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap counts between objects: (matrix (n_gt+1, n_pred+1), gt sizes, pred sizes); row/col 0 = background."""
    from skimage.segmentation import relabel_sequential

    g = np.asarray(gt)
    p = np.asarray(pred)
    if g.shape != p.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from ground truth shape {g.shape}.")
    if g.dtype.kind not in "iu" or p.dtype.kind not in "iu":
        raise ValueError("Instance metrics need integer label images (0 = background); got "
                         f"{g.dtype} and {p.dtype}. Label masks first (skimage.measure.label).")
    g = relabel_sequential(g.astype(np.int64, copy=False))[0]
    p = relabel_sequential(p.astype(np.int64, copy=False))[0]
    ng, npred = int(g.max(initial=0)), int(p.max(initial=0))
    m = np.bincount((g * (npred + 1) + p).ravel(), minlength=(ng + 1) * (npred + 1)).reshape(ng + 1, npred + 1)
    return m, m.sum(axis=1), m.sum(axis=0)


def _seg_parts(gt_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[float, int]:
    m, gsize, psize = _overlaps(gt_labels, pred_labels)
    if m.shape[0] == 1:
        return 0.0, 0
    inter = m[1:, 1:]
    if inter.shape[1] == 0:
        return 0.0, m.shape[0] - 1
    best = inter.argmax(axis=1)
    rows = np.arange(inter.shape[0])
    i = inter[rows, best].astype(np.float64)
    union = gsize[1:] + psize[1:][best] - i
    ok = i > 0.5 * gsize[1:]
    return float(np.where(ok, i / union, 0.0).sum()), int(inter.shape[0])


def seg_score(gt_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Cell Tracking Challenge SEG: mean Jaccard index of each ground-truth object with
    the predicted object that covers more than half of it (0 when none does).

    Parameters
    ----------
    gt_labels, pred_labels : ndarray of int, shape (Y, X) or (T, Y, X)
        Label images (0 = background). For a stack each frame's objects are separate
        and the mean is over all ground-truth objects of all frames.

    Returns
    -------
    float
        In [0, 1]; NaN when the ground truth has no object (SEG is undefined).
    """
    g, p = np.asarray(gt_labels), np.asarray(pred_labels)
    frames = [(g, p)] if g.ndim == 2 else [(g[t], p[t]) for t in range(g.shape[0])]
    total, n = 0.0, 0
    for gf, pf in frames:
        s, k = _seg_parts(gf, pf)
        total += s
        n += k
    return total / n if n else float("nan")


def _match_counts(gt: np.ndarray, pred: np.ndarray, iou_threshold: float) -> tuple[int, int, int, float]:
    from scipy.optimize import linear_sum_assignment

    m, gsize, psize = _overlaps(gt, pred)
    ng, npred = m.shape[0] - 1, m.shape[1] - 1
    if ng == 0 or npred == 0:
        return 0, npred, ng, 0.0
    inter = m[1:, 1:].astype(np.float64)
    iou = inter / (gsize[1:, None] + psize[None, 1:] - inter)
    rows, cols = linear_sum_assignment(-iou)
    good = iou[rows, cols] >= iou_threshold
    tp = int(good.sum())
    return tp, npred - tp, ng - tp, float(iou[rows, cols][good].sum())


def instance_metrics(gt_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object detection quality at an IoU threshold (one-to-one Hungarian matching).

    Parameters
    ----------
    gt_labels, pred_labels : ndarray of int, shape (Y, X) or (T, Y, X)
        Label images; stacks are pooled over frames (each frame matched separately).
    iou_threshold : float
        A matched pair counts as a true positive when its IoU is at least this.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``precision`` = tp/(tp+fp), ``recall`` = tp/(tp+fn),
        ``f1`` = 2tp/(2tp+fp+fn), ``ap`` = tp/(tp+fp+fn) (the "average precision" at one
        threshold used by StarDist and cellpose) and ``mean_matched_iou``. Ratios with a
        zero denominator are 1.0 when both images are empty, else 0.0.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
    g, p = np.asarray(gt_labels), np.asarray(pred_labels)
    frames = [(g, p)] if g.ndim == 2 else [(g[t], p[t]) for t in range(g.shape[0])]
    tp = fp = fn = 0
    iou_sum = 0.0
    for gf, pf in frames:
        a, b, c, s = _match_counts(gf, pf, iou_threshold)
        tp, fp, fn, iou_sum = tp + a, fp + b, fn + c, iou_sum + s
    empty = tp + fp + fn == 0
    return {
        "tp": float(tp), "fp": float(fp), "fn": float(fn),
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "ap": _ratio(tp, tp + fp + fn, empty),
        "mean_matched_iou": iou_sum / tp if tp else 0.0,
    }


def _frame_report(pred: np.ndarray, gt: np.ndarray, iou_threshold: float) -> dict[str, float]:
    out = pixel_metrics(pred, gt)
    out["seg"] = seg_score(gt, pred)
    inst = instance_metrics(gt, pred, iou_threshold)
    out["ap"] = inst["ap"]
    for k in ("f1", "precision", "recall", "tp", "fp", "fn", "mean_matched_iou"):
        out[f"instance_{k}"] = inst[k]
    return out


def segmentation_report(pred_labels: np.ndarray, gt_labels: np.ndarray, iou_threshold: float = 0.5) -> dict:
    """Every segmentation metric, overall and per frame (training validation and Evaluate use this).

    Parameters
    ----------
    pred_labels, gt_labels : ndarray of int, shape (Y, X) or (T, Y, X)
        Label images (a binary mask is a label image with one object per component
        only after labelling; pixel metrics use ``> 0`` either way).
    iou_threshold : float
        For ``ap`` and the ``instance_*`` keys.

    Returns
    -------
    dict
        Flat float keys for the whole stack (pixel counts and object matches pooled over
        frames): the keys of :func:`pixel_metrics`, ``seg``, ``ap``, ``instance_f1``,
        ``instance_precision``, ``instance_recall``, ``instance_tp/fp/fn``,
        ``instance_mean_matched_iou``; plus ``frames`` (T) and ``per_frame``, a list of
        the same flat dicts for every frame.
    """
    p, g = np.asarray(pred_labels), np.asarray(gt_labels)
    if p.shape != g.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from ground truth shape {g.shape}; "
                         "compare the same frames at the same size.")
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3:
        raise ValueError(f"Expected (Y, X) or (T, Y, X) label images, got {p.ndim} dimensions.")
    report: dict = _frame_report(p, g, iou_threshold)
    report["frames"] = int(p.shape[0])
    report["per_frame"] = [_frame_report(p[t], g[t], iou_threshold) for t in range(p.shape[0])]
    return report
