"""What a classifier training reports: fold metrics pooled and summarised, the CV table, and
the files written next to the model (``report.json``, ``history.csv``, ``oof_predictions.csv``).

These are the last steps of :func:`~napari_cellnet.classification.training.train_classifier`,
kept public so that a script that trains folds in separate processes
(``scripts/train_classifier_demo.py``) assembles exactly the same report from their
out-of-fold predictions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.classification.data import SampleSet
from napari_cellnet.classification.params import ClassifierTrainConfig
from napari_cellnet.core.io import write_table
from napari_cellnet.core.metrics import classification_report


@dataclass
class ClassifierTrainResult:
    """What a training job returns.

    Attributes
    ----------
    checkpoint : Path or None
        The model to use (``model.pt``), None if stopped before any epoch finished.
    fold_checkpoints : list of Path
    history : list of dict
        One row per epoch per run: ``run`` ("fold1".."refit"), ``epoch``, ``train_loss``,
        ``train_accuracy``, ``lr``, validation metrics when there is a validation split.
    folds : list of dict
        :func:`~napari_cellnet.core.metrics.classification_report` of each finished fold's test part.
    pooled : dict or None
        The report of all out-of-fold predictions together.
    summary : dict
        Mean and sd over folds of accuracy, balanced accuracy, macro F1 and macro AUC;
        timings (``train_seconds``, ``train_images_per_s``, ``infer_images_per_s``).
    oof : dict of ndarray
        ``index``, ``fold``, ``y_true``, ``y_pred``, ``proba`` (N, K) of scored samples.
    stopped : bool
    class_names : list of str
    config : dict
        ``ClassifierTrainConfig.to_dict()`` of the run.
    """

    checkpoint: Path | None
    fold_checkpoints: list[Path]
    history: list[dict[str, Any]]
    folds: list[dict[str, Any]]
    pooled: dict[str, Any] | None
    summary: dict[str, Any]
    oof: dict[str, np.ndarray]
    stopped: bool
    class_names: list[str]
    config: dict[str, Any]


def fold_report(labels: np.ndarray, proba: np.ndarray, class_names: list[str], fold: int) -> dict[str, Any]:
    """:func:`~napari_cellnet.core.metrics.classification_report` of one fold's test part
    (``labels`` shape (N,), ``proba`` shape (N, K)), with its ``fold`` number."""
    rep = classification_report(labels, proba.argmax(1), proba, class_names)
    rep["fold"] = fold
    return rep


def slim_report(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a fold's report stored in its checkpoint (n, accuracies, confusion matrix)."""
    return {k: report[k] for k in ("n", "accuracy", "balanced_accuracy", "confusion_matrix")}


def pool_out_of_fold(samples: SampleSet, index: list[np.ndarray], fold: list[np.ndarray],
                     proba: list[np.ndarray]) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """The report of all folds' test predictions together, and those predictions as columns.

    Parameters
    ----------
    samples : SampleSet
        All samples (the folds' ``index`` point into it).
    index, fold, proba : list of ndarray, one per fold
        Test sample indices (n_f,), the fold number of each (n_f,), probabilities (n_f, K).

    Returns
    -------
    pooled : dict or None
        None when no fold finished.
    oof : dict of ndarray
        ``index``, ``fold``, ``y_true``, ``y_pred``, ``proba`` (empty when no fold finished).
    """
    if not index:
        return None, {}
    idx = np.concatenate(index)
    p = np.concatenate(proba)
    y = samples.labels[idx]
    pooled = classification_report(y, p.argmax(1), p, list(samples.class_names))
    return pooled, {"index": idx, "fold": np.concatenate(fold), "y_true": y, "y_pred": p.argmax(1), "proba": p}


