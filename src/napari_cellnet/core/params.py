"""One parameter object per job, and the machinery that makes every front end from it.

A job's parameters are a dataclass that derives from :class:`Params` and declares each
field with :func:`param`: its default, its range or choices, its help text and whether it
is basic or advanced. From that one declaration come

* the widget's controls (``napari_cellnet.widgets._params``: basic controls visible,
  advanced ones in a collapsible section, "Load settings…" / "Save settings…"),
* the command line's flags and help (``napari_cellnet.cli.flags``),
* ``params.json`` (:meth:`Params.to_json` / :meth:`Params.from_json`),
* validation with messages that say what to change (:meth:`Params.check`).

So a default lives in exactly one place and the GUI, the CLI, a JSON file and a Python
call give the same run. No torch, no Qt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

P = TypeVar("P", bound="Params")


@dataclass(frozen=True)
class Spec:
    """What a parameter carries besides its default.

    Attributes
    ----------
    help : str
        One sentence a biologist can act on (shown as tooltip and ``--help``).
    choices : tuple, optional
        The allowed values (a drop-down; ``choices=`` in argparse).
    low, high : float, optional
        Inclusive range; ``low_open``/``high_open`` make an end exclusive.
    advanced : bool
        Shown in the widget's collapsed "Advanced" section.
    label : str, optional
        Widget label (default: the field name in words).
    flag : str, optional
        Command-line flag (default ``--field-name``).
    group : str
        Section of ``--help`` (and order of the widget's controls).
    none_means : str, optional
        What ``None`` stands for ("the model's", "every core"); fields that may be None.
    parse, format : callable, optional
        Text <-> value for values that are not a plain number or word (frame lists, JSON
        dictionaries): used by the command line and the widget's text box.
    step : float, optional
        Spin-box step in the widget.
    """

    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    advanced: bool = False
    label: str | None = None
    flag: str | None = None
    group: str = "options"
    none_means: str | None = None
    parse: Callable[[str], Any] | None = None
    format: Callable[[Any], str] | None = None
    step: float | None = None


def param(default: Any = MISSING, *, default_factory: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field with a :class:`Spec` (``help=`` is required)."""
    if "help" not in spec:
        raise TypeError("param() needs help=: every parameter explains itself")
    kw: dict[str, Any] = {"metadata": {"spec": Spec(**spec)}}
    if default_factory is not MISSING:
        kw["default_factory"] = default_factory
    else:
        kw["default"] = default
    return dataclasses.field(**kw)


@dataclass(frozen=True)
class ParamInfo:
    """A field of a parameter object as front ends see it."""

    name: str
    type: type
    optional: bool
    default: Any
    spec: Spec

    @property
    def label(self) -> str:
        return self.spec.label or self.name.replace("_", " ")

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    def to_text(self, value: Any) -> str:
        """The value as the command line and a widget text box write it."""
        if value is None:
            return ""
        if self.spec.format is not None:
            return self.spec.format(value)
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value)
        return str(value)

    def from_text(self, text: str) -> Any:
        """Inverse of :meth:`to_text`; empty text is None for optional fields."""
        text = str(text).strip()
        if text == "" and self.optional:
            return None
        if self.spec.parse is not None:
            try:
                return self.spec.parse(text)
            except (ValueError, TypeError) as err:  # the parser knows its syntax: keep its words
                raise ValueError(f"{self.name}: {err}") from None
        try:
            if self.type is bool:
                low = text.lower()
                if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(text)
                return low in ("true", "1", "yes", "on")
            if self.type is int:
                try:
                    return int(text)
                except ValueError:  # "1e3", "3.0": whole numbers written as floats
                    number = float(text)
                    if not number.is_integer():
                        raise
                    return int(number)
            if self.type is float:
                return float(text)
            if self.type in (dict, list):
                value = json.loads(text)
                if not isinstance(value, self.type):
                    raise TypeError(text)
                return value
            return text
        except (ValueError, TypeError, json.JSONDecodeError):
            kind = {int: "a whole number", float: "a number", bool: "true or false",
                    dict: "a JSON dictionary", list: "a JSON list"}.get(self.type, "a value")
            raise ValueError(f"{self.name}: cannot read {text!r} as {kind}. {self.spec.help}") from None


