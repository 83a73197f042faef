"""The Evaluate widget: how good is a segmentation (or a classification), frame by frame?

Two comparisons, both computed by :mod:`napari_cellnet.core.metrics` (the same functions the
training validation and the CLI use, so the numbers agree everywhere):

* **Segmentation**: a prediction Labels layer against a ground-truth Labels layer of the
  same movie: pixel metrics (error rate, precision, recall, F1/Dice, IoU, StemNet's false
  white and white-pixel accuracy), the Cell Tracking Challenge SEG score, instance AP/F1 at
  an IoU threshold, per frame and overall, and the label flicker between consecutive
  frames (:func:`~napari_cellnet.core.metrics.temporal_consistency`) of both layers.
  With sparse ground truth only the annotated frames are scored.
* **Classes**: a predicted class column against an annotated class column of a layer's
  ``features`` (what the Classify widget writes): accuracy, per-class precision/recall/F1,
  and a confusion-matrix plot.

The segmentation settings are a :class:`~napari_cellnet.widgets._params.ParamsForm` of
:class:`~napari_cellnet.segmentation.params.EvaluateParams` (``widget.form``), the object
``napari-cellnet evaluate``'s flags and ``--params`` build. The table can be copied (tab-separated, pastes into a spreadsheet) or saved as CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Table
from napari.utils.notifications import show_error, show_info

from napari_cellnet.core.jobs import Progress
from napari_cellnet.segmentation.params import EvaluateParams
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._jobs import JobRunner
from napari_cellnet.widgets._params import ParamsForm
from napari_cellnet.widgets._plot import ConfusionPlot

SEG_COLUMNS = ("seg", "ap", "instance_f1", "instance_precision", "instance_recall", "instance_tp",
               "instance_fp", "instance_fn", "f1", "precision", "recall", "iou", "error_rate", "accuracy",
               "false_white", "wp_accuracy", "mask_change", "id_churn", "gt_mask_change", "gt_id_churn")


def _rows_with_labels(gt: np.ndarray) -> list[int]:
    return [t for t in range(gt.shape[0]) if np.any(gt[t])]


def segmentation_job(pred: np.ndarray, gt: np.ndarray, iou_threshold: float, annotated_only: bool) -> Any:
    """Score ``pred`` against ``gt`` (a job generator: one step per stage, returns the table)."""
    from napari_cellnet.core import metrics

    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    frames = _rows_with_labels(gt) if annotated_only else list(range(gt.shape[0]))
    if not frames:
        raise ValueError("The ground-truth layer has no labelled pixel. Annotate some cells (or pick another "
                         "layer) before evaluating.")
    yield Progress("metrics", 0, 3, "scoring frames")
    report = metrics.segmentation_report(pred[frames], gt[frames], iou_threshold)
    yield Progress("metrics", 1, 3, "label flicker (prediction)")
    flick_p = metrics.temporal_consistency(pred)
    yield Progress("metrics", 2, 3, "label flicker (ground truth)")
    flick_g = metrics.temporal_consistency(gt) if not annotated_only or len(frames) == gt.shape[0] else None
    rows: dict[str, list[Any]] = {"frame": []}
    for key in SEG_COLUMNS:
        rows[key] = []

    def add(name: Any, values: dict[str, Any], flick: dict[str, Any] | None, gflick: dict[str, Any] | None) -> None:
        rows["frame"].append(name)
        for key in SEG_COLUMNS:
            if key in ("mask_change", "id_churn"):
                v = flick.get(key) if flick else None
            elif key.startswith("gt_"):
                v = gflick.get(key[3:]) if gflick else None
            else:
                v = values.get(key)
            rows[key].append(np.nan if v is None else float(v))

    add("all", report, flick_p, flick_g)
    for t, per in zip(frames, report["per_frame"], strict=True):
        pair_p = flick_p["per_pair"][t - 1] if t >= 1 else None
        pair_g = flick_g["per_pair"][t - 1] if (flick_g and t >= 1) else None
        add(t, per, pair_p, pair_g)
    return {"kind": "segmentation", "rows": rows, "report": report, "flicker": flick_p, "gt_flicker": flick_g,
            "frames": frames}


def classification_job(pred: list[Any], true: list[Any]) -> Any:
    """Score predicted against annotated classes (rows with both set); returns the table."""
    from napari_cellnet.core import metrics

    pairs = [(str(p), str(t)) for p, t in zip(pred, true, strict=True)
             if str(p) not in ("", "nan", "None") and str(t) not in ("", "nan", "None")]
    if not pairs:
        raise ValueError("No object has both a predicted and an annotated class. Run Classify, then annotate "
                         "classes (Classify widget: pick a class and click objects) before evaluating.")
    yield Progress("metrics", 0, 1, "scoring classes")
    names = sorted({t for _, t in pairs} | {p for p, _ in pairs})
    index = {c: i for i, c in enumerate(names)}
    y_pred = np.asarray([index[p] for p, _ in pairs])
    y_true = np.asarray([index[t] for _, t in pairs])
    report = metrics.classification_report(y_true, y_pred, class_names=names)
    rows: dict[str, list[Any]] = {"class": [], "precision": [], "recall": [], "f1": [], "specificity": [],
                                  "support": []}
    for name in names:
        pc = report["per_class"][name]
        rows["class"].append(name)
        for key in ("precision", "recall", "f1", "specificity"):
            rows[key].append(float(pc[key]))
        rows["support"].append(int(pc["support"]))
    for avg in ("macro", "weighted"):
        rows["class"].append(f"{avg} average")
        for key in ("precision", "recall", "f1", "specificity"):
            rows[key].append(float(report[avg][key]))
        rows["support"].append(int(report["n"]))
    rows["class"].append("accuracy")
    rows["precision"].append(float(report["accuracy"]))
    for key in ("recall", "f1", "specificity"):
        rows[key].append(np.nan)
    rows["support"].append(int(report["n"]))
    return {"kind": "classes", "rows": rows, "report": report}


def _feature_columns(layer: Any) -> list[str]:
    feats = getattr(layer, "features", None)
    if feats is None or not len(getattr(feats, "columns", [])):
        return []
    return [str(c) for c in feats.columns]


class EvaluateWidget(common.JobWidget, Container):
    """Compare a prediction with ground truth (segmentation) or annotated classes (dock widget)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.result: dict[str, Any] | None = None
        self._closed = False
        self._iou = EvaluateParams().iou
        self.mode = ComboBox(label="compare", choices=["segmentation", "classes"], value="segmentation")
        self.prediction = common.layer_picker(self.viewer, "Labels", "prediction")
        self.ground_truth = common.layer_picker(self.viewer, "Labels", "ground truth")
        self.annotated_only = ComboBox(label="frames", choices=["annotated frames only", "all frames"],
                                       value="annotated frames only")
        self.class_layer = common.layer_picker(self.viewer, "Labels", "objects layer",
                                               extra=lambda layer: len(_feature_columns(layer)) > 0)
        self.pred_column = ComboBox(label="predicted column", choices=self._columns)
        self.true_column = ComboBox(label="annotated column", choices=self._columns)
        inputs = Container(widgets=[self.mode, self.prediction, self.ground_truth, self.annotated_only,
                                    self.class_layer, self.pred_column, self.true_column], labels=True)
        inputs.margins = (0, 0, 0, 0)
        #: The segmentation comparison's settings (EvaluateParams, as ``napari-cellnet evaluate``'s flags).
        self.form = ParamsForm(EvaluateParams)
        self.form.margins = (0, 0, 0, 0)
        self.run_button = PushButton(text="Evaluate")
        self.copy_button = PushButton(text="Copy table", enabled=False)
        self.save_button = PushButton(text="Save CSV…", enabled=False)
        buttons = common.button_row(self.run_button, self.copy_button, self.save_button)
        self.status = common.note("")
        self.table = Table(value=None)
        self.table.read_only = True
        self.table.min_height = 180
        self.plot = ConfusionPlot()
        self.extend([inputs, self.form, buttons, self.status, self.table])
        self.native.layout().addWidget(self.plot)

        self.runner = JobRunner("Evaluate", self._show, on_state=self._set_running)
        self.mode.changed.connect(self._on_mode)
        self.class_layer.changed.connect(self._on_class_layer)
        self.run_button.changed.connect(self.run)
        self.copy_button.changed.connect(self.copy)
        self.save_button.changed.connect(lambda: self.save_csv())
        self.native.destroyed.connect(self._on_destroyed)
        self._guess_layers()
        self._on_mode()

    @property
    def busy(self) -> bool:
        return self.runner.running

    # ------------------------------------------------------------------ inputs
    def _columns(self, widget: Any = None) -> list[str]:
        layer = self.class_layer.value if hasattr(self, "class_layer") else None
        return _feature_columns(layer) if layer is not None else []

    def _on_class_layer(self, value: Any = None) -> None:
        self.pred_column.reset_choices()
        self.true_column.reset_choices()
        cols = self.pred_column.choices
        for name in ("class", "track_class"):
            if name in cols:
                self.pred_column.value = name
                break
        for name in ("annotated_class", "true_class"):
            if name in cols:
                self.true_column.value = name
                break

    def _guess_layers(self) -> None:
        """Pick a prediction (a Segment output) and a ground truth (another Labels layer)."""
        labels = [layer for layer in self.viewer.layers if type(layer).__name__ == "Labels"]
        preds = [layer for layer in labels if layer.metadata.get("napari_cellnet", {}).get("output_of") ==
                 "segment/labels"]
        if preds:
            self.prediction.value = preds[-1]
            others = [layer for layer in labels if layer is not preds[-1]]
            if others:
                self.ground_truth.value = others[0]

    def _on_mode(self, value: Any = None) -> None:
        seg = self.mode.value == "segmentation"
        for w in (self.prediction, self.ground_truth, self.form, self.annotated_only):
            w.visible = seg
        for w in (self.class_layer, self.pred_column, self.true_column):
            w.visible = not seg
        self.plot.setVisible(not seg)
        if not seg:
            self._on_class_layer()

    def check_inputs(self) -> str | None:
        """Why Evaluate cannot run now (None when it can)."""
        if self.mode.value == "segmentation":
            pred, gt = self.prediction.value, self.ground_truth.value
            if pred is None or gt is None:
                return "Pick a prediction and a ground-truth Labels layer (open or draw the ground truth first)."
            if pred is gt:
                return "The prediction and the ground truth are the same layer; pick two different Labels layers."
            if tuple(pred.data.shape) != tuple(gt.data.shape):
                return (f"Layer {pred.name!r} has shape {tuple(pred.data.shape)} but {gt.name!r} has "
                        f"{tuple(gt.data.shape)}; compare two layers of the same movie (same frames and size).")
            return None
        layer = self.class_layer.value
        if layer is None:
            return "Pick a Labels layer whose features hold a predicted and an annotated class (run Classify first)."
        if not self.pred_column.value or not self.true_column.value:
            return "Pick the predicted and the annotated class columns."
        if self.pred_column.value == self.true_column.value:
            return "The predicted and annotated columns are the same; pick the annotation column."
        return None

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        """Start the comparison; returns the worker (None when inputs are invalid)."""
        why = self.check_inputs()
        if why:
            show_error(f"Evaluate: {why}")
            self.status.value = why
            return None
        if self.mode.value == "segmentation":
            try:
                iou = self.form.value.iou
            except ValueError as err:
                show_error(f"Evaluate: {err}")
                self.status.value = str(err)
                return None
            pred = np.asarray(self.prediction.value.data)
            gt = np.asarray(self.ground_truth.value.data)
            annotated = self.annotated_only.value.startswith("annotated")
            self._iou = iou
            self._names = (self.prediction.value.name, self.ground_truth.value.name)
            return self.runner.start(lambda: segmentation_job(pred, gt, iou, annotated))
        feats = self.class_layer.value.features
        pred = feats[self.pred_column.value].tolist()
        true = feats[self.true_column.value].tolist()
        self._names = (f"{self.class_layer.value.name}:{self.pred_column.value}", self.true_column.value)
        return self.runner.start(lambda: classification_job(pred, true))

    def _lock_controls(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.form.enabled = not running

    def _show(self, result: dict[str, Any]) -> None:
        if self._closed:
            return
        self.result = result
        rows = result["rows"]
        cols = list(rows)
        self.table.value = {c: [_fmt(v) for v in rows[c]] for c in cols}
        self.copy_button.enabled = self.save_button.enabled = True
        if result["kind"] == "segmentation":
            r = result["report"]
            fl = result["flicker"]
            self.plot.show_matrix(None, [])
            self.status.value = (
                f"{self._names[0]} vs {self._names[1]} on {len(result['frames'])} frame(s): SEG {r['seg']:.3f}, "
                f"AP@{self._iou:.2f} {r['ap']:.3f}, pixel F1 {r['f1']:.3f}, error rate {r['error_rate']:.4f}; "
                f"flicker: mask change {fl['mask_change']:.3f}, ID churn {fl['id_churn']:.3f}, {fl['blinks']} blink(s).")
        else:
            r = result["report"]
            self.plot.show_matrix(r["confusion_matrix"], r["class_names"])
            self.status.value = (f"{r['n']} object(s) with both classes: accuracy {r['accuracy']:.3f}, balanced "
                                 f"accuracy {r['balanced_accuracy']:.3f}.")

    # ------------------------------------------------------------------ export
    def table_text(self) -> str:
        """The result table as tab-separated text (header first)."""
        if self.result is None:
            return ""
        rows = self.result["rows"]
        cols = list(rows)
        lines = ["\t".join(cols)]
        for i in range(len(rows[cols[0]])):
            lines.append("\t".join(_fmt(rows[c][i]) for c in cols))
        return "\n".join(lines) + "\n"

    def copy(self) -> None:
        """Copy the table to the clipboard (pastes into a spreadsheet)."""
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(self.table_text())
        show_info("Evaluate: table copied to the clipboard.")

    def save_csv(self, path: str | Path | None = None) -> Path | None:
        """Save the table as CSV (asks for a file name when ``path`` is None)."""
        from napari_cellnet.core import io

        if self.result is None:
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Save evaluation table", "evaluation.csv",
                                                  "CSV (*.csv)")
            if not path:
                return None
        try:
            out = io.write_table(path, self.result["rows"])
        except OSError as err:
            show_error(f"Evaluate: cannot write {path}: {err}")
            return None
        show_info(f"Evaluate: table saved to {out}")
        return out


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{value:.4f}"
    return str(value)
