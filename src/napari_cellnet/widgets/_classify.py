"""The Classify widget: name the morphology of every cell, and annotate classes to train on.

Three sources, one engine (:func:`napari_cellnet.classification.inference.classify`):

* **objects**: an Image layer and its Labels layer (a segmented movie). Every object of
  every frame is cropped and classified. Results go to the Labels layer's ``features``
  (``frame``, ``label``, ``class``, ``confidence``, one ``p_<class>`` per class,
  ``track_class`` = majority class of the ID over its frames, ``model``) and to a
  class-coloured Labels layer ``<labels> classes`` whose pixel value is the class
  (hovering shows the class name).
* **image stack**: one cell per frame (a gallery such as the HuSHeM sample). Results go to
  a Points layer ``<image> classes`` (one point per frame, the class written on it).
* **folder**: images in a folder (and its class sub-folders); results as a table only.

The run's settings are a :class:`~napari_cellnet.widgets._params.ParamsForm` of
:class:`~napari_cellnet.classification.params.ClassifyParams`, the object ``napari-cellnet
classify`` reads. Every result can be saved as CSV. To build training data, pick a class name and switch on
"annotate": each click on an object writes that class to the ``annotated_class`` column
of the Labels layer's features (optionally to every frame of the same ID). Train
classifier then trains on those rows, and Evaluate compares ``class`` with
``annotated_class``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info

from napari_cellnet.classification.params import ClassifyParams
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._jobs import JobRunner, cpu_threads
from napari_cellnet.widgets._layers import add_or_update
from napari_cellnet.widgets._params import ParamsForm

MODES = ("objects (Image + Labels)", "image stack (one cell per frame)", "folder of images")
OBJECTS, STACK, FOLDER = MODES
ANNOTATION = "annotated_class"
# colours of classes 1..K in the class layer (tab10)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def class_image(labels: np.ndarray, table: dict[str, Any], column: str, class_names: list[str]) -> np.ndarray:
    """A ``(T, Y, X)`` uint8 image whose pixels hold 1 + the class index of their object (0 = none).

    Parameters
    ----------
    labels : ndarray of int, shape (T, Y, X) or (Y, X)
    table : dict of sequences
        ``frame``, ``label`` and ``column`` (class names; empty = no class).
    """
    lab = np.asarray(labels)
    single = lab.ndim == 2
    if single:
        lab = lab[None]
    out = np.zeros(lab.shape, np.uint8)
    index = {c: i + 1 for i, c in enumerate(class_names)}
    frames = np.asarray(table.get("frame", np.zeros(len(table["label"]))), dtype=np.int64)
    ids = np.asarray(table["label"], dtype=np.int64)
    values = np.asarray([index.get(str(c), 0) for c in table[column]], dtype=np.uint8)
    for t in np.unique(frames):
        rows = frames == t
        lut = np.zeros(int(max(lab[t].max(), ids[rows].max(initial=0))) + 1, np.uint8)
        lut[ids[rows]] = values[rows]
        out[t] = lut[lab[t]]
    return out[0] if single else out


def class_colormap(class_names: list[str]) -> Any:
    """napari label colormap: class k (pixel value k + 1) in the k-th palette colour, 0 transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    for i, _ in enumerate(class_names):
        colors[i + 1] = PALETTE[i % len(PALETTE)]
    return DirectLabelColormap(color_dict=colors)


