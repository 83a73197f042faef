"""One parameter object per job: the widget, the CLI and Python start from the same defaults.

Generated, not listed: the jobs are every :class:`~napari_cellnet.core.params.Params`
subclass found in a ``params`` module of the package; the widgets are those of the npe2
manifest; the commands are those the CLI registers. A new job, widget or command is
checked by existing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import pytest

import napari_cellnet
from napari_cellnet.core.params import Params, describe_default

pytestmark = pytest.mark.gui

THE_FIVE_JOBS = {"segment", "train-seg", "classify", "train-cls", "evaluate"}


def job_classes() -> dict[str, type[Params]]:
    found: dict[str, type[Params]] = {}
    for mod in pkgutil.walk_packages(napari_cellnet.__path__, "napari_cellnet."):
        if mod.name.rsplit(".", 1)[-1] != "params" or ".widgets" in mod.name:
            continue
        module = importlib.import_module(mod.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Params) and obj is not Params and obj.__module__ == mod.name:
                assert obj.JOB not in found, f"two parameter classes for job {obj.JOB!r}"
                found[obj.JOB] = obj
    return found


def subparsers() -> dict[str, argparse.ArgumentParser]:
    from napari_cellnet.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_job_has_a_parameter_object_with_valid_defaults():
    jobs = job_classes()
    assert THE_FIVE_JOBS <= set(jobs)
    for cls in jobs.values():
        cls().validate()  # the defaults are valid
        for info in cls.infos():
            assert info.spec.help.strip(), f"{cls.__name__}.{info.name} has no help"


def test_every_job_is_a_command_whose_flags_are_the_parameter_fields():
    from napari_cellnet.cli.app import PARAMS
    from napari_cellnet.cli.flags import params_from_args

    jobs = job_classes()
    commands = subparsers()
    assert set(jobs.values()) <= set(PARAMS.values()), "a job without a command"
    for name, cls in PARAMS.items():
        actions = {a.dest: a for a in commands[name]._actions}
        for info in cls.infos():
            action = actions.get(info.name)
            assert action is not None, f"{name}: no flag for {info.name}"
            assert info.flag in action.option_strings
            assert action.default is argparse.SUPPRESS, f"{name} {info.flag} has its own default"
            assert describe_default(info).replace("%", "%%") in action.help
        # no flag typed: exactly the dataclass
        assert params_from_args(cls, argparse.Namespace()) == cls()


def _forms(widget):
    from napari_cellnet.widgets._params import ParamsForm

    return [v for v in vars(widget).values() if isinstance(v, ParamsForm)]


def test_every_job_is_a_widget_that_opens_with_the_dataclass_defaults(make_napari_viewer, qtbot):
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-cellnet")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    viewer = make_napari_viewer()
    covered: dict[type[Params], str] = {}
    for contribution in manifest.contributions.widgets:
        module, attr = commands[contribution.command].split(":")
        widget = getattr(importlib.import_module(module), attr)(viewer)
        for form in _forms(widget):
            cls = form.params_class
            assert set(form.controls) == {i.name for i in cls.infos()}, f"{attr}: a {cls.JOB} option has no control"
            assert form.value == cls(), f"{attr} opens with other {cls.JOB} settings than the dataclass"
            covered[cls] = attr
        if hasattr(widget, "close"):
            widget.close()
    missing = set(job_classes().values()) - set(covered)
    assert not missing, f"jobs with no widget: {sorted(c.JOB for c in missing)}"


def test_settings_saved_by_a_widget_are_what_the_command_line_reads(make_napari_viewer, tmp_path):
    from napari_cellnet.cli.flags import params_from_args
    from napari_cellnet.widgets._params import ParamsForm

    for cls in job_classes().values():
        form = ParamsForm(cls, persist=False)
        changed = _change_one_value(cls)
        form.value = changed
        path = form.save(tmp_path / f"{cls.JOB}.json")
        assert params_from_args(cls, argparse.Namespace(params_json=str(path))) == changed


def _change_one_value(cls: type[Params]) -> Params:
    """The defaults with the first numeric or choice field changed to another valid value."""
    for info in cls.infos():
        if info.spec.choices and len(info.spec.choices) > 1:
            other = next(c for c in info.spec.choices if c != info.default)
            return cls().replace(**{info.name: other})
        if info.type is int and not info.optional and info.default is not None:
            value = info.default + 1
            if info.spec.high is None or value <= info.spec.high:
                return cls().replace(**{info.name: value})
    return cls()