def _base_type(annotation: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``list[int]`` -> (list, False); unions of several -> str."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        base = _base_type(args[0])[0] if len(args) == 1 else str
        return base, optional
    if origin is not None:
        return origin, False
    return (annotation if isinstance(annotation, type) else str), False


class Params:
    """Base of every job's parameter object (a dataclass).

    Subclasses set ``JOB`` (the command's name) and declare fields with :func:`param`;
    they may override :meth:`validate` for checks that involve several fields (call
    ``super().validate()`` first).
    """

    JOB: ClassVar[str] = ""

    # ------------------------------------------------------------------ introspection
    @classmethod
    def infos(cls) -> list[ParamInfo]:
        """Every field with its type, default and :class:`Spec`, in declaration order."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = f.metadata.get("spec")
            if spec is None:
                continue
            base, optional = _base_type(hints[f.name])
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            out.append(ParamInfo(f.name, base, optional, default, spec))
        return out

    @classmethod
    def info(cls, name: str) -> ParamInfo:
        for i in cls.infos():
            if i.name == name:
                return i
        raise KeyError(name)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dictionary of every field."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls: type[P], d: dict[str, Any]) -> P:
        """Inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown {cls.JOB or cls.__name__} parameter(s) {unknown}; valid: {sorted(names)}.")
        return cls(**d)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the parameters as ``params.json`` (atomically, keys sorted)."""
        from napari_cellnet.core.io import write_json

        return write_json(path, dict(sorted(self.to_dict().items())))

    @classmethod
    def from_json(cls: type[P], path: str | os.PathLike[str]) -> P:
        """Read a JSON file written by :meth:`to_json` (or by hand)."""
        return cls.from_dict(read_json_dict(path))

    def replace(self: P, **changes: Any) -> P:
        """A copy with some fields changed (unknown names refused)."""
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"Unknown {self.JOB or type(self).__name__} parameter(s) {unknown}; valid: {sorted(names)}.")
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    # ------------------------------------------------------------------ validation
    def check(self) -> None:
        """Check every field against its choices and range; one ValueError that says what to change."""
        for info in self.infos():
            value = getattr(self, info.name)
            if value is None:
                if not info.optional:
                    raise ValueError(f"{info.name} needs a value. {info.spec.help}")
                continue
            _check_value(info, value)

    def validate(self) -> None:
        """All checks of this job (subclasses add cross-field ones after ``super().validate()``)."""
        self.check()


def read_json_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dictionary a parameter file holds; errors name the file and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Parameter file not found: {p}. Give a params.json (Save settings… in a widget) "
                                "or the one an earlier run wrote.")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p.name} is not valid JSON ({err.msg} at line {err.lineno}).") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p.name} holds {type(d).__name__}, not a dictionary of parameters.")
    return d


def _check_value(info: ParamInfo, value: Any) -> None:
    spec = info.spec
    if spec.choices is not None and value not in spec.choices:
        shown = ", ".join(str(c) for c in spec.choices)
        raise ValueError(f"{info.name} must be one of {shown}; got {value!r}.")
    if info.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                info.type is int and not float(value).is_integer()):
            raise ValueError(f"{info.name} must be {'a whole number' if info.type is int else 'a number'}, "
                             f"got {value!r}.")
        if math.isnan(float(value)):
            raise ValueError(f"{info.name} must be a number, got NaN.")
        if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
            raise ValueError(f"{info.name} must be {'>' if spec.low_open else '>='} {spec.low:g}, got {value:g}. "
                             f"{spec.help}")
        if spec.high is not None and (value > spec.high or (spec.high_open and value == spec.high)):
            raise ValueError(f"{info.name} must be {'<' if spec.high_open else '<='} {spec.high:g}, got {value:g}. "
                             f"{spec.help}")


def describe_default(info: ParamInfo) -> str:
    """``"default 0.5"``, ``"default: the model's"`` — for help texts."""
    if info.default is None:
        return f"default: {info.spec.none_means}" if info.spec.none_means else "optional"
    return f"default {info.to_text(info.default)}"


def jobs_of(classes: Sequence[type[Params]]) -> dict[str, type[Params]]:
    """``{JOB: class}`` of parameter classes (refuses two classes for one job)."""
    out: dict[str, type[Params]] = {}
    for c in classes:
        if c.JOB in out:
            raise ValueError(f"Two parameter classes for job {c.JOB!r}")
        out[c.JOB] = c
    return out