class ClassifyWidget(common.JobWidget, common.DeviceProbing, Container):
    """Classify cells (objects of a Labels layer, a gallery stack or a folder) and annotate classes."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.table: dict[str, Any] | None = None
        self.class_names: list[str] = []
        self._closed = False
        self._probe_worker: Any = None
        self._annotating: Any = None
        self.mode = ComboBox(label="classify", choices=MODES, value=OBJECTS)
        self.image = common.layer_picker(self.viewer, "Image", "image")
        self.label_layer = common.layer_picker(self.viewer, "Labels", "objects (labels)")
        self.folder = LineEdit(label="folder", tooltip="A folder of cell images (sub-folders = known classes).")
        self.model = common.model_picker("classification",
                                         tooltip="The bundled demo classifier, a model trained in this session, or a file")
        self.checkpoint = LineEdit(label="checkpoint file", tooltip="The .pt file when model is 'Checkpoint file…'")
        inputs = Container(widgets=[self.mode, self.image, self.label_layer, self.folder, self.model, self.checkpoint],
                           labels=True)
        inputs.margins = (0, 0, 0, 0)
        self.form = ParamsForm(ClassifyParams, controls={"device": common.device_picker()})
        self.form.margins = (0, 0, 0, 0)
        self.browse_model = PushButton(text="Browse for a classifier…")
        self.model_note = common.note("")
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.save_button = PushButton(text="Save CSV…", enabled=False)
        buttons = common.button_row(self.run_button, self.stop_button, self.save_button)
        # annotation
        self.annotate_class = LineEdit(label="class to annotate", value="",
                                       tooltip="Type a class name (e.g. 'normal'); then click objects.")
        self.annotate = CheckBox(text="annotate by clicking objects", value=False)
        self.whole_track = CheckBox(text="apply to every frame of the ID", value=True)
        self.n_annotated = SpinBox(label="annotated objects", value=0, max=10**9, enabled=False)
        annotation = Container(widgets=[self.annotate_class, self.annotate, self.whole_track, self.n_annotated],
                               labels=True)
        annotation.margins = (0, 0, 0, 0)
        self.status = common.note("")
        self.extend([inputs, self.browse_model, self.model_note, self.form, buttons, self.status, annotation])

        self.runner = JobRunner("Classify", self._show, on_state=self._set_running)
        self.mode.changed.connect(self._on_mode)
        self.model.changed.connect(self._on_model)
        self.browse_model.changed.connect(self._browse)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.runner.stop)
        self.save_button.changed.connect(lambda: self.save_csv())
        self.annotate.changed.connect(self._toggle_annotation)
        self.label_layer.changed.connect(self._labels_changed)
        common.MODELS.added.connect(self._on_model_added)
        self.native.destroyed.connect(self._on_destroyed)
        self._on_mode()
        self._on_model()
        self._probe_devices()

    # ------------------------------------------------------------------ inputs
    def _on_mode(self, value: Any = None) -> None:
        mode = self.mode.value
        self.image.visible = mode in (OBJECTS, STACK)
        self.label_layer.visible = mode == OBJECTS
        self.folder.visible = mode == FOLDER
        for name in ("crop_size", "mask_neighbours"):  # how object crops are cut
            self.form.controls[name].visible = mode == OBJECTS

    def _on_model(self, value: Any = None) -> None:
        own = self.model.value == common.FILE
        self.checkpoint.visible = own
        self.browse_model.visible = own

    def _on_model_added(self, task: str, path: str) -> None:
        if not self._closed:
            common.select_added_model(self.model, "classification", task, path)

    def _browse(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Classification model", "", "napari-cellnet model (*.pt)")
        if path:
            self.checkpoint.value = path

    def check_inputs(self) -> str | None:
        """Why Run cannot start (None when it can)."""
        mode = self.mode.value
        if mode in (OBJECTS, STACK) and self.image.value is None:
            return "Pick an Image layer (open the movie or the gallery first)."
        if mode == OBJECTS:
            lab = self.label_layer.value
            if lab is None:
                return "Pick the Labels layer of the objects to classify (segment the movie first)."
            img = self.image.value
            ishape = tuple(img.data.shape)
            spatial = ishape[:-1] if getattr(img, "rgb", False) else ishape
            if tuple(spatial) != tuple(lab.data.shape):
                return (f"The labels {lab.name!r} have shape {tuple(lab.data.shape)} but the image {img.name!r} has "
                        f"{ishape}; pick the Labels layer made from this image.")
        if mode == FOLDER:
            folder = Path(str(self.folder.value or "").strip()).expanduser()
            if not str(self.folder.value or "").strip() or not folder.is_dir():
                return f"Choose an existing folder of images (got {str(self.folder.value)!r})."
        return None

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        """Start classifying; returns the worker (None when inputs are invalid)."""
        if self.refuse_if_running("Classify"):
            return None
        try:
            why = self.check_inputs()
            if why:
                raise ValueError(why)
            path = common.resolve_model(self.model.value, self.checkpoint.value, "classification")
            params: ClassifyParams = self.form.value  # type: ignore[assignment]
        except (ValueError, FileNotFoundError) as err:
            show_error(f"Classify: {err}")
            self.status.value = str(err)
            return None
        mode = self.mode.value
        kwargs: dict[str, Any] = {"params": params}
        if mode == OBJECTS:
            kwargs.update(image=np.asarray(self.image.value.data), labels=np.asarray(self.label_layer.value.data))
        elif mode == STACK:
            kwargs.update(stack=np.asarray(self.image.value.data))
        else:
            kwargs.update(folder=str(Path(str(self.folder.value).strip()).expanduser()))
        self._run_mode = mode
        self._run_source = self.label_layer.value if mode == OBJECTS else self.image.value if mode == STACK else None
        self._model_path = path
        self.status.value = "Classifying…"

        def make_job() -> Any:
            from napari_cellnet.classification.inference import classify, load_classifier

            ckpt = load_classifier(path)
            self._class_names_pending = list(ckpt.meta["class_names"])
            return classify(ckpt, **kwargs)

        return self.runner.start(make_job, threads=params.threads or cpu_threads())

    def _lock_controls(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.stop_button.enabled = running
        self.form.enabled = not running
        self.model.enabled = self.checkpoint.enabled = not running

    def _show(self, table: dict[str, Any]) -> None:
        if self._closed:
            return
        seconds = float(table.pop("_seconds", 0.0))
        names = list(getattr(self, "_class_names_pending", []))
        self.class_names = names
        model_id = f"{Path(self._model_path).parent.name}/{Path(self._model_path).name}"
        n = len(table.get("class", []))
        table["model"] = np.asarray([model_id] * n, dtype=object)
        self.table = table
        self.save_button.enabled = True
        done = int(np.sum(np.asarray(table.get("class_index", []), dtype=np.int64) >= 0)) if n else 0
        counts = pd.Series(np.asarray(table["class"], dtype=object)[: n]).value_counts() if n else pd.Series()
        summary = ", ".join(f"{k} {v}" for k, v in counts.items() if str(k))
        stopped = " (stopped: the rest are unclassified)" if done < n else ""
        self.status.value = f"{done} of {n} classified in {seconds:.1f} s{stopped}: {summary or 'nothing'}."
        if self._run_mode == OBJECTS:
            self._show_objects(table, names, model_id)
        elif self._run_mode == STACK:
            self._show_stack(table, names, model_id)
        self.viewer.status = self.status.value

    def _show_objects(self, table: dict[str, Any], names: list[str], model_id: str) -> None:
        layer = self._run_source
        df = pd.DataFrame({k: list(v) if np.ndim(v) else v for k, v in table.items()})
        old = layer.features
        if ANNOTATION in getattr(old, "columns", []) and {"frame", "label"} <= set(old.columns):
            keep = old[["frame", "label", ANNOTATION]]
            df = df.merge(keep, on=["frame", "label"], how="left")
            df[ANNOTATION] = df[ANNOTATION].fillna("")
        else:
            df[ANNOTATION] = ""
        df.insert(0, "index", df["label"].astype(int))
        layer.features = df
        column = "class"
        img = class_image(layer.data, {k: df[k].tolist() for k in ("frame", "label", column)}, column, names)
        feats = pd.DataFrame({"index": np.arange(len(names) + 1), "class": ["", *names]})
        meta = {"model": str(self._model_path), "class_names": names}
        out = add_or_update(self.viewer, "labels", img, "classify/classes", f"{layer.name} classes", source=layer,
                            metadata=meta, features=feats, opacity=0.6)
        out.colormap = class_colormap(names)
        out.features = feats
        self.class_layer = out

    def _show_stack(self, table: dict[str, Any], names: list[str], model_id: str) -> None:
        layer = self._run_source
        n = len(table["class"])
        shape = layer.data.shape
        h, w = (shape[-3], shape[-2]) if getattr(layer, "rgb", False) else (shape[-2], shape[-1])
        points = np.column_stack([np.arange(n), np.full(n, h * 0.08), np.full(n, w / 2)])
        df = pd.DataFrame({k: list(v) for k, v in table.items()})
        df.insert(0, "frame", np.arange(n))
        text = {"string": "{class} ({confidence:.2f})", "color": "yellow", "size": 11}
        out = add_or_update(self.viewer, "points", points, "classify/stack", f"{layer.name} classes", source=layer,
                            metadata={"model": str(self._model_path), "class_names": names}, features=df,
                            text=text, size=0.1, face_color="transparent", border_color="transparent")
        out.features = df
        out.text = text
        self.class_layer = out

    # ------------------------------------------------------------------ export
    def save_csv(self, path: str | Path | None = None) -> Path | None:
        """Save the last result table (with annotations for objects) as CSV."""
        from napari_cellnet.core import io

        if self.table is None:
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Save classes", "classes.csv", "CSV (*.csv)")
            if not path:
                return None
        if self._run_mode == OBJECTS and self._run_source is not None:
            df = self._run_source.features
            columns = {c: df[c].tolist() for c in df.columns if c != "index"}
        else:
            columns = {k: list(v) for k, v in self.table.items()}
        try:
            out = io.write_table(path, columns)
        except OSError as err:
            show_error(f"Classify: cannot write {path}: {err}")
            return None
        show_info(f"Classify: {len(next(iter(columns.values()), []))} rows saved to {out}")
        return out

    # ------------------------------------------------------------------ annotation
    def _labels_changed(self, value: Any = None) -> None:
        if self.annotate.value:
            self._toggle_annotation(False)
            self.annotate.value = False

    def _toggle_annotation(self, on: Any = None) -> None:
        layer = self.label_layer.value
        if self._annotating is not None:
            old_layer, cb = self._annotating
            if cb in old_layer.mouse_drag_callbacks:
                old_layer.mouse_drag_callbacks.remove(cb)
            self._annotating = None
        if not self.annotate.value:
            return
        if layer is None:
            show_error("Classify: pick the Labels layer whose objects you want to annotate.")
            self.annotate.value = False
            return

        def on_click(lay: Any, event: Any) -> None:
            value = lay.get_value(event.position, world=True)
            if value is None or int(value) == 0:
                return
            t = int(self.viewer.dims.current_step[0]) if lay.ndim >= 3 else 0
            self.annotate_object(t, int(value))

        layer.mouse_drag_callbacks.append(on_click)
        self._annotating = (layer, on_click)
        self.viewer.layers.selection.active = layer
        layer.mode = "pan_zoom"
        show_info(f"Classify: click objects of {layer.name!r} to mark them as {self.annotate_class.value!r}.")

    def annotate_object(self, frame: int, label: int, class_name: str | None = None) -> int:
        """Write ``class_name`` (default: the class field) to object ``label`` of ``frame``.

        With "apply to every frame of the ID" on, every frame where the ID exists gets it.
        Returns the number of rows changed.

        Raises
        ------
        ValueError
            Without a class name or a Labels layer.
        """
        layer = self.label_layer.value
        name = (class_name if class_name is not None else str(self.annotate_class.value)).strip()
        if layer is None:
            raise ValueError("Pick the Labels layer to annotate.")
        if not name:
            show_error("Classify: type the class name to annotate first (e.g. 'normal').")
            return 0
        data = layer.data if layer.data.ndim >= 3 else layer.data[None]
        frames = ([t for t in range(data.shape[0]) if np.any(np.asarray(data[t]) == label)]
                  if self.whole_track.value else [frame])
        df = layer.features
        if not {"frame", "label"} <= set(getattr(df, "columns", [])):
            df = pd.DataFrame({"index": pd.Series(dtype=int), "frame": pd.Series(dtype=int),
                               "label": pd.Series(dtype=int), ANNOTATION: pd.Series(dtype=object)})
        else:
            df = df.copy()
        if ANNOTATION not in df.columns:
            df[ANNOTATION] = ""
        changed = 0
        for t in frames:
            rows = (df["frame"] == t) & (df["label"] == label)
            if rows.any():
                df.loc[rows, ANNOTATION] = name
            else:
                extra = {c: (np.nan if df[c].dtype.kind == "f" else "") for c in df.columns}
                extra.update({"index": label, "frame": t, "label": label, ANNOTATION: name})
                df = pd.concat([df, pd.DataFrame([extra])], ignore_index=True)
            changed += 1
        df[ANNOTATION] = df[ANNOTATION].fillna("").astype(object)
        layer.features = df
        self.n_annotated.value = int((df[ANNOTATION].astype(str) != "").sum())
        self.status.value = f"Object {label} marked {name!r} on {changed} frame(s)."
        return changed

    def _disconnect(self) -> None:
        try:
            common.MODELS.added.disconnect(self._on_model_added)
        except (TypeError, ValueError):
            pass
