"""Widget controls made from a job's parameter object (:mod:`napari_cellnet.core.params`).

:class:`ParamsForm` is a magicgui ``Container`` with one control per field of a
:class:`~napari_cellnet.core.params.Params` dataclass: basic fields visible, advanced ones
in a collapsible "Advanced settings" section, each with the field's help as tooltip, and
"Load settings…" / "Save settings…" / "Defaults" buttons that read and write the same
``params.json`` the command line takes with ``--params``. Its :attr:`ParamsForm.value` is
the parameter object, so the widget, the CLI and Python start from the same defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
    Widget,
)
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog
from superqt import QCollapsible

from napari_cellnet.core.params import ParamInfo, Params, describe_default
from napari_cellnet.widgets._common import button_row

_INT_MAX = 2**31 - 1


def _tooltip(info: ParamInfo) -> str:
    return f"{info.spec.help} ({describe_default(info)}). Command line: {info.flag}"


def control_for(info: ParamInfo) -> Widget:
    """The magicgui control that edits one parameter (its value is the field's value)."""
    spec, kw = info.spec, {"name": info.name, "label": info.label, "tooltip": _tooltip(info)}
    if spec.choices is not None:
        choices: list[Any] = [(str(c), c) for c in spec.choices]
        if info.optional:
            choices.insert(0, (spec.none_means or "automatic", None))
        return ComboBox(choices=choices, value=info.default, **kw)
    if info.type is bool and spec.parse is None:
        if info.optional:
            return ComboBox(choices=[(spec.none_means or "automatic", None), ("on", True), ("off", False)],
                            value=info.default, **kw)
        return CheckBox(value=bool(info.default), **kw)
    if not info.optional and spec.parse is None and info.type is int:
        low = int(spec.low) + (1 if spec.low_open else 0) if spec.low is not None else -_INT_MAX
        high = int(spec.high) - (1 if spec.high_open else 0) if spec.high is not None else _INT_MAX
        return SpinBox(value=info.default, min=low, max=high, step=int(spec.step or 1), **kw)
    if (not info.optional and spec.parse is None and info.type is float and spec.step is not None
            and spec.low is not None and spec.high is not None):
        return FloatSpinBox(value=info.default, min=spec.low, max=spec.high, step=spec.step, **kw)
    box = LineEdit(value=info.to_text(info.default), **kw)
    if info.optional and spec.none_means:
        box.native.setPlaceholderText(spec.none_means)
    return box


def settings_path(params_class: type[Params]) -> Path:
    """Where a widget remembers the last settings of a job (``$XDG_CACHE_HOME/napari-cellnet``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "napari-cellnet" / f"{params_class.JOB or params_class.__name__}.json"


class ParamsForm(Container):
    """Controls for every field of ``params_class``; ``value`` is the parameter object.

    Parameters
    ----------
    params_class : type of Params
    controls : dict of str to Widget, optional
        Controls the widget supplies itself for some fields (e.g. a device picker that
        shows what torch found); their ``value`` must be the field's value.
    persist : bool
        Remember the last valid settings between napari sessions (a ``<job>.json`` in the
        user cache folder, :func:`settings_path`) and start from them.
    """

    def __init__(self, params_class: type[Params], controls: dict[str, Widget] | None = None,
                 persist: bool = True) -> None:
        super().__init__(labels=True)
        self.params_class = params_class
        self.infos = {i.name: i for i in params_class.infos()}
        custom = dict(controls or {})
        self.controls: dict[str, Widget] = {}
        for name, info in self.infos.items():
            control = custom.pop(name, None) or control_for(info)
            control.name, control.tooltip = name, control.tooltip or _tooltip(info)
            self.controls[name] = control
        if custom:
            raise ValueError(f"{params_class.__name__} has no field(s) {sorted(custom)}")
        self.extend([self.controls[n] for n, i in self.infos.items() if not i.spec.advanced])
        self.advanced = Container(labels=True, widgets=[self.controls[n] for n, i in self.infos.items()
                                                        if i.spec.advanced])
        self.advanced.changed.connect(lambda *_: self.changed.emit(self))
        self._load = PushButton(text="Load settings…", tooltip="Read a params.json (as the CLI's --params)")
        self._save = PushButton(text="Save settings…", tooltip="Write these settings as params.json")
        self._defaults = PushButton(text="Defaults", tooltip="Every setting back to its default")
        self._load.changed.connect(self._ask_load)
        self._save.changed.connect(self._ask_save)
        self._defaults.changed.connect(self.reset)
        buttons = button_row(self._load, self._save, self._defaults)
        self.append(buttons)
        if len(self.advanced):
            self.collapsible = QCollapsible("Advanced settings")
            self.collapsible.addWidget(self.advanced.native)
            layout = self.native.layout()
            row = buttons.native.parentWidget()  # the labelled row that wraps the buttons
            layout.insertWidget(max(layout.indexOf(row), 0), self.collapsible)
        self.persist = persist
        if persist:
            self._restore()
            self.changed.connect(self._remember)

    # ------------------------------------------------------------------ value
    def read(self, name: str) -> Any:
        """One field as the parameter object would hold it (ValueError names the field)."""
        info, control = self.infos[name], self.controls[name]
        if not isinstance(control, LineEdit):
            return control.value
        text = str(control.value)
        if info.type is str and info.spec.parse is None:
            return None if info.optional and not text.strip() else text
        return info.from_text(text)

    @property
    def value(self) -> Params:  # type: ignore[override]
        """The parameter object the controls show (validated; ValueError says what to change)."""
        params = self.params_class(**{n: self.read(n) for n in self.infos})
        params.validate()
        return params

    @value.setter
    def value(self, params: Params) -> None:
        self.set_values({name: getattr(params, name) for name in self.infos})

    def set_values(self, values: dict[str, Any]) -> None:
        """Show some fields' values (the others keep theirs)."""
        for name, v in values.items():
            control = self.controls[name]
            control.value = self.infos[name].to_text(v) if isinstance(control, LineEdit) else v

    def reset(self, *_: Any) -> None:
        """Every control back to the dataclass default."""
        self.value = self.params_class()

    # ------------------------------------------------------------------ persistence
    def _restore(self) -> None:
        path = settings_path(self.params_class)
        if path.is_file():
            try:
                self.load(path)
            except (OSError, ValueError, TypeError):  # settings of another version: start from the defaults
                path.unlink(missing_ok=True)

    def _remember(self, *_: Any) -> None:
        path = settings_path(self.params_class)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.save(path)
        except (OSError, ValueError, TypeError):  # half-typed or invalid values are not remembered
            pass

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the current settings as a params.json."""
        return self.value.to_json(path)

    def load(self, path: str | Path) -> Params:
        """Show the settings of a params.json (unknown keys refused with their names)."""
        params = self.params_class.from_json(path)
        params.validate()
        self.value = params
        return params

    def _ask_load(self, *_: Any) -> None:
        path, _f = QFileDialog.getOpenFileName(self.native, "Load settings", "", "JSON (*.json)")
        if path:
            try:
                self.load(path)
                show_info(f"Settings loaded from {Path(path).name}")
            except (OSError, ValueError, TypeError) as err:
                show_error(f"Cannot load {Path(path).name}: {err}")

    def _ask_save(self, *_: Any) -> None:
        path, _f = QFileDialog.getSaveFileName(self.native, "Save settings", f"{self.params_class.JOB}_params.json",
                                               "JSON (*.json)")
        if path:
            try:
                self.save(path)
                show_info(f"Settings saved to {path}")
            except (OSError, ValueError) as err:
                show_error(f"Cannot save the settings: {err}")
