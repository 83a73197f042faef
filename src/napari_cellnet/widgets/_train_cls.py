"""The Train classifier widget: a morphology CNN from annotated objects, a gallery, or class folders.

Sources of training samples (all prepared by :mod:`napari_cellnet.classification.data`):

* **annotated objects**: an Image layer and its Labels layer whose ``features`` carry a
  class column (``annotated_class``, written by the Classify widget's click annotation);
* **image stack**: a gallery layer (one cell per frame) plus a layer whose features give
  ``frame`` and a class column (e.g. the HuSHeM sample's "HuSHeM classes" points);
* **class folders**: ``root/<class>/*.png`` on disk (the seed GUI's datasets).

Its settings are a :class:`~napari_cellnet.widgets._params.ParamsForm` of
:class:`~napari_cellnet.classification.params.ClassifierTrainConfig`, the object ``napari-cellnet
train-cls`` reads (same defaults, same ``params.json``). The widget runs
:func:`~napari_cellnet.classification.training.train_classifier` (stratified k-fold or hold-out,
then a refit) in a worker with live curves of every fold (training loss; validation accuracy
and balanced accuracy when there is a validation split, the default), Stop (keeps the
finished folds and the best model so far) and, when done, the pooled out-of-fold confusion
matrix. The model is then offered to the Classify widget. For class folders it also writes
the k-fold split it trains on (folder copies or a CSV) for other tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit, PushButton
from napari.utils.notifications import show_error, show_info

from napari_cellnet.classification.params import ClassifierTrainConfig
from napari_cellnet.core.jobs import TrainEvent
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._classify import ANNOTATION
from napari_cellnet.widgets._jobs import JobRunner, cpu_threads
from napari_cellnet.widgets._params import ParamsForm
from napari_cellnet.widgets._plot import ConfusionPlot, RunsPlot

SOURCES = ("annotated objects (Image + Labels)", "image stack + class layer", "class folders on disk")
OBJECTS, STACK, FOLDERS = SOURCES


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
        inputs = self._make_inputs()
        self.data_note = common.note("")
        self.form = ParamsForm(ClassifierTrainConfig, controls={"device": common.device_picker()})
        self.form.margins = (0, 0, 0, 0)
        self.output_folder = LineEdit(label="output folder",
                                      tooltip="model.pt, fold models, report.json and history.csv go here (CLI -o)")
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.kfold_button = PushButton(text="Write k-fold folders…",
                                       tooltip="Copy the class folders into fold<i>/{train,test}/<class>/, split "
                                               "as training splits them (k folds, seed)")
        self.split_button = PushButton(text="Write split CSV…",
                                       tooltip="path,class,fold of every image: the test fold of each image, as "
                                               "training splits them (k folds, seed)")
        buttons = common.button_row(self.train_button, self.stop_button)
        self.kfold_buttons = common.button_row(self.kfold_button, self.split_button)
        self.status = common.note("")
        self.plot = RunsPlot()
        self.confusion = ConfusionPlot()
        outputs = Container(widgets=[self.output_folder], labels=True)
        outputs.margins = (0, 0, 0, 0)
        self.extend([inputs, self.data_note, self.form, outputs, buttons, self.kfold_buttons, self.status])
        self.native.layout().addWidget(self.plot)
        self.native.layout().addWidget(self.confusion)
        self.runner = JobRunner("Train classifier", self._finished, on_event=self._on_event,
                                on_state=self._set_running)
        self._connect()
        self._on_source()
        self._watch_features()
        self._probe_devices()

    def _make_inputs(self) -> Container:
        self.source = ComboBox(label="train on", choices=SOURCES, value=OBJECTS)
        self.image = common.layer_picker(self.viewer, "Image", "image")
        self.label_layer = common.layer_picker(self.viewer, "Labels", "objects (labels)")
        self.class_layer = ComboBox(label="class layer", choices=self._class_layers)
        self.class_column = ComboBox(label="class column", choices=self._class_columns)
        self.folder = LineEdit(label="dataset folder", tooltip="root/<class>/*.png")
        inputs = Container(widgets=[self.source, self.image, self.label_layer, self.class_layer, self.class_column,
                                    self.folder], labels=True)
        inputs.margins = (0, 0, 0, 0)
        return inputs

    def _connect(self) -> None:
        self.source.changed.connect(self._on_source)
        for w in (self.image, self.label_layer, self.class_layer, self.class_column, self.folder):
            w.changed.connect(self._check)
        self._watched: Any = None
        self.class_layer.changed.connect(self._watch_features)
        self.label_layer.changed.connect(self._watch_features)
        self.source.changed.connect(self._watch_features)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.runner.stop)
        self.kfold_button.changed.connect(lambda: self.write_kfold())
        self.split_button.changed.connect(lambda: self.write_split_csv())
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._reset_class_choices)
        self.native.destroyed.connect(self._on_destroyed)

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
        self.kfold_buttons.visible = s == FOLDERS
        for name in ("crop_size", "mask_neighbours"):  # how object crops are cut
            self.form.controls[name].visible = s == OBJECTS
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

    def build_config(self) -> ClassifierTrainConfig:
        """The :class:`~napari_cellnet.classification.params.ClassifierTrainConfig` the controls show.

        Raises
        ------
        ValueError
            For a setting out of range (the message names it and says what to change).
        """
        return self.form.value  # type: ignore[return-value]

    # ------------------------------------------------------------------ k-fold copies
    def _gallery(self) -> Any:
        from napari_cellnet.core.io import read_class_folders

        if self.source.value != FOLDERS:
            raise ValueError("The k-fold writers copy a class-folder gallery: choose 'class folders on disk'.")
        text = str(self.folder.value or "").strip()
        if not text or not Path(text).expanduser().is_dir():
            raise ValueError("Choose the dataset folder (one sub-folder of images per class).")
        cfg = self.build_config()
        if cfg.folds < 2:
            raise ValueError(f"k folds is {cfg.folds}: set it to 2 or more to write a k-fold split.")
        return read_class_folders(Path(text).expanduser()), cfg

    def write_kfold(self, out_dir: str | Path | None = None) -> Path | None:
        """Copy the gallery into ``out_dir/fold<i>/{train,test}/<class>/``: the folds training uses
        (same k, same seed; :func:`napari_cellnet.core.io.write_kfold_folders`)."""
        from napari_cellnet.core.io import write_kfold_folders

        return self._write("k-fold folders", out_dir, lambda gallery, cfg, path: write_kfold_folders(
            gallery, path, k=cfg.folds, seed=cfg.seed))

    def write_split_csv(self, path: str | Path | None = None) -> Path | None:
        """Write ``path,class,fold`` (the test fold of every image) for the folds training uses
        (:func:`napari_cellnet.core.io.write_split_csv`)."""
        from napari_cellnet.core.io import write_split_csv

        return self._write("split CSV", path, lambda gallery, cfg, out: write_split_csv(
            gallery, out, k=cfg.folds, seed=cfg.seed))

    def _write(self, what: str, path: str | Path | None, write: Any) -> Path | None:
        try:
            gallery, cfg = self._gallery()
        except (ValueError, FileNotFoundError) as err:
            show_error(f"Train classifier: {err}")
            self.status.value = str(err)
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            if what == "split CSV":
                path, _ = QFileDialog.getSaveFileName(self.native, "Write split CSV", "splits.csv", "CSV (*.csv)")
            else:
                path = QFileDialog.getExistingDirectory(self.native, "Write k-fold folders into (an empty folder)")
            if not path:
                return None
        try:
            out = write(gallery, cfg, Path(path).expanduser())
        except (OSError, ValueError) as err:
            show_error(f"Train classifier: cannot write the {what}: {err}")
            self.status.value = str(err)
            return None
        self.status.value = f"{cfg.folds}-fold {what} of {len(gallery)} images (seed {cfg.seed}) written to {out}."
        show_info(f"Train classifier: {self.status.value}")
        return out

    # ------------------------------------------------------------------ running
    def train(self) -> Any:
        """Start training; returns the worker (None when inputs are invalid)."""
        if self.refuse_if_running("Training"):
            return None
        try:
            why = self.check_inputs()
            if why:
                raise ValueError(why)
            out = str(self.output_folder.value or "").strip()
            if not out:
                raise ValueError("Choose an output folder for the classifier (model.pt, report.json, history.csv).")
            out_dir = Path(out).expanduser()
            cfg = self.build_config()
        except (ValueError, FileNotFoundError) as err:
            show_error(f"Train classifier: {err}")
            self.status.value = str(err)
            return None
        s = self.source.value
        if s == FOLDERS:
            data: dict[str, Any] = {"folder": str(Path(str(self.folder.value).strip()).expanduser())}
        else:
            frames, labels, classes = self._class_table()
            data = {"image": np.asarray(self.image.value.data), "frames": frames, "labels": labels,
                    "classes": classes}
            if s == OBJECTS:
                data["label_image"] = np.asarray(self.label_layer.value.data)
        self.plot.clear()
        self.confusion.show_matrix(None, [])
        self.status.value = "Preparing the samples…"

        def make_job() -> Any:
            from napari_cellnet.classification.data import load_image_stack, load_objects
            from napari_cellnet.classification.training import train_classifier

            if s == FOLDERS:
                samples: Any = data["folder"]
            elif s == OBJECTS:
                table = {"frame": data["frames"], "label": data["labels"], "class": data["classes"]}
                samples = load_objects(data["image"], data["label_image"], table, prep=cfg.preprocessing,
                                       crop_size=cfg.crop_size, mask_neighbours=cfg.mask_neighbours)
            else:
                stack = data["image"][np.asarray(data["frames"], dtype=np.int64)]
                samples = load_image_stack(stack, data["classes"], prep=cfg.preprocessing)
            return train_classifier(samples, cfg, out_dir)

        return self.runner.start(make_job, threads=cfg.threads or cpu_threads())

    def _on_event(self, event: Any) -> None:
        if self._closed or not isinstance(event, TrainEvent) or event.kind != "epoch":
            return
        run = event.message or "run"
        val = {k: v for k, v in (event.val_metrics or {}).items() if k != "train_accuracy"}
        self.plot.add_epoch(run, event.epoch, event.train_loss, val)
        shown = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in val.items())
        self.status.value = f"{run}: epoch {event.epoch}/{event.epochs}, loss {event.train_loss:.4f}" + (
            f", validation {shown}" if shown else "")

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
        self.form.enabled = not running
        self.kfold_buttons.enabled = not running
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
