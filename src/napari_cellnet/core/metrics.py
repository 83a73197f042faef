"""Quality measures, numpy only: pixel, instance (Cell Tracking Challenge SEG, AP/F1) and
classification metrics.

Every function takes plain arrays and returns plain floats or dicts, so the CLI, the
training loops, the Evaluate widget and the benchmarks report the same numbers.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# Pixel and instance metrics (segmentation)
# ---------------------------------------------------------------------------

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


def temporal_consistency(labels: np.ndarray) -> dict:
    """How much a label movie flickers from one frame to the next (no ground truth needed).

    Compare a prediction's values with the ground truth's: cells entering, leaving and
    dividing make some change natural, flicker makes much more.

    Parameters
    ----------
    labels : ndarray of int, shape (T, Y, X)
        Labels whose IDs are meant to persist through time.

    Returns
    -------
    dict
        ``mask_change``: mean over consecutive pairs of ``1 - IoU`` of the two foreground
        masks (0 = the same pixels are cells in both frames; two empty frames count 0);
        ``id_churn``: mean over pairs of ``1 - |ids_t & ids_t+1| / |ids_t | ids_t+1|``
        (share of IDs that appear or vanish); ``blinks``: number of (ID, frame) where an ID
        present in the frames before and after is missing; ``pairs``: T - 1;
        ``per_pair``: one dict per pair ``t -> t+1`` with ``t``, ``mask_change``,
        ``id_churn``, ``appeared``, ``disappeared``; ``blinks_per_frame``: list of T ints.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"Expected (T, Y, X) labels, got shape {lab.shape}.")
    T = lab.shape[0]
    ids = [set(np.unique(lab[t]).tolist()) - {0} for t in range(T)]
    per_pair = []
    for t in range(T - 1):
        a, b = lab[t] > 0, lab[t + 1] > 0
        union = int(np.count_nonzero(a | b))
        change = 1.0 - int(np.count_nonzero(a & b)) / union if union else 0.0
        both = ids[t] | ids[t + 1]
        churn = 1.0 - len(ids[t] & ids[t + 1]) / len(both) if both else 0.0
        per_pair.append({"t": t, "mask_change": float(change), "id_churn": float(churn),
                         "appeared": len(ids[t + 1] - ids[t]), "disappeared": len(ids[t] - ids[t + 1])})
    blinks = [0] + [len((ids[t - 1] & ids[t + 1]) - ids[t]) for t in range(1, T - 1)] + ([0] if T > 1 else [])
    blinks = blinks[:T]
    return {
        "mask_change": float(np.mean([p["mask_change"] for p in per_pair])) if per_pair else 0.0,
        "id_churn": float(np.mean([p["id_churn"] for p in per_pair])) if per_pair else 0.0,
        "blinks": int(sum(blinks)),
        "pairs": len(per_pair),
        "per_pair": per_pair,
        "blinks_per_frame": blinks,
    }


