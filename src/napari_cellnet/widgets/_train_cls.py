"""The Train classifier widget: a morphology CNN from annotated objects, a gallery, or class folders.

Sources of training samples (all prepared by :mod:`napari_cellnet.classification.data`):

* **annotated objects**: an Image layer and its Labels layer whose ``features`` carry a
  class column (``annotated_class``, written by the Classify widget's click annotation);
* **image stack**: a gallery layer (one cell per frame) plus a layer whose features give
  ``frame`` and a class column (e.g. the HuSHeM sample's "HuSHeM classes" points);
* **class folders**: ``root/<class>/*.png`` on disk (the seed GUI's datasets).

The widget fills a :class:`~napari_cellnet.classification.params.ClassifierTrainConfig` and runs
:func:`~napari_cellnet.classification.training.train_classifier` (stratified k-fold or hold-out,
then a refit on everything) in a worker with a live loss/accuracy plot, Stop (keeps the
finished folds and the best model so far) and, when done, the pooled out-of-fold confusion
matrix. The model is then offered to the Classify widget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit, PushButton
from napari.utils.notifications import show_error, show_info

from napari_cellnet.core.jobs import TrainEvent
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._classify import ANNOTATION
from napari_cellnet.widgets._jobs import JobRunner, cpu_threads
from napari_cellnet.widgets._plot import ConfusionPlot, LivePlot

SOURCES = ("annotated objects (Image + Labels)", "image stack + class layer", "class folders on disk")
OBJECTS, STACK, FOLDERS = SOURCES
MIXED = "mixed: 3 small_cnn + mobilenet_v2 + resnet18 (demo, 5x time)"
ARCHS = ("small_cnn", "resnet18", "mobilenet_v2", MIXED)


def train_cls_parameters(
    arch: str = "small_cnn",
    input_size: int = 64,
    align_cells: bool = True,
    central_fraction: float = 1.0,
    epochs: int = 60,
    batch_size: int = 32,
    lr: float = 3e-3,
    optimizer: str = "adamw",
    loss: str = "ce",
    augment: str = "aligned",
    aug_rate: int = 5,
    folds: int = 5,
    refit: bool = True,
    crop_size: int = 64,
    device: str = "auto",
    output_folder: str = "",
) -> None:
    """Classifier training settings (persisted).

    Parameters
    ----------
    arch : str
        Network: ``small_cnn`` (fast), ``resnet18``, ``mobilenet_v2``, or the shipped demo's
        mixed ensemble of five networks whose probabilities are averaged (the most accurate on
        HuSHeM, 0.903 vs 0.898 for 3 small_cnn; five trainings per fold).
    input_size : int
        Side of the square network input; images are resized with aspect kept.
    align_cells : bool
        Put every cell upright first (centred, long axis vertical) and blank its
        surroundings; use the ``aligned`` augmentation with it. Raised HuSHeM 5-fold accuracy
        from 0.77 to 0.89 (docs/classification.md).
    central_fraction : float
        Keep only this central part of each image (after aligning) before resizing, so the
        input pixels go to the cell (HuSHeM: 0.5).
    epochs, batch_size, lr, optimizer : int, int, float, str
        Optimisation.
    loss : str
        ``ce``, ``weighted_ce`` (class-imbalance weights) or ``focal``.
    augment, aug_rate : str, int
        Augmentation preset and augmented copies of each image per epoch (1x ... 10x):
        ``aligned`` (small rotations, mirrors) for aligned cells, ``strong`` (any angle) otherwise.
    folds : int
        Stratified k-fold cross-validation (k >= 2), 1 = one hold-out split, 0 = none.
    refit : bool
        After cross-validation, train the model to use on every sample.
    crop_size : int
        Objects only: side of the crop cut around each object.
    device : str
        ``auto``, ``cpu``, ``cuda:N`` or ``mps``.
    output_folder : str
        Where ``model.pt``, fold models, ``report.json`` and ``history.csv`` go.
    """


PARAM_OPTIONS: dict[str, Any] = {
    "arch": {"choices": ARCHS, "label": "network"},
    "input_size": {"min": 16, "max": 512, "step": 8, "label": "input size (px)"},
    "align_cells": {"label": "align cells upright"},
    "central_fraction": {"widget_type": "FloatSpinBox", "min": 0.1, "max": 1.0, "step": 0.05,
                         "label": "central fraction kept"},
    "epochs": {"min": 1, "max": 10000},
    "batch_size": {"min": 1, "max": 1024, "label": "batch size"},
    "lr": {"widget_type": "FloatSpinBox", "min": 1e-6, "max": 1.0, "step": 1e-4, "label": "learning rate"},
    "optimizer": {"choices": ("adamw", "adam", "sgd", "rmsprop", "adamax", "nadam", "adagrad", "adadelta")},
    "loss": {"choices": ("ce", "weighted_ce", "focal")},
    "augment": {"choices": ("aligned", "strong", "light", "none"), "label": "augmentation"},
    "aug_rate": {"min": 1, "max": 10, "label": "augmentation rate (x)"},
    "folds": {"min": 0, "max": 20, "label": "k folds (1 = hold-out)"},
    "refit": {"label": "refit on all samples"},
    "crop_size": {"min": 8, "max": 1024, "label": "object crop (px)"},
    "device": {"widget_type": "ComboBox", "choices": common.device_choices},
    "output_folder": {"label": "output folder"},
}


def _feature_layers(layer: Any) -> bool:
    cols = getattr(getattr(layer, "features", None), "columns", [])
    return "frame" in cols and len(cols) > 1


class TrainClassifierWidget(common.JobWidget, common.DeviceProbing, Container):
    """Train a cell-morphology classifier with k-fold cross-validation (dock widget)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.result: Any = None
        self._closed = False
        self._probe_worker: Any = None
        self.source = ComboBox(label="train on", choices=SOURCES, value=OBJECTS)
        self.image = common.layer_picker(self.viewer, "Image", "image")
        self.label_layer = common.layer_picker(self.viewer, "Labels", "objects (labels)")
        self.class_layer = ComboBox(label="class layer", choices=self._class_layers)
        self.class_column = ComboBox(label="class column", choices=self._class_columns)
        self.folder = LineEdit(label="dataset folder", tooltip="root/<class>/*.png")
        inputs = Container(widgets=[self.source, self.image, self.label_layer, self.class_layer, self.class_column,
                                    self.folder], labels=True)
        inputs.margins = (0, 0, 0, 0)
        self.data_note = common.note("")
        self.params = common.parameter_panel(train_cls_parameters, **PARAM_OPTIONS)
        self.params.margins = (0, 0, 0, 0)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.defaults_button = PushButton(text="Restore defaults")
        buttons = Container(widgets=[self.train_button, self.stop_button, self.defaults_button],
                            layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.status = common.note("")
        self.plot = LivePlot(metrics=("accuracy", "balanced_accuracy"))
        self.confusion = ConfusionPlot()
        self.extend([inputs, self.data_note, self.params, buttons, self.status])
        self.native.layout().addWidget(self.plot)
        self.native.layout().addWidget(self.confusion)

        self.runner = JobRunner("Train classifier", self._finished, on_event=self._on_event,
                                on_state=self._set_running)
        self.source.changed.connect(self._on_source)
        for w in (self.image, self.label_layer, self.class_layer, self.class_column, self.folder):
            w.changed.connect(self._check)
        self._watched: Any = None
        self.class_layer.changed.connect(self._watch_features)
        self.label_layer.changed.connect(self._watch_features)
        self.source.changed.connect(self._watch_features)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.runner.stop)
        self.defaults_button.changed.connect(lambda: common.restore_defaults(self.params, train_cls_parameters))
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._reset_class_choices)
        self.native.destroyed.connect(self._on_destroyed)
        self._on_source()
        self._watch_features()
        self._probe_devices()

    # ------------------------------------------------------------------ inputs
    def _reset_class_choices(self, event: Any = None) -> None:
        if self._closed:
            return
        try:
            self.class_layer.reset_choices()
            self.class_column.reset_choices()
        except RuntimeError:
            pass

    def _watch_features(self, value: Any = None) -> None:
        """Follow the class layer's ``features``: annotating in Classify updates the counts here."""
        if self._watched is not None:
            try:
                self._watched.events.features.disconnect(self._check)
            except (TypeError, ValueError, RuntimeError):
                pass
        layer = self.label_layer.value if self.source.value == OBJECTS else self.class_layer.value
        self._watched = layer
        if layer is not None and hasattr(layer.events, "features"):
            layer.events.features.connect(self._check)
        self._check()

    def _class_layers(self, widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if _feature_layers(layer)]

    def _class_columns(self, widget: Any = None) -> list[str]:
        source = getattr(self, "source", None)
        if source is None:
            return []
        layer = self.label_layer.value if source.value == OBJECTS else self.class_layer.value
        if layer is None:
            return []
        cols = [str(c) for c in getattr(layer.features, "columns", [])]
        skip = {"index", "frame", "label", "area", "centroid_y", "centroid_x", "confidence", "class_index",
                "track_agreement", "model"}
        out = [c for c in cols if c not in skip and not c.startswith("p_")]
        # the annotation column first: training on the model's own predictions is rarely wanted
        return sorted(out, key=lambda c: (c != ANNOTATION, c != "class", c))

    def _on_source(self, value: Any = None) -> None:
        s = self.source.value
        self.image.visible = s in (OBJECTS, STACK)
        self.label_layer.visible = s == OBJECTS
        self.class_layer.visible = s == STACK
        self.class_column.visible = s in (OBJECTS, STACK)
        self.folder.visible = s == FOLDERS
        self.params.crop_size.visible = s == OBJECTS
        self.class_column.reset_choices()
        self._check()

    def _class_table(self) -> tuple[list[int], list[int], list[str]]:
        """(frames, labels, classes) of the annotated rows of the chosen layer."""
        s = self.source.value
        layer = self.label_layer.value if s == OBJECTS else self.class_layer.value
        df = layer.features
        col = self.class_column.value
        cls = df[col].astype(str).fillna("")
        keep = (cls != "") & (cls != "nan") & (cls != "None")
        frames = df.loc[keep, "frame"].astype(int).tolist()
        labels = df.loc[keep, "label"].astype(int).tolist() if "label" in df.columns else [0] * int(keep.sum())
        return frames, labels, cls[keep].tolist()

    def check_inputs(self) -> str | None:
        """Why training cannot start (None when it can)."""
        s = self.source.value
        if s == FOLDERS:
            text = str(self.folder.value or "").strip()
            if not text or not Path(text).expanduser().is_dir():
                return "Choose the dataset folder (one sub-folder of images per class)."
            return None
        if self.image.value is None:
            return "Pick the Image layer the cells come from."
        if s == OBJECTS and self.label_layer.value is None:
            return "Pick the Labels layer whose objects carry annotated classes (Classify widget: annotate)."
        if s == STACK and self.class_layer.value is None:
            return "Pick a layer whose features have 'frame' and a class column (e.g. 'HuSHeM classes')."
        if not self.class_column.value:
            return ("No class column found: annotate classes first (Classify widget: type a class and click "
                    "objects).")
        frames, _, classes = self._class_table()
        names = sorted(set(classes))
        if len(names) < 2:
            return f"{len(classes)} annotated object(s) in {len(names)} class(es): annotate at least two classes."
        return None

    def _check(self, value: Any = None) -> bool:
        if getattr(self, "_checking", False):
            return self.train_button.enabled
        self._checking = True
        try:
            # the layer's features may have changed (annotation) since the choices were made
            self.class_column.reset_choices()
        finally:
            self._checking = False
        why = self.check_inputs()
        if why is None and self.source.value != FOLDERS:
            _, _, classes = self._class_table()
            counts = {c: classes.count(c) for c in sorted(set(classes))}
            self.data_note.value = "Annotated: " + ", ".join(f"{c} {n}" for c, n in counts.items())
        else:
            self.data_note.value = why or ""
        self.train_button.enabled = why is None and not self.runner.running
        return why is None

    def build_config(self) -> Any:
        """The :class:`~napari_cellnet.classification.params.ClassifierTrainConfig` of the fields."""
        from napari_cellnet.classification.data import Preprocessing
        from napari_cellnet.classification.params import DEMO_MEMBERS, ClassifierTrainConfig
        from napari_cellnet.core.augment import AugmentParams
        from napari_cellnet.models.classifier import parse_members

        p = self.params
        aligned = bool(p.align_cells.value)
        prep = Preprocessing(size=int(p.input_size.value), crop_fraction=float(p.central_fraction.value),
                             align="major_axis" if aligned else "none", isolate=aligned)
        return ClassifierTrainConfig(
            arch="small_cnn" if p.arch.value == MIXED else p.arch.value,
            members=parse_members(DEMO_MEMBERS) if p.arch.value == MIXED else None, preprocessing=prep, epochs=int(p.epochs.value),
            batch_size=int(p.batch_size.value), lr=float(p.lr.value), optimizer=p.optimizer.value,
            loss=p.loss.value, augment=AugmentParams.preset(p.augment.value), aug_rate=int(p.aug_rate.value),
            folds=int(p.folds.value), refit=bool(p.refit.value), device=p.device.value)

    # ------------------------------------------------------------------ running
    def train(self) -> Any:
        """Start training; returns the worker (None when inputs are invalid)."""
        if self.runner.running:
            show_info("Training is already running; press Stop first.")
            return None
        try:
            why = self.check_inputs()
            if why:
                raise ValueError(why)
            out = str(self.params.output_folder.value or "").strip()
            if not out:
                raise ValueError("Choose an output folder for the classifier (model.pt, report.json, history.csv).")
            out_dir = Path(out).expanduser()
        except (ValueError, FileNotFoundError) as err:
            show_error(f"Train classifier: {err}")
            self.status.value = str(err)
            return None
        s = self.source.value
        crop = int(self.params.crop_size.value)
        if s == FOLDERS:
            data: dict[str, Any] = {"folder": str(Path(str(self.folder.value).strip()).expanduser())}
        else:
            frames, labels, classes = self._class_table()
            data = {"image": np.asarray(self.image.value.data), "frames": frames, "labels": labels,
                    "classes": classes}
            if s == OBJECTS:
                data["label_image"] = np.asarray(self.label_layer.value.data)
        build = self.build_config
        self.plot.clear()
        self.confusion.show_matrix(None, [])
        self.status.value = "Preparing the samples…"

        def make_job() -> Any:
            from napari_cellnet.classification.data import load_image_stack, load_objects
            from napari_cellnet.classification.training import train_classifier

            cfg = build()
            if s == FOLDERS:
                samples: Any = data["folder"]
            elif s == OBJECTS:
                table = {"frame": data["frames"], "label": data["labels"], "class": data["classes"]}
                samples = load_objects(data["image"], data["label_image"], table, prep=cfg.preprocessing,
                                       crop_size=crop)
            else:
                stack = data["image"][np.asarray(data["frames"], dtype=np.int64)]
                samples = load_image_stack(stack, data["classes"], prep=cfg.preprocessing)
            return train_classifier(samples, cfg, out_dir)

        return self.runner.start(make_job, threads=cpu_threads())

    def _on_event(self, event: Any) -> None:
        if self._closed or not isinstance(event, TrainEvent):
            return
        run = event.message or ""
        if event.kind == "epoch":
            if event.epoch == 1:
                self.plot.clear()
                self.plot.title = run
            self.plot.add_epoch(event.epoch, event.train_loss, event.val_metrics)
            val = event.val_metrics or {}
            shown = ", ".join(f"{k} {v:.3f}" for k, v in val.items())
            self.status.value = f"{run}: epoch {event.epoch}/{event.epochs}, loss {event.train_loss:.4f}" + (
                f", {shown}" if shown else "")

    def _finished(self, result: Any) -> None:
        if self._closed:
            return
        self.result = result
        names = list(result.class_names)
        if result.pooled is not None:
            self.confusion.show_matrix(result.pooled["confusion_matrix"], names)
        summ = result.summary or {}
        acc = summ.get("accuracy")
        cv = (f"{len(result.folds)} fold(s): accuracy {acc['mean']:.3f} ± {acc['sd']:.3f}"
              if isinstance(acc, dict) and "mean" in acc else "no cross-validation")
        how = "stopped" if result.stopped else "done"
        model = result.checkpoint
        if model is not None:
            common.MODELS.add("classification", str(model))
        self.status.value = (f"Training {how}; {cv}. " + (f"Model: {model} (now selectable in Classify)."
                                                          if model else "No model saved."))

    def _lock_controls(self, running: bool) -> None:
        self.stop_button.enabled = running
        self.params.enabled = not running
        self._check()

    def _disconnect(self) -> None:
        if self._watched is not None:
            try:
                self._watched.events.features.disconnect(self._check)
            except (TypeError, ValueError, RuntimeError):
                pass
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            try:
                ev.disconnect(self._reset_class_choices)
            except (TypeError, ValueError, RuntimeError):
                pass
