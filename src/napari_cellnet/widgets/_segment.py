"""The Segment widget: run the temporal U-Net on a movie layer without freezing napari.

Everything scientific happens in :func:`napari_cellnet.segmentation.inference.segment` (the same job the
CLI runs); this widget only collects the inputs, runs the job in a worker
(:class:`~napari_cellnet.widgets._jobs.JobRunner`), and shows the result as layers that
line up with the movie:

* ``<image> labels`` (Labels, IDs consistent through time, per-object ``features``),
* ``<image> probability`` (foreground probability, optional),
* ``<image> tracks`` (centroid tracks with division graph, optional),

each carrying the run's parameters, model, device and package version in
``layer.metadata["napari_cellnet"]``. Running again updates these layers. After a run,
changing the threshold or minimum size re-labels the kept probability map (no network run).

The settings are a :class:`~napari_cellnet.widgets._params.ParamsForm` of
:class:`~napari_cellnet.segmentation.params.SegmentParams` (``widget.form``): the same object,
defaults and help as ``napari-cellnet segment``'s flags, with Load/Save settings (the CLI's
``--params``). Settings left empty mean "the model's": the chosen model's threshold, minimum
size and scale are shown greyed in those fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from napari_cellnet.core import io
from napari_cellnet.segmentation.params import SegmentParams
from napari_cellnet.widgets import _common as common
from napari_cellnet.widgets._jobs import JobRunner, cpu_threads
from napari_cellnet.widgets._layers import add_or_update
from napari_cellnet.widgets._params import ParamsForm
from napari_cellnet.widgets._segment_work import (
    FROM_MODEL,
    _guess_axes_for,
    _load_for_segment,
    _probe,
    _ranges,
    relabel,
)

BACKGROUND = (FROM_MODEL, "on", "off")


class SegmentWidget(common.JobWidget, Container):
    """Segment a time-lapse Image layer with a temporal U-Net (dock widget).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are listed and where results go.

    Attributes
    ----------
    result : SegmentationResult or None
        The last run's result (labels, probabilities, tracks, frames done, parameters).
    runner : JobRunner
        Runs the job; ``runner.worker`` is the running worker (for tests: wait on its
        ``finished`` signal).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.result: Any = None
        self._resuming: Any = None  # the stopped result a running resume will extend
        self.model_info: dict[str, Any] | None = None
        self.outputs: dict[str, Any] = {}
        self._source: Any = None
        self._closed = False
        self._build()
        self.runner = JobRunner("Segment", self._show_result, on_state=self._set_running)
        self._relabel_timer = QTimer()
        self._relabel_timer.setSingleShot(True)
        self._relabel_timer.setInterval(250)
        self._relabel_timer.timeout.connect(self._relabel)
        self._relabel_worker: Any = None
        self._probe_worker: Any = None
        self._publish_queue: list[Any] = []
        self._connect()
        self._show_checkpoint_field()
        self._on_image()
        self._start_probe()  # the model's calibrated threshold and min size, shown as what "the model's" means

    def _build(self) -> None:
        self.image = common.layer_picker(self.viewer, "Image", "image")
        self.axes = LineEdit(label="axes", tooltip="One letter per dimension of the layer, from T C Z Y X.")
        self.axes_note = common.note()
        self.model = common.model_picker("segmentation",
                                         tooltip="The bundled demo model, a model trained in this session, or a checkpoint file.")
        # text, not a FileEdit: FileEdit turns an empty value into the current folder
        self.checkpoint = LineEdit(label="checkpoint file", tooltip="A .pt segmentation model (use Browse…)")
        self.background = ComboBox(label="background subtraction", choices=BACKGROUND, value=FROM_MODEL,
                                   tooltip="Temporal-median background subtraction: as the model was trained, "
                                           "or forced on/off.")
        self.probability_map = CheckBox(label="add probability map", value=True)
        self.tracks = CheckBox(label="add tracks", value=True)
        #: The job's settings (SegmentParams): the same object the CLI's flags and --params build.
        self.form = ParamsForm(SegmentParams, controls={"device": common.device_picker()})
        self.form.margins = (0, 0, 0, 0)
        self.model_note = common.note("reading model…")
        self.device_note = common.note("detecting devices…")
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False,
                                        tooltip="Continue a stopped run from its next frame, with the same settings.")
        self.browse_button = PushButton(text="Browse for a checkpoint…")
        self.status = common.note("")
        buttons = common.button_row(self.run_button, self.stop_button, self.resume_button)
        inputs = Container(widgets=[self.image, self.axes], labels=True)
        models = Container(widgets=[self.model, self.checkpoint], labels=True)
        outputs = Container(widgets=[self.background, self.probability_map, self.tracks], labels=True)
        for c in (inputs, models, outputs):
            c.margins = (0, 0, 0, 0)
        self.extend([inputs, self.axes_note, models, self.browse_button, self.model_note, self.form, outputs,
                     self.device_note, buttons, self.status])

    def _connect(self) -> None:
        self.image.changed.connect(self._on_image)
        self.axes.changed.connect(self._validate)
        self.model.changed.connect(self._on_model)
        self.checkpoint.changed.connect(self._on_model)
        self.form.controls["device"].changed.connect(self._show_device)
        self.form.controls["channel"].changed.connect(self._validate)
        self.form.controls["threshold"].changed.connect(self._schedule_relabel)
        self.form.controls["min_size"].changed.connect(self._schedule_relabel)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.runner.stop)
        self.resume_button.changed.connect(self.resume)
        self.browse_button.changed.connect(self._browse)
        common.MODELS.added.connect(self._on_model_added)
        self.native.destroyed.connect(self._on_destroyed)

    @property
    def busy(self) -> bool:
        """True while a job, a model/device probe, a re-threshold or adding result layers is under way."""
        return bool(self.runner.running or self._probe_worker is not None or self._relabel_worker is not None
                    or self._relabel_timer.isActive() or self._publish_queue)

    # ------------------------------------------------------------------ inputs
    def _on_image(self, value: Any = None) -> None:
        layer = self.image.value
        self.axes.value = _guess_axes_for(layer) if layer is not None else ""
        self._validate()

    def axes_error(self) -> str | None:
        """Why the current inputs cannot run (None when they can)."""
        layer = self.image.value
        if layer is None:
            return "Open or select an Image layer (a time-lapse movie) to segment."
        try:
            ax = io.validate_axes(self.axes.value, layer.data.shape, f"layer {layer.name!r}")
        except ValueError as err:
            return str(err)
        if getattr(layer, "rgb", False) and not ax.endswith("C"):
            return f"Layer {layer.name!r} is RGB: its last axis is colour, so the axes must end with C (e.g. 'TYXC')."
        return None

    def _validate(self, value: Any = None) -> bool:
        why = self.axes_error()
        layer_missing = self.image.value is None
        common.set_invalid(self.axes, None if layer_missing else why)
        self.axes_note.value = why or self._channel_hint()
        self.run_button.enabled = why is None and not self.runner.running
        return why is None

    def _channel_hint(self) -> str:
        """A note for a multi-channel movie whose channel is not chosen yet."""
        layer, axes = self.image.value, str(self.axes.value).upper()
        if layer is None or "C" not in axes or len(axes) != layer.data.ndim:
            return ""
        n = int(layer.data.shape[axes.index("C")])
        if n < 2 or str(self.form.controls["channel"].value).strip():
            return ""
        takes = self.model_info["in_channels"] if self.model_info else None
        if takes == n:
            return ""
        return (f"The movie has {n} channels" + (f" and the model takes {takes}" if takes else "")
                + ": set 'channel' (e.g. 0) to segment one of them.")

    def _show_checkpoint_field(self) -> None:
        own_file = self.model.value == common.FILE
        self.checkpoint.visible = own_file
        self.browse_button.visible = own_file

    def _on_model(self, value: Any = None) -> None:
        self._show_checkpoint_field()
        self._start_probe()

    def _browse(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Segmentation model", "", "napari-cellnet model (*.pt)")
        if path:
            self.checkpoint.value = path

    def _on_model_added(self, task: str, path: str) -> None:
        if not self._closed:
            common.select_added_model(self.model, "segmentation", task, path)

    def _model_path(self) -> Path:
        return common.resolve_model(self.model.value, self.checkpoint.value, "segmentation")

    def _start_probe(self) -> None:
        try:
            path: Path | None = self._model_path()
            error = None
        except (FileNotFoundError, ValueError) as err:
            path, error = None, str(err)
        self.model_info = None
        self.model_note.value = error or "reading model…"
        worker = create_worker(_probe, path, _ignore_errors=True)
        # only the latest probe counts (the user may pick another model meanwhile)
        worker.returned.connect(lambda out: self._probed(out) if worker is self._probe_worker else None)
        worker.errored.connect(lambda err: setattr(self.model_note, "value", f"Cannot read the model: {err}"))
        worker.finished.connect(lambda: self._probe_finished(worker))
        self._probe_worker = worker
        worker.start()

    def _probe_finished(self, worker: Any) -> None:
        if self._probe_worker is worker:
            self._probe_worker = None

    def _probed(self, out: tuple[dict[str, str], dict[str, Any] | None, str | None]) -> None:
        if self._closed:
            return
        devices, info, error = out
        common.refresh_device_picker(self.form.controls["device"], devices)
        self._show_device()
        self.model_info = info
        self._show_model_values()
        self._validate()
        if info is None:
            if error:
                self.model_note.value = f"Cannot use this model: {error}"
            return
        val = ", ".join(f"{k} {v:.2f}" for k, v in info["val"].items() if k in ("seg", "f1", "ap"))
        self.model_note.value = (
            f"{info['preset']} U-Net, window {info['window']} frame(s) x {info['in_channels']} channel(s), "
            f"{info['classes']} classes, edge '{info['edge']}', background subtraction "
            f"{'on' if info['background_subtraction'] else 'off'}" + (f"; validation {val}" if val else "")
        )

    def _show_model_values(self) -> None:
        """Show what "the model's" stands for in the fields left to the model (threshold, min size, scale)."""
        info = self.model_info or {}
        for name in ("threshold", "min_size", "scale"):
            control = self.form.controls[name]
            if isinstance(control, LineEdit):
                value = info.get(name)
                shown = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
                control.native.setPlaceholderText(f"{shown} (the model's)" if shown else "the model's")

    def _show_device(self, value: Any = None) -> None:
        name = self.form.controls["device"].value
        desc = common.DEVICES.get(name, "")
        self.device_note.value = desc or "detecting devices…"

    def restore_defaults(self) -> None:
        """Every setting back to its :class:`SegmentParams` default (the form's "Defaults" button)."""
        self.form.reset()

    # ------------------------------------------------------------------ running
    def job_arguments(self) -> dict[str, Any]:
        """What :func:`napari_cellnet.segmentation.inference.segment` gets from the widget (GUI thread).

        Raises
        ------
        ValueError, FileNotFoundError
            For missing or invalid inputs, with what to change.
        """
        why = self.axes_error()
        if why:
            raise ValueError(why)
        layer = self.image.value
        return {
            "layer": layer,
            "movie": layer.data,
            "path": self._model_path(),
            "axes": io.validate_axes(self.axes.value, layer.data.shape),
            "params": self.form.value,
            "background": self.background.value,
            "keep_probabilities": True,
        }

    def make_job(self, args: dict[str, Any]) -> Any:
        """A job generator for ``args`` (called in the worker thread)."""
        from napari_cellnet.segmentation.inference import segment

        ckpt = _load_for_segment(args["path"], args["background"])
        return segment(args["movie"], ckpt, args["params"], axes=args["axes"],
                       keep_probabilities=args["keep_probabilities"], **args.get("resume", {}))

    def run(self) -> Any:
        """Start segmenting the selected layer; returns the worker (None if inputs are invalid)."""
        if self.refuse_if_running("Segment"):
            return None
        try:
            args = self.job_arguments()
        except (ValueError, FileNotFoundError) as err:
            show_error(f"Segment: {err}")
            self.status.value = str(err)
            return None
        self._source = args["layer"]
        self._args = args
        self._resuming = None
        self.status.value = f"Segmenting {args['layer'].name!r} …"
        return self.runner.start(lambda: self.make_job(args), threads=cpu_threads())

    def resume(self) -> Any:
        """Continue the last, stopped run from its next frame; returns the worker (or None)."""
        stopped = self.result
        if self.runner.running or stopped is None or not stopped.stopped:
            return None
        if self._source not in self.viewer.layers:
            show_error("Segment: the image layer of the stopped run is gone; press Run to start again.")
            return None
        try:
            args = {**self._args, "resume": stopped.resume_arguments()}
        except ValueError as err:
            show_error(f"Segment: {err}")
            return None
        self._resuming = stopped
        start = args["resume"]["start"]
        self.status.value = f"Resuming {self._source.name!r} from frame {start} with the stopped run's settings …"
        return self.runner.start(lambda: self.make_job(args), threads=cpu_threads())

    def _lock_controls(self, running: bool) -> None:
        self.stop_button.enabled = running
        self.resume_button.enabled = (not running and self.result is not None and bool(self.result.stopped)
                                      and self.runner.last_error is None)
        for w in (self.form, self.model, self.checkpoint, self.browse_button, self.background):
            w.enabled = not running
        self.image.enabled = not running
        self.axes.enabled = not running
        self._validate()

    def _show_result(self, result: Any) -> None:
        if self._closed:
            return
        if self._resuming is not None:
            result = self._resuming.extended_by(result)
            self._resuming = None
        self.result = result
        self._publish(result.labels, result.probabilities, result.tracks, result.graph, result.features,
                      result.params)
        done, total = len(result.frames_done), int(result.params.get("frames_total", len(result.labels)))
        skipped = result.params.get("skipped_frames") or []
        if result.stopped:
            self.status.value = (f"Stopped: {done} of {total} frames segmented and kept "
                                 f"(frames {_ranges(result.frames_done)}).")
        else:
            extra = f"; frames {_ranges(skipped)} skipped (edge policy 'skip')" if skipped else ""
            self.status.value = (f"Done: {done} frames, {len(np.unique(result.labels)) - 1} cell IDs, "
                                 f"{result.params.get('seconds', 0):.1f} s on {result.params.get('device')}{extra}.")

    def _publish(self, labels: np.ndarray, probabilities: np.ndarray | None, tracks: np.ndarray,
                 graph: dict[int, list[int]], features: dict[str, Any], params: dict[str, Any]) -> None:
        """Put the result into the viewer, one layer per event-loop turn.

        Adding a large layer takes napari a noticeable time in the GUI thread; adding them
        one at a time (Labels first) lets the viewer repaint and react in between instead
        of freezing once for all of them (measured in benchmarks/bench_gui.py).
        """
        layer = self._source
        model = {"model": params.get("model"), "checkpoint": params.get("checkpoint"),
                 "device": params.get("device"), "device_description": params.get("device_description")}
        meta = {"parameters": params, **model, "frames_done": list(self.result.frames_done)}
        base = layer.name
        steps = []

        # napari looks a hovered label up in the `index` column (else it shows row = value)
        table = {"index": np.asarray(features.get("label", []), dtype=np.int64), **features}

        def add_labels() -> None:
            self.outputs["labels"] = add_or_update(
                self.viewer, "labels", labels, "segment/labels", f"{base} labels", source=layer, metadata=meta,
                features=table)
            self.viewer.layers.selection.active = self.outputs["labels"]

        steps.append(add_labels)
        if probabilities is not None and self.probability_map.value:
            def add_probability() -> None:
                self.outputs["probability"] = add_or_update(
                    self.viewer, "image", probabilities, "segment/probability", f"{base} probability",
                    source=layer, metadata=meta, colormap="magma", contrast_limits=(0.0, 1.0), blending="additive",
                    visible=False)

            steps.append(add_probability)
        if self.tracks.value and len(tracks):
            def add_tracks() -> None:
                known = set(np.asarray(tracks)[:, 0].astype(int).tolist())
                g = {int(k): [int(v) for v in vs if int(v) in known] for k, vs in (graph or {}).items()
                     if int(k) in known}
                g = {k: v for k, v in g.items() if v}
                old = self.outputs.get("tracks")
                if old is not None and old in self.viewer.layers:
                    old.graph = {}
                self.outputs["tracks"] = add_or_update(
                    self.viewer, "tracks", tracks, "segment/tracks", f"{base} tracks", source=layer, metadata=meta,
                    graph=g, tail_length=5, blending="translucent")
                self.outputs["tracks"].graph = g

            steps.append(add_tracks)

        def select_labels() -> None:  # the Labels layer, not the last one added, is the one to edit
            if self.outputs.get("labels") in self.viewer.layers:
                self.viewer.layers.selection.active = self.outputs["labels"]

        steps.append(select_labels)
        self._publish_queue.extend(steps)
        self._next_publish()

    def _next_publish(self) -> None:
        if self._closed or not self._publish_queue:
            self._publish_queue.clear()
            return
        step = self._publish_queue.pop(0)
        try:
            step()
        except Exception as err:  # a layer napari refuses must not leave the widget busy forever
            self._publish_queue.clear()
            show_error(f"Segment: could not show the result: {err}")
            return
        if self._publish_queue:
            QTimer.singleShot(0, self._next_publish)

    # ------------------------------------------------------------------ live re-threshold
    def _schedule_relabel(self, value: Any = None) -> None:
        if self.result is None or self.result.probabilities is None or self.runner.running:
            return
        self._relabel_timer.start()

    def _relabel(self) -> None:
        if self._closed or self.result is None or self.result.probabilities is None:
            return
        if self._relabel_worker is not None:  # one at a time; run again when it ends
            self._relabel_timer.start()
            return
        try:
            thr, ms = self._relabel_settings()
        except ValueError as err:  # a half-typed number: wait for the rest
            self.status.value = str(err)
            return
        worker = create_worker(relabel, self.result.probabilities, list(self.result.frames_done), thr, ms,
                               _ignore_errors=True)
        worker.returned.connect(lambda out: self._relabelled(out, thr, ms))
        worker.errored.connect(lambda err: show_error(f"Re-threshold failed: {err}"))
        worker.finished.connect(lambda: setattr(self, "_relabel_worker", None))
        self._relabel_worker = worker
        self.status.value = f"Re-labelling at threshold {thr:.2f}, min size {ms} …"
        worker.start()

    def _relabel_settings(self) -> tuple[float, int]:
        """Threshold and min size for a re-label: the fields, or the last run's (the model's) when empty."""
        used = self.result.params
        thr = self.form.read("threshold")
        ms = self.form.read("min_size")
        thr = float(used.get("threshold", 0.5) if thr is None else thr)
        ms = int(used.get("min_size", 30) if ms is None else ms)
        SegmentParams(threshold=thr, min_size=ms).validate()
        return thr, ms

    def _relabelled(self, out: dict[str, Any], threshold: float, min_size: int) -> None:
        if self._closed or self.result is None:
            return
        params = {**self.result.params, "threshold": threshold, "min_size": min_size, "split": "distance",
                  "relabelled_from_probabilities": True}
        self._publish(out["labels"], None, out["tracks"], {}, out["features"], params)
        n = len(np.unique(out["labels"])) - 1
        self.status.value = (f"Re-labelled from the probability map: threshold {threshold:.2f}, min size "
                             f"{min_size}, {n} cell IDs (touching cells split by distance; Run again to use "
                             "the network's boundary class).")

    # ------------------------------------------------------------------ teardown
    def _disconnect(self) -> None:
        try:
            common.MODELS.added.disconnect(self._on_model_added)
        except (TypeError, ValueError):
            pass
