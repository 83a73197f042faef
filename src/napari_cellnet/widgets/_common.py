"""Pieces every napari-cellnet widget shares: layer pickers, persisted parameters, models, devices.

* **Layer pickers** list the viewer's layers of one type and follow the layer list, whether
  or not the widget is docked yet (they ask *this* widget's viewer, not a global one).
* **Parameters persist** through magicgui (``persist=True``): a ``FunctionGui`` built from a
  plain function whose defaults are the documented defaults, so "Restore defaults" is just
  "set every field back to its signature default".
* **Models trained in this session** are announced on :data:`MODELS` so the Segment and
  Classify widgets list them as soon as training ends.
* **Devices** are probed in a worker thread (importing torch takes seconds), so a widget
  opens at once and fills in "NVIDIA H100 (CUDA 12.8 ...)" or "CPU only: torch has no CUDA"
  a moment later.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Label
from psygnal import Signal

_ERROR_STYLE = "background-color: #6b2c2c;"


class _ModelList:
    """Checkpoints known to this napari session, by task (trained here or opened by the user)."""

    added = Signal(str, str)  # task, path

    def __init__(self) -> None:
        self.paths: dict[str, list[str]] = {"segmentation": [], "classification": []}

    def add(self, task: str, path: str | Path) -> None:
        p = str(Path(path))
        lst = self.paths.setdefault(task, [])
        if p in lst:
            lst.remove(p)
        lst.insert(0, p)
        self.added.emit(task, p)

    def choices(self, task: str) -> list[tuple[str, str]]:
        return [(f"{Path(p).parent.name}/{Path(p).name}", p) for p in self.paths.get(task, [])]


MODELS = _ModelList()
DEMO = "demo"
FILE = "file"


def model_choices(task: str) -> Callable[[Any], list[tuple[str, str]]]:
    """Choices for a model picker: the bundled demo, session models, and "a checkpoint file"."""

    def choices(widget: Any = None) -> list[tuple[str, str]]:
        return [("Bundled demo model", DEMO), *MODELS.choices(task), ("Checkpoint file…", FILE)]

    return choices


def model_picker(task: str, tooltip: str) -> ComboBox:
    """A model picker that opens on the newest model trained (or opened) in this session,
    else on the bundled demo model."""
    picker = ComboBox(label="model", choices=model_choices(task), tooltip=tooltip)
    if MODELS.paths.get(task):
        picker.value = MODELS.paths[task][0]
    return picker


def resolve_model(choice: str, file: Any, task: str) -> Path:
    """The checkpoint path a model picker's value stands for.

    Raises
    ------
    FileNotFoundError, ValueError
        With what to choose instead.
    """
    from napari_cellnet import datasets

    if choice == DEMO:
        return datasets.demo_model_path(task)
    if choice == FILE:
        path = Path(str(file or "").strip()).expanduser()
        if not str(file or "").strip():
            raise ValueError("Choose a checkpoint file (.pt) or pick the bundled demo model.")
        if not path.is_file():
            raise FileNotFoundError(f"Model file not found: {path}. Choose an existing .pt checkpoint.")
        return path
    return Path(choice)


# --------------------------------------------------------------------------- layers


def layer_choices(viewer: Any, kind: str, extra: Callable[[Any], bool] | None = None) -> Callable[[Any], list]:
    """A magicgui ``choices`` callable listing ``viewer``'s layers of type ``kind`` ("Image", "Labels")."""

    def choices(widget: Any = None) -> list[tuple[str, Any]]:
        out = []
        for layer in viewer.layers:
            if type(layer).__name__ == kind and (extra is None or extra(layer)):
                out.append((layer.name, layer))
        return out

    return choices


def layer_picker(viewer: Any, kind: str, label: str, nullable: bool = False,
                 extra: Callable[[Any], bool] | None = None) -> ComboBox:
    """A ComboBox of the viewer's ``kind`` layers that follows the layer list."""
    box = ComboBox(label=label, choices=layer_choices(viewer, kind, extra), nullable=nullable)

    def refresh(event: Any = None) -> None:
        try:
            box.reset_choices()
        except RuntimeError:  # the widget was deleted (viewer closed)
            pass

    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        ev.connect(refresh)
    box._cellnet_refresh = refresh  # keep a reference for disconnecting
    return box


def disconnect_picker(viewer: Any, box: ComboBox) -> None:
    refresh = getattr(box, "_cellnet_refresh", None)
    if refresh is None:
        return
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        ev.disconnect(refresh)


# --------------------------------------------------------------------------- parameters


def button_row(*buttons: Any) -> Any:
    """Buttons side by side, without labels or margins."""
    from magicgui.widgets import Container

    row = Container(widgets=list(buttons), layout="horizontal", labels=False)
    row.margins = (0, 0, 0, 0)
    return row