def summarise_folds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd (ddof 1; 0 for one fold) over folds of accuracy, balanced accuracy, macro
    F1 and macro AUC, and ``n_folds``; empty when no fold finished."""
    def stat(values: list[float]) -> dict[str, float]:
        a = np.asarray(values, float)
        return {"mean": float(np.mean(a)), "sd": float(np.std(a, ddof=1)) if a.size > 1 else 0.0}
    if not reports:
        return {}
    return {
        "accuracy": stat([r["accuracy"] for r in reports]),
        "balanced_accuracy": stat([r["balanced_accuracy"] for r in reports]),
        "macro_f1": stat([r["macro"]["f1"] for r in reports]),
        "macro_auc": stat([r["macro"].get("auc", float("nan")) for r in reports]),
        "n_folds": len(reports),
    }


def cv_outcome(summary: dict[str, Any], folds: int, selected_by: str) -> dict[str, Any]:
    """What the shipped model's metadata says about the CV that vouches for it
    (``cv_summary``, ``cv_folds``, ``selected_by``; see :class:`~napari_cellnet.classification.meta.ClassifierMeta`)."""
    return {"cv_summary": {k: v for k, v in summary.items() if k != "class_counts"}, "cv_folds": folds,
            "selected_by": selected_by}


def jsonable(x: Any) -> Any:
    """``x`` with numpy arrays, numbers and paths turned into JSON types (NaN becomes null)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if np.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_outputs(out: Path, cfg: ClassifierTrainConfig, samples: SampleSet, history: list[dict[str, Any]],
                  reports: list[dict[str, Any]], pooled: dict[str, Any] | None, summary: dict[str, Any],
                  oof: dict[str, np.ndarray]) -> None:
    """Write ``report.json`` (atomically), ``history.csv`` and ``oof_predictions.csv`` into ``out``.

    ``oof_predictions.csv`` has the samples' source columns (``path``, or ``frame`` and
    ``label`` ...), ``fold``, ``true_class``, ``predicted_class`` and one ``p_<class>`` per class.
    """
    report = {"config": cfg.to_dict(), "class_names": samples.class_names, "summary": summary,
              "folds": reports, "pooled": pooled}
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(jsonable(report), indent=1))
    os.replace(tmp, out / "report.json")
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))
        write_table(out / "history.csv", {k: [row.get(k, "") for row in history] for k in keys})
    if oof:
        cols: dict[str, Any] = {}
        for name, values in samples.sources.items():
            cols[name] = np.asarray(values)[oof["index"]]
        cols["fold"] = oof["fold"]
        cols["true_class"] = [samples.class_names[i] for i in oof["y_true"]]
        cols["predicted_class"] = [samples.class_names[i] for i in oof["y_pred"]]
        for i, c in enumerate(samples.class_names):
            cols[f"p_{c}"] = oof["proba"][:, i]
        write_table(out / "oof_predictions.csv", cols)


def _metric_row(label: str, n: Any, acc: float, bal: float, f1: float, auc: float) -> str:
    return f"{label:>6} {n:>4} {acc:>9.3f} {bal:>8.3f} {f1:>9.3f} {auc:>10.3f}"


def cv_table(result: ClassifierTrainResult) -> str:
    """The CV result as a plain-text table: one row per fold, then mean, sd and pooled, the
    pooled confusion matrix and the pooled per-class metrics."""
    lines = [f"{'fold':>6} {'n':>4} {'accuracy':>9} {'bal.acc':>8} {'macro F1':>9} {'macro AUC':>10}"]
    for r in result.folds:
        lines.append(_metric_row(str(r["fold"]), r["n"], r["accuracy"], r["balanced_accuracy"], r["macro"]["f1"],
                                 r["macro"].get("auc", float("nan"))))
    s = result.summary
    if result.folds:
        for stat in ("mean", "sd"):
            lines.append(_metric_row(stat, "", s["accuracy"][stat], s["balanced_accuracy"][stat],
                                     s["macro_f1"][stat], s["macro_auc"][stat]))
    if result.pooled:
        p = result.pooled
        lines.append(_metric_row("pooled", p["n"], p["accuracy"], p["balanced_accuracy"], p["macro"]["f1"],
                                 p["macro"].get("auc", float("nan"))))
        lines += ["", *_pooled_lines(p, result.class_names)]
    return "\n".join(lines)


def _pooled_lines(pooled: dict[str, Any], names: list[str]) -> list[str]:
    """The pooled confusion matrix and per-class metrics of :func:`cv_table`."""
    w = max(len(n) for n in names)
    lines = ["pooled confusion matrix (rows: true, columns: predicted)",
             " " * (w + 1) + " ".join(f"{n[:8]:>8}" for n in names)]
    for n, row in zip(names, pooled["confusion_matrix"], strict=True):
        lines.append(f"{n:>{w}} " + " ".join(f"{v:>8}" for v in row))
    lines += ["", f"{'class':>{w}} {'precision':>9} {'recall':>7} {'F1':>6} {'specif.':>8} {'NPV':>6} {'AUC':>6}"]
    for n in names:
        c = pooled["per_class"][n]
        lines.append(f"{n:>{w}} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} "
                     f"{c['specificity']:>8.3f} {c['npv']:>6.3f} {c.get('auc', float('nan')):>6.3f}")
    return lines
