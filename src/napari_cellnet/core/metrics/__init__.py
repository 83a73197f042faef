"""Quality measures, numpy only: pixel, instance (Cell Tracking Challenge SEG, AP/F1),
temporal and classification metrics.

Every function takes plain arrays and returns plain floats or dicts, so the CLI, the
training loops, the Evaluate widget and the benchmarks report the same numbers. The names
are re-exported here from :mod:`.pixel`, :mod:`.instance` (with
:func:`segmentation_report`), :mod:`.temporal` and :mod:`.classification`.
"""

from __future__ import annotations

from napari_cellnet.core.metrics.classification import (
    accuracy,
    auc,
    balanced_accuracy,
    classification_report,
    confusion_matrix,
    per_class_metrics,
    roc_auc_ovr,
    roc_curve,
)
from napari_cellnet.core.metrics.instance import instance_metrics, seg_score, segmentation_report
from napari_cellnet.core.metrics.pixel import PIXEL_KEYS, pixel_metrics, pixel_metrics_per_frame
from napari_cellnet.core.metrics.temporal import temporal_consistency

__all__ = [
    "PIXEL_KEYS",
    "accuracy",
    "auc",
    "balanced_accuracy",
    "classification_report",
    "confusion_matrix",
    "instance_metrics",
    "per_class_metrics",
    "pixel_metrics",
    "pixel_metrics_per_frame",
    "roc_auc_ovr",
    "roc_curve",
    "seg_score",
    "segmentation_report",
    "temporal_consistency",
]
