"""The Train segmentation widget: teach the temporal U-Net from a few annotated frames.

A biologist paints cells on a few frames of a Labels layer, picks the movie and the labels
here and presses Train. The widget builds a :class:`napari_cellnet.segmentation.training.TrainSegParams`
(the same parameter object ``napari-cellnet train-seg`` builds) and runs
:func:`napari_cellnet.segmentation.training.train_segmentation` in a worker: a live plot shows training
and validation loss and the validation SEG/F1 per epoch, Stop keeps the best model so far,
Continue resumes from ``last.pt`` (with more epochs if asked). When training ends the new
model is announced to the Segment widget, which selects it.

Only annotated frames count (a frame with any labelled pixel); the widget shows which ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import Container, LineEdit, PushButton
from napari.utils.notifications import show_error, show_info

from napari_cellnet.core.jobs import Progress, TrainEvent
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._jobs import JobRunner, cpu_threads
from napari_cellnet.widgets._plot import LivePlot

PRESETS = ("light", "stemnet")
OPTIMIZERS = ("adamw", "sgd", "adam", "rmsprop", "adamax", "nadam", "adagrad", "adadelta")
LOSSES = ("ce+dice", "ce", "dice")
AUGMENT = ("temporal", "light", "strong", "none")
EDGES = ("reflect", "replicate", "skip")


def train_seg_parameters(
    preset: str = "light",
    window: int = 5,
    classes: int = 3,
    loss: str = "ce+dice",
    optimizer: str = "adamw",
    lr: float = 2e-3,
    epochs: int = 40,
    batch_size: int = 8,
    patch_size: int = 128,
    augment: str = "temporal",
    aug_rate: int = 1,
    edge: str = "reflect",
    background_subtraction: bool = False,
    scale: float = 1.0,
    device: str = "auto",
    output_folder: str = "",
    overwrite: bool = False,
) -> None:
    """Training settings (the widget's persisted parameters).

    Parameters
    ----------
    preset : str
        ``light`` (fast default) or ``stemnet`` (the thesis configuration: 2 classes,
        weighted cross-entropy, SGD lr 0.15 with decay, background subtraction). Choosing a
        preset fills in the fields below.
    window : int
        Frames the network sees (odd): 1 = single frames, 5 = StemNet's Network5.
    classes : int
        2 = background/cell, 3 = background/cell/boundary (separates touching cells).
    loss, optimizer, lr : str, str, float
        Loss function, optimiser and learning rate.
    epochs, batch_size, patch_size : int
        Training length, patches per step, patch side in pixels (a multiple of 16).
    augment, aug_rate : str, int
        Augmentation preset and how many augmented patches per epoch (x1 ... x10).
    edge : str
        What the window uses beyond the movie's ends (stored in the model).
    background_subtraction : bool
        Subtract the per-pixel temporal median (StemNet).
    scale : float
        Input scale factor: frames and labels are enlarged by this much before the network
        (stored in the model, so segmenting applies it too). 1 keeps the movie's pixels.
    device : str
        ``auto``, ``cpu``, ``cuda:N`` or ``mps``.
    output_folder : Path
        Where ``best.pt``, ``last.pt``, ``params.json`` and ``history.csv`` go.
    overwrite : bool
        Replace a model already in the output folder.
    """


PARAM_OPTIONS: dict[str, Any] = {
    "preset": {"choices": PRESETS},
    "window": {"widget_type": "ComboBox", "choices": [1, 3, 5, 7]},
    "classes": {"widget_type": "ComboBox", "choices": [2, 3]},
    "loss": {"choices": LOSSES},
    "optimizer": {"choices": OPTIMIZERS},
    "lr": {"widget_type": "FloatSpinBox", "min": 1e-6, "max": 1.0, "step": 1e-4, "label": "learning rate"},
    "epochs": {"min": 1, "max": 10000},
    "batch_size": {"min": 1, "max": 256, "label": "batch size"},
    "patch_size": {"min": 32, "max": 1024, "step": 16, "label": "patch size (px)"},
    "augment": {"choices": AUGMENT, "label": "augmentation"},
    "aug_rate": {"min": 1, "max": 10, "label": "augmentation rate (x)"},
    "edge": {"choices": EDGES, "label": "edge policy"},
    "background_subtraction": {"label": "background subtraction"},
    "scale": {"widget_type": "FloatSpinBox", "min": 0.25, "max": 8.0, "step": 0.25, "label": "input scale",
              "tooltip": "Enlarge frames and labels by this factor before the network (cellpose's diameter "
                         "rescaling); the model stores it and segmenting applies it. 1 = the movie's pixels."},
    "device": {"widget_type": "ComboBox", "choices": common.device_choices},
    # a text field, not a FileEdit: FileEdit turns an empty value into the current folder, and
    # training must write only where the user said
    "output_folder": {"label": "output folder", "tooltip": "Folder for best.pt, last.pt, params.json, history.csv"},
    "overwrite": {"label": "replace a model in the folder"},
}
# fields a preset sets (the rest keep the user's values)
_PRESET_FIELDS = ("classes", "loss", "optimizer", "lr", "batch_size", "patch_size", "background_subtraction")


def parse_frames(text: str, n_frames: int) -> list[int] | None:
    """``"auto"``/empty -> None (automatic); ``"none"`` -> []; ``"2, 5-7"`` -> [2, 5, 6, 7].

    Raises
    ------
    ValueError
        For text that is not a frame list or frames outside ``0 .. n_frames - 1``.
    """
    t = (text or "").strip().lower()
    if t in ("", "auto"):
        return None
    if t == "none":
        return []
    out: list[int] = []
    for part in t.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"Cannot read frames {text!r}: write 'auto', 'none' or numbers like '3, 7-9'.") from None
    bad = [f for f in out if not 0 <= f < n_frames]
    if bad:
        raise ValueError(f"Frames {bad} are outside the movie (frames 0 to {n_frames - 1}).")
    return sorted(set(out))


class TrainSegmentationWidget(common.JobWidget, common.DeviceProbing, Container):
    """Train a temporal U-Net on annotated frames of a Labels layer (dock widget)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.result: Any = None
        self.history: list[dict[str, Any]] = []
        self._closed = False
        self._probe_worker: Any = None
        self.image = common.layer_picker(self.viewer, "Image", "image")
        self.label_layer = common.layer_picker(self.viewer, "Labels", "annotations")
        self.val_frames = LineEdit(label="validation frames", value="auto",
                                   tooltip="'auto', 'none', or frames like '3, 8'. Only annotated frames count.")
        self.frames_note = common.note()
        self.params = common.parameter_panel(train_seg_parameters, **PARAM_OPTIONS)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.continue_button = PushButton(text="Continue", enabled=False,
                                          tooltip="Resume from last.pt (raise 'epochs' to train longer).")
        self.defaults_button = PushButton(text="Restore defaults")
        self.browse_button = PushButton(text="Choose output folder…")
        buttons = Container(widgets=[self.train_button, self.stop_button, self.continue_button,
                                     self.defaults_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.plot = LivePlot(metrics=("seg", "f1"))
        self.status = common.note("")
        inputs = Container(widgets=[self.image, self.label_layer, self.val_frames], labels=True)
        inputs.margins = (0, 0, 0, 0)
        self.params.margins = (0, 0, 0, 0)
        self.extend([inputs, self.frames_note, self.params, self.browse_button, buttons, self.status])
        self.native.layout().addWidget(self.plot)

        self.runner = JobRunner("Train segmentation", self._finished, on_event=self._on_event,
                                on_state=self._set_running)
        self.image.changed.connect(self._check)
        self.label_layer.changed.connect(self._check)
        self.val_frames.changed.connect(self._check)
        self.params.preset.changed.connect(self._apply_preset)
        self.train_button.changed.connect(lambda: self.train())
        self.stop_button.changed.connect(self.runner.stop)
        self.continue_button.changed.connect(lambda: self.train(resume=True))
        self.defaults_button.changed.connect(self.restore_defaults)
        self.browse_button.changed.connect(self._browse)
        self.native.destroyed.connect(self._on_destroyed)
        self._check()
        self._probe_devices()

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
        try:
            parse_frames(self.val_frames.value, shape[0])
        except ValueError as err:
            return str(err)
        return None

    def _check(self, value: Any = None) -> bool:
        why = self.check_inputs()
        frames = self.annotated() if self.label_layer.value is not None else []
        text = f"Annotated frames: {', '.join(map(str, frames))} ({len(frames)})" if frames else ""
        self.frames_note.value = (text + ("\n" if text and why else "") + (why or "")) if (text or why) else ""
        common.set_invalid(self.val_frames, None)
        self.train_button.enabled = why is None and not self.runner.running
        return why is None

    def _apply_preset(self, value: Any = None) -> None:
        from napari_cellnet.segmentation.training import TrainSegParams

        p = TrainSegParams.from_preset(self.params.preset.value)
        for name in _PRESET_FIELDS:
            try:
                getattr(self.params, name).value = getattr(p, name)
            except ValueError:
                pass

    def restore_defaults(self) -> None:
        """Put every parameter back to its default."""
        common.restore_defaults(self.params, train_seg_parameters)
        self.val_frames.value = "auto"

    def build_params(self) -> Any:
        """The :class:`~napari_cellnet.segmentation.training.TrainSegParams` of the current fields.

        Raises
        ------
        ValueError
            For a value the engine refuses (its message says what to change).
        """
        from napari_cellnet.segmentation.training import TrainSegParams

        p = self.params
        val = parse_frames(self.val_frames.value, int(self.label_layer.value.data.shape[0]))
        params = TrainSegParams.from_preset(
            p.preset.value, window=int(p.window.value), classes=int(p.classes.value), loss=p.loss.value,
            optimizer=p.optimizer.value, lr=float(p.lr.value), epochs=int(p.epochs.value),
            batch_size=int(p.batch_size.value), patch_size=int(p.patch_size.value), augment=p.augment.value,
            aug_rate=int(p.aug_rate.value), edge=p.edge.value, background_subtraction=bool(
                p.background_subtraction.value), scale=float(p.scale.value), device=p.device.value, val_frames=val)
        params.validate()
        return params

    def _browse(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self.native, "Output folder for the model")
        if folder:
            self.params.output_folder.value = folder

    def _out_dir(self) -> Path:
        text = str(self.params.output_folder.value or "").strip()
        if not text:
            raise ValueError("Choose an output folder for the model (where best.pt and last.pt are written).")
        return Path(text).expanduser()

    # ------------------------------------------------------------------ running
    def train(self, resume: bool = False) -> Any:
        """Start (or with ``resume`` continue) training; returns the worker or None."""
        if self.runner.running:
            show_info("Training is already running; press Stop first.")
            return None
        why = self.check_inputs()
        try:
            if why:
                raise ValueError(why)
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
        overwrite = bool(self.params.overwrite.value)
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
        self.params.enabled = not running
        for w in (self.image, self.label_layer, self.val_frames):
            w.enabled = not running
        if running:
            self.continue_button.enabled = False
        self._check()
