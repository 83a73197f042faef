"""Command-line flags made from a job's parameter object (:mod:`napari_cellnet.core.params`).

Every field becomes ``--field-name`` (or its ``Spec.flag``) in the argument group of its
``Spec.group``, with the field's help, choices and default in ``--help``. Flags the user did
not type leave no attribute (``argparse.SUPPRESS``), so that the layers of a run are explicit: the dataclass defaults, then a
``--params`` JSON, then the flags the user typed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

from napari_cellnet.core.params import ParamInfo, Params, describe_default

P = TypeVar("P", bound=Params)

_TYPE_NAMES = {int: "whole number", float: "number", bool: "true/false", dict: "JSON dictionary", list: "JSON list"}


def _converter(info: ParamInfo) -> Any:
    def convert(text: str) -> Any:
        return info.from_text(text)

    convert.__name__ = _TYPE_NAMES.get(info.type, "value")  # argparse names it in "invalid … value"
    return convert


def add_params_arguments(parser: argparse.ArgumentParser, cls: type[Params], *, params_flag: bool = True) -> None:
    """Add one flag per field of ``cls`` (and ``--params JSON``) to ``parser``."""
    groups: dict[str, Any] = {}
    for info in cls.infos():
        group = groups.get(info.spec.group)
        if group is None:
            group = groups[info.spec.group] = parser.add_argument_group(info.spec.group)
        help_text = f"{info.spec.help} ({describe_default(info)})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": info.name, "default": argparse.SUPPRESS, "help": help_text}
        if info.type is bool and info.spec.parse is None:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _converter(info)
            if info.spec.choices is not None:
                kw["choices"] = list(info.spec.choices)
            else:
                kw["metavar"] = info.name.upper()
        group.add_argument(info.flag, **kw)
    if params_flag:
        parser.add_argument("--params", dest="params_json", default=None, metavar="JSON",
                            help=f"start from a {cls.JOB} params.json (e.g. saved by the widget or an earlier run); "
                                 "flags override it")


def params_from_args(cls: type[P], args: argparse.Namespace, base: P | None = None) -> P:
    """The parameter object a command line stands for: defaults < ``--params`` JSON < flags.

    Raises
    ------
    ValueError
        For a value out of range or a JSON file with unknown keys (the message says which).
    """
    path = getattr(args, "params_json", None)
    start = cls.from_json(Path(path)) if path else (base if base is not None else cls())
    params = start.replace(**typed_flags(cls, args))
    params.validate()
    return params


def typed_flags(cls: type[Params], args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` the user typed as flags (flags not typed leave no attribute)."""
    return {i.name: getattr(args, i.name) for i in cls.infos() if hasattr(args, i.name)}