def select_added_model(picker: ComboBox, wanted_task: str, task: str, path: str) -> None:
    """Select a model announced on :data:`MODELS` in ``picker`` when it is of ``wanted_task``."""
    if task != wanted_task:
        return
    try:
        picker.reset_choices()
        picker.value = path
    except RuntimeError:  # the widget was deleted
        pass


def set_invalid(widget: Any, why: str | None) -> None:
    """Tint a field red with ``why`` as its tooltip, or clear the tint (``why=None``)."""
    widget.native.setStyleSheet(_ERROR_STYLE if why else "")
    widget.tooltip = why or ""


def note(text: str = "") -> Label:
    """A word-wrapped label for status lines."""
    label = Label(value=text)
    label.native.setWordWrap(True)
    return label


# --------------------------------------------------------------------------- devices

DEVICES: dict[str, str] = {}
"""Device name -> description, filled by :func:`probe_devices` (empty until probed)."""


def probe_devices() -> dict[str, str]:
    """Detect devices (imports torch; run it in a worker) and cache what was found."""
    from napari_cellnet.core import device as devices

    found = {"auto": ""}
    for name in devices.available():
        found[name] = devices.describe(name).description
    found["auto"] = found[next(n for n in found if n != "auto")]
    DEVICES.clear()
    DEVICES.update(found)
    return found


def device_choices(widget: Any = None) -> list[str]:
    names = list(DEVICES) if DEVICES else ["auto", "cpu"]
    return names


def device_picker(label: str = "device") -> ComboBox:
    """A device drop-down for a :class:`~._params.ParamsForm`: "auto" until :func:`probe_devices`
    has run, then what torch found ("auto", "cpu", "cuda:0", ...); its value is the device name."""
    return ComboBox(label=label, choices=_picker_devices, value="auto")


def _picker_devices(widget: Any = None) -> list[str]:
    # before the probe, any device a remembered setting may name (the probe then narrows the list)
    return list(DEVICES) if DEVICES else ["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(8)), "mps"]


def refresh_device_picker(box: ComboBox, devices: dict[str, str]) -> None:
    """Show the probed ``devices`` in ``box``, keeping the chosen one when it is still there."""
    current = box.value
    box.reset_choices()
    if current in devices:
        box.value = current


class JobWidget:
    """Mixin for widgets that run their job through a :class:`~._jobs.JobRunner`.

    The runner's ``on_state`` is :meth:`_set_running`, which locks the widget's controls
    (:meth:`_lock_controls`, per widget) while the job runs and shows a failure in the
    status line; :meth:`_on_destroyed` (connected to the Qt object's ``destroyed``) detaches
    the runner, stops the job and drops the widget's own connections
    (:meth:`_disconnect`). Expects ``runner``, ``status`` and ``_closed`` on the widget.
    """

    runner: Any
    status: Any
    _closed: bool

    def _set_running(self, running: bool) -> None:
        if self._closed:
            return
        self._lock_controls(running)
        if not running and self.runner.last_error is not None:
            self.status.value = f"Failed: {self.runner.last_error}"

    def refuse_if_running(self, what: str) -> bool:
        """True (and a notification) when this widget's job is running already."""
        if self.runner.running:
            from napari.utils.notifications import show_info

            show_info(f"{what} is already running; press Stop first.")
            return True
        return False

    def _lock_controls(self, running: bool) -> None:
        """Enable or disable the widget's inputs and buttons for a job that starts or ends."""
        raise NotImplementedError

    def _on_destroyed(self, *args: Any) -> None:
        self._closed = True
        self.runner.on_state = None
        self.runner.on_event = None
        self.runner.on_returned = lambda result: None
        self.runner.abort()
        self._disconnect()

    def _disconnect(self) -> None:
        """Disconnect the widget's own signal connections (none by default)."""


class DeviceProbing:
    """Mixin for job widgets: fills the device list in a background thread (probing CUDA
    imports torch, which must not happen while napari loads the widget) and reports busy
    while that probe or the job runs. Expects ``runner``, ``form`` (a ParamsForm with a
    ``device`` field), ``_closed`` and ``_probe_worker`` on the widget."""

    runner: Any
    form: Any
    _closed: bool
    _probe_worker: Any

    @property
    def busy(self) -> bool:
        return bool(self.runner.running or self._probe_worker is not None)

    def _probe_devices(self) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(probe_devices, _ignore_errors=True)

        def done(devices: dict[str, str]) -> None:
            if self._closed:
                return
            picker = self.form.controls["device"]
            current = picker.value
            picker.reset_choices()
            if current in devices:
                picker.value = current

        worker.returned.connect(done)
        worker.finished.connect(lambda: setattr(self, "_probe_worker", None))
        self._probe_worker = worker
        worker.start()