# ---------------------------------------------------------------------------
# Classification metrics
# ---------------------------------------------------------------------------


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (N,)
        Class indices ``0 .. n_classes-1``.
    n_classes : int, optional
        Number of classes (default: ``max(y_true, y_pred) + 1``), so that classes absent
        from a fold still get a row and a column.

    Returns
    -------
    ndarray of int64, shape (K, K)
        ``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``
        (rows: truth, columns: prediction, as in scikit-learn).
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}.")
    k = int(max(t.max(initial=-1), p.max(initial=-1)) + 1) if n_classes is None else int(n_classes)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"Class indices must lie in 0..{k - 1}.")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # Undefined ratios (0/0, e.g. precision of a class never predicted) are reported as 0.0,
    # the scikit-learn ``zero_division=0`` convention, so averages stay finite.
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros(np.broadcast(num, den).shape, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples whose predicted class is the true class."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.size == 0:
        raise ValueError("accuracy of an empty set is undefined.")
    return float(np.mean(t == p))


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest counts and rates per class from a confusion matrix.

    Parameters
    ----------
    cm : ndarray, shape (K, K)
        Rows truth, columns prediction (:func:`confusion_matrix`).

    Returns
    -------
    dict of ndarray, each shape (K,)
        ``tp, fp, fn, tn, support``; ``precision`` (= ``ppv``), ``recall`` (=
        ``sensitivity``), ``specificity`` = TN/(TN+FP), ``npv`` = TN/(TN+FN), ``f1``.
        0/0 gives 0.0.
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn, "support": tp + fn,
        "precision": precision, "ppv": precision,
        "recall": recall, "sensitivity": recall,
        "specificity": _safe_div(tn, tn + fp),
        "npv": _safe_div(tn, tn + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
    }


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Mean recall over the classes present in ``y_true`` (robust to class imbalance)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    present = cm.sum(axis=1) > 0
    if not present.any():
        raise ValueError("balanced accuracy of an empty set is undefined.")
    return float(per_class_metrics(cm)["recall"][present].mean())


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic of a binary problem.

    Tied scores are one threshold (one step of the curve, possibly diagonal), so the curve
    does not depend on the order of tied samples.

    Parameters
    ----------
    y_true : ndarray of bool or {0, 1}, shape (N,)
        True when the sample belongs to the positive class.
    score : ndarray of float, shape (N,)
        Higher means more likely positive (e.g. the class probability).

    Returns
    -------
    fpr, tpr : ndarray, shape (M + 1,)
        False and true positive rates, starting at (0, 0) and ending at (1, 1).
    thresholds : ndarray, shape (M + 1,)
        Sample is called positive when ``score >= threshold``; the first is ``+inf``.

    Raises
    ------
    ValueError
        When only one class is present (the curve is undefined).
    """
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(score, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores.")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs both positive and negative samples; this class has only one kind.")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule (``x`` must be monotonic)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    dx = np.diff(x)
    if np.any(dx < 0) and np.any(dx > 0):
        raise ValueError("auc needs monotonic x values.")
    return float(abs(np.sum(dx * (y[1:] + y[:-1]) / 2)))


def roc_auc_ovr(y_true: np.ndarray, proba: np.ndarray) -> dict[str, object]:
    """One-vs-rest ROC curves and AUC of every class, with macro and weighted means.

    Parameters
    ----------
    y_true : ndarray of int, shape (N,)
    proba : ndarray of float, shape (N, K)
        Class probabilities (or any per-class scores).

    Returns
    -------
    dict
        ``auc`` : ndarray (K,) (NaN for a class absent from ``y_true`` or present alone),
        ``curves`` : list of ``(fpr, tpr, thresholds)`` or None, ``macro_auc`` and
        ``weighted_auc`` over the classes with a defined AUC.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    pr = np.asarray(proba, dtype=float)
    if pr.ndim != 2 or pr.shape[0] != t.size:
        raise ValueError(f"proba must have shape (N={t.size}, K), got {pr.shape}.")
    k = pr.shape[1]
    aucs = np.full(k, np.nan)
    curves: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for c in range(k):
        pos = t == c
        if pos.all() or not pos.any():
            curves.append(None)
            continue
        fpr, tpr, thr = roc_curve(pos, pr[:, c])
        curves.append((fpr, tpr, thr))
        aucs[c] = auc(fpr, tpr)
    ok = ~np.isnan(aucs)
    support = np.bincount(t, minlength=k)[:k].astype(float)
    macro = float(aucs[ok].mean()) if ok.any() else float("nan")
    weighted = float(np.average(aucs[ok], weights=support[ok])) if ok.any() and support[ok].sum() else float("nan")
    return {"auc": aucs, "curves": curves, "macro_auc": macro, "weighted_auc": weighted}


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> dict[str, object]:
    """Every classification measure of one evaluation, as plain Python values (JSON-ready).

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (N,)
    proba : ndarray, shape (N, K), optional
        Class probabilities; adds one-vs-rest ROC AUC per class, macro and weighted.
    class_names : list of str, optional
        Names of the K classes (default ``"0" .. "K-1"``).

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``balanced_accuracy``, ``confusion_matrix`` (list of lists,
        rows truth), ``per_class`` ({name: {precision, recall, f1, sensitivity,
        specificity, ppv, npv, support, auc}}), ``macro`` and ``weighted`` averages of
        precision/recall/f1/specificity/npv (and auc), ``class_names``.
    """
    if class_names is not None:
        k = len(class_names)
    elif proba is not None:
        k = np.asarray(proba).shape[1]
    else:
        k = None
    cm = confusion_matrix(y_true, y_pred, k)
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    pc = per_class_metrics(cm)
    support = pc["support"].astype(float)
    keys = ("precision", "recall", "f1", "sensitivity", "specificity", "ppv", "npv")
    aucs = roc_auc_ovr(y_true, proba) if proba is not None else None
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        row = {key: float(pc[key][i]) for key in keys}
        row["support"] = int(pc["support"][i])
        if aucs is not None:
            row["auc"] = float(aucs["auc"][i])  # type: ignore[index]
        per_class[name] = row
    macro = {key: float(pc[key].mean()) for key in keys}
    weighted = {key: float(np.average(pc[key], weights=support)) if support.sum() else 0.0 for key in keys}
    if aucs is not None:
        macro["auc"] = float(aucs["macro_auc"])  # type: ignore[arg-type]
        weighted["auc"] = float(aucs["weighted_auc"])  # type: ignore[arg-type]
    return {
        "n": int(cm.sum()),
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, k),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "macro": macro,
        "weighted": weighted,
        "class_names": names,
    }
