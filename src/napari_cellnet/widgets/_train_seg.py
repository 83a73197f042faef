"""The Train segmentation widget: teach the temporal U-Net from a few annotated frames.

A biologist paints cells on a few frames of a Labels layer, picks the movie and the labels
here and presses Train. The settings are a :class:`~napari_cellnet.widgets._params.ParamsForm` of
:class:`~napari_cellnet.segmentation.params.TrainSegParams` (``widget.form``: the same object, defaults
and help as ``napari-cellnet train-seg``'s flags, basic settings shown and the rest under "Advanced
settings", Load/Save settings as the CLI's ``--params``; choosing a preset fills in its settings).
The widget runs
:func:`napari_cellnet.segmentation.training.train_segmentation` in a worker: a live plot shows training
and validation loss and the validation SEG/F1 per epoch, Stop keeps the best model so far,
Continue resumes from ``last.pt`` (with more epochs if asked). When training ends the new
model is announced to the Segment widget, which selects it.

Only annotated frames count (a frame with any labelled pixel); the widget shows which ones, and
empty training/validation frame fields mean "automatic" among them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, Container, LineEdit, PushButton
from napari.utils.notifications import show_error

from napari_cellnet.core.jobs import Progress, TrainEvent
from napari_cellnet.segmentation.params import TrainSegParams
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._jobs import JobRunner, cpu_threads
from napari_cellnet.widgets._params import ParamsForm
from napari_cellnet.widgets._plot import LivePlot


def frames_outside(frames: Any, n_frames: int) -> list[int]:
    """The frames of a (one-movie) frame list that the movie does not have."""
    flat = [f for per in frames for f in per] if frames and not isinstance(frames[0], int) else list(frames or [])
    return [f for f in flat if not 0 <= f < n_frames]


class TrainSegmentationWidget(common.JobWidget, Container):
    """Train a temporal U-Net on annotated frames of a Labels layer (dock widget)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.result: Any = None
        self.history: list[dict[str, Any]] = []
        self._closed = False
        self._probe_worker: Any = None
        self._build()
        self.runner = JobRunner("Train segmentation", self._finished, on_event=self._on_event,
                                on_state=self._set_running)
        self._connect()
        self._check()
        self._probe_devices()

    def _build(self) -> None:
        self.image = common.layer_picker(self.viewer, "Image", "image")
        self.label_layer = common.layer_picker(self.viewer, "Labels", "annotations")
        self.frames_note = common.note()
        #: The job's settings (TrainSegParams): the same object the CLI's flags and --params build.
        self.form = ParamsForm(TrainSegParams, controls={"device": common.device_picker()})
        self.form.margins = (0, 0, 0, 0)
        # a text field, not a FileEdit: FileEdit turns an empty value into the current folder, and
        # training must write only where the user said
        self.output_folder = LineEdit(label="output folder",
                                      tooltip="Folder for best.pt, last.pt, params.json, history.csv")
        self.overwrite = CheckBox(label="replace a model in the folder", value=False)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.continue_button = PushButton(text="Continue", enabled=False,
                                          tooltip="Resume from last.pt (raise 'epochs' to train longer).")
        self.browse_button = PushButton(text="Choose output folder…")
        buttons = common.button_row(self.train_button, self.stop_button, self.continue_button)
        self.plot = LivePlot(metrics=("seg", "f1"))
        self.status = common.note("")
        inputs = Container(widgets=[self.image, self.label_layer], labels=True)
        outputs = Container(widgets=[self.output_folder, self.overwrite], labels=True)
        for c in (inputs, outputs):
            c.margins = (0, 0, 0, 0)
        self.extend([inputs, self.frames_note, self.form, outputs, self.browse_button, buttons, self.status])
        self.native.layout().addWidget(self.plot)

    def _connect(self) -> None:
        self.image.changed.connect(self._check)
        self.label_layer.changed.connect(self._check)
        self.form.controls["frames"].changed.connect(self._check)
        self.form.controls["val_frames"].changed.connect(self._check)
        self.form.controls["preset"].changed.connect(self._apply_preset)
        self.train_button.changed.connect(lambda: self.train())
        self.stop_button.changed.connect(self.runner.stop)
        self.continue_button.changed.connect(lambda: self.train(resume=True))
        self.browse_button.changed.connect(self._browse)
        self.native.destroyed.connect(self._on_destroyed)

    def _probe_devices(self) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(common.probe_devices, _ignore_errors=True)
        worker.returned.connect(lambda devices: None if self._closed else
                                common.refresh_device_picker(self.form.controls["device"], devices))
        worker.finished.connect(lambda: setattr(self, "_probe_worker", None))
        self._probe_worker = worker
        worker.start()

    @property
    def busy(self) -> bool:
        return bool(self.runner.running or self._probe_worker is not None)

    # ------------------------------------------------------------------ inputs
    def annotated(self) -> list[int]:
        """Frames of the annotations layer with at least one labelled pixel."""
        from napari_cellnet.segmentation.data import annotated_frames

        layer = self.label_layer.value
        if layer is None:
            return []
        data = layer.data
        return annotated_frames(data if data.ndim == 3 else data[None])

    def check_inputs(self) -> str | None:
        """Why training cannot start (None when it can)."""
        img, lab = self.image.value, self.label_layer.value
        if img is None or lab is None:
            return "Pick the movie (Image layer) and its annotations (Labels layer with a few frames painted)."
        shape = tuple(lab.data.shape)
        ishape = tuple(img.data.shape)
        spatial = ishape[:-1] if getattr(img, "rgb", False) else ishape
        if len(spatial) == 4:  # (T, C, Y, X)
            spatial = (spatial[0], *spatial[2:])
        if tuple(spatial) != shape:
            return (f"The annotations {lab.name!r} have shape {shape} but the movie {img.name!r} has "
                    f"{ishape}; draw the labels on this movie (same frames and size).")
        frames = self.annotated()
        if not frames:
            return f"{lab.name!r} has no labelled pixel: paint the cells of a few frames first."
        for name in ("frames", "val_frames"):
            try:
                chosen = self.form.read(name)
            except ValueError as err:
                return str(err)
            bad = frames_outside(chosen, shape[0])
            if bad:
                return (f"{self.form.infos[name].label.capitalize()} {bad} are outside the movie "
                        f"(frames 0 to {shape[0] - 1}).")
        return None

    def _check(self, value: Any = None) -> bool:
        why = self.check_inputs()
        frames = self.annotated() if self.label_layer.value is not None else []
        text = f"Annotated frames: {', '.join(map(str, frames))} ({len(frames)})" if frames else ""
        self.frames_note.value = (text + ("\n" if text and why else "") + (why or "")) if (text or why) else ""
        # empty frame fields mean "automatic": say which annotated frames that is
        shown = ", ".join(map(str, frames)) if frames else "none yet"
        self.form.controls["frames"].native.setPlaceholderText(f"auto: annotated frames ({shown}) not validated")
        self.train_button.enabled = why is None and not self.runner.running
        return why is None

    def _apply_preset(self, value: Any = None) -> None:
        """Choosing a preset fills in its settings (the others keep the user's values)."""
        self.form.set_values(TrainSegParams.preset_values(self.form.controls["preset"].value))

    def restore_defaults(self) -> None:
        """Every setting back to its :class:`TrainSegParams` default (the form's "Defaults" button)."""
        self.form.reset()

    def build_params(self) -> TrainSegParams:
        """The :class:`~napari_cellnet.segmentation.params.TrainSegParams` the form shows.

        Raises
        ------
        ValueError
            For a value the engine refuses (its message says what to change).
        """
        why = self.check_inputs()
        if why:
            raise ValueError(why)
        return self.form.value

    def _browse(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self.native, "Output folder for the model")
        if folder:
            self.output_folder.value = folder

    def _out_dir(self) -> Path:
        text = str(self.output_folder.value or "").strip()
        if not text:
            raise ValueError("Choose an output folder for the model (where best.pt and last.pt are written).")
        return Path(text).expanduser()

    # ------------------------------------------------------------------ running
    def train(self, resume: bool = False) -> Any:
        """Start (or with ``resume`` continue) training; returns the worker or None."""
        if self.refuse_if_running("Training"):
            return None
        try:
            params = self.build_params()
            out = self._out_dir()
        except (ValueError, FileNotFoundError) as err:
            show_error(f"Train segmentation: {err}")
            self.status.value = str(err)
            return None
        resume_path = out / "last.pt" if resume else None
        if resume_path is not None and not resume_path.is_file():
            show_error(f"Train segmentation: nothing to continue: {resume_path} does not exist. Press Train.")
            return None
        images, labels = self.image.value.data, self.label_layer.value.data
        image_axes = "TYXC" if getattr(self.image.value, "rgb", False) else None
        sources = {"image_layer": self.image.value.name, "labels_layer": self.label_layer.value.name}
        overwrite = bool(self.overwrite.value)
        if not resume:
            self.history = []
            self.plot.clear()
        self.status.value = "Preparing the training data…"

        def make_job() -> Any:
            from napari_cellnet.segmentation.training import train_segmentation

            return train_segmentation(images, labels, params, out, resume=resume_path, overwrite=overwrite,
                                      image_axes=image_axes, sources=sources)

        return self.runner.start(make_job, threads=cpu_threads())

    def _on_event(self, event: Any) -> None:
        if self._closed:
            return
        if isinstance(event, Progress) and event.stage == "prepare":
            self.status.value = event.message
        elif isinstance(event, TrainEvent):
            if event.kind == "epoch":
                row = {"epoch": event.epoch, "train_loss": event.train_loss, **(event.val_metrics or {})}
                self.history.append(row)
                best = event.best.get("epoch") if event.best else None
                self.plot.add_epoch(event.epoch, event.train_loss, event.val_metrics, best_epoch=best)
                val = event.val_metrics or {}
                shown = ", ".join(f"{k} {val[k]:.3f}" for k in ("val_loss", "seg", "f1") if k in val)
                self.status.value = (f"Epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f}"
                                     + (f", {shown}" if shown else "")
                                     + (f"; best epoch {best}" if best else ""))
            elif event.step == 1 or event.step == event.steps_per_epoch:
                eta = f", ~{event.eta_s:.0f} s left" if event.eta_s is not None else ""
                self.status.value = (f"Epoch {event.epoch}/{event.epochs}, step {event.step}/"
                                     f"{event.steps_per_epoch}: loss {event.train_loss:.4f}{eta}")

    def _finished(self, result: Any) -> None:
        if self._closed:
            return
        self.result = result
        if result.history:
            self.plot.set_history(result.history)
            if result.best:
                self.plot.best_epoch = result.best.get("epoch")
        model = result.model_path
        self.continue_button.enabled = result.last_path is not None and Path(result.last_path).is_file()
        if model is not None:
            common.MODELS.add("segmentation", str(model))
        how = "stopped" if result.stopped else ("stopped early (no improvement)" if result.early_stopped else "done")
        best = (f"best {result.best['metric']} {result.best['value']:.3f} at epoch {result.best['epoch']}"
                if result.best else "no complete epoch")
        self.status.value = (f"Training {how} after {result.epochs_done} epoch(s) ({result.wall_s:.0f} s): {best}. "
                             + (f"Model: {model} (now selectable in Segment)." if model else
                                "No model saved yet (stopped before the first epoch ended)."))

    def _lock_controls(self, running: bool) -> None:
        self.stop_button.enabled = running
        for w in (self.form, self.image, self.label_layer, self.output_folder, self.overwrite, self.browse_button):
            w.enabled = not running
        if running:
            self.continue_button.enabled = False
        self._check()
