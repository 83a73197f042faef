"""Classification quality: confusion matrix, per-class sensitivity/specificity/PPV/NPV,
ROC curves and AUC, and :func:`classification_report`, which gathers them.

Conventions follow scikit-learn (rows of the confusion matrix are the truth, 0/0 is 0.0)
so the numbers can be checked against it without depending on it.
"""

from __future__ import annotations

import numpy as np


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
