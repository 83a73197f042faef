"""The parameter-object machinery: declaration, introspection, (de)serialisation, checks, text."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest

from napari_cellnet.core.params import ParamInfo, Params, Spec, describe_default, jobs_of, param


def _frames_parse(text: str) -> list[int]:
    return [int(t) for t in text.split(",")]


def _frames_format(value: list[int]) -> str:
    return ",".join(str(v) for v in value)


@dataclass
class Toy(Params):
    """A job with one field of every kind the front ends handle."""

    JOB: ClassVar[str] = "toy"

    mode: str = param("fast", help="How to run.", choices=("fast", "exact"))
    count: int = param(3, help="How many.", low=1, high=10)
    rate: float = param(0.5, help="A rate.", low=0.0, high=1.0, low_open=True)
    frac: float = param(0.2, help="A share.", low=0.0, high=1.0, high_open=True)
    window: int | None = param(None, help="Frames seen.", low=1, none_means="the model's")
    flag: bool = param(False, help="Switch.", advanced=True, label="Switch it", flag="--switch")
    weights: dict[str, float] = param(default_factory=dict, help="Class weights.")
    frames: list[int] = param(default_factory=lambda: [0, 1], help="Frames to use.")
    picked: list[int] = param(default_factory=list, help="Picked frames.", parse=_frames_parse, format=_frames_format)
    name: str | None = param(None, help="A name.")
    note: str = "not a parameter"  # no param(): front ends never see it


@dataclass
class Other(Params):
    JOB: ClassVar[str] = "other"

    size: int = param(1, help="Size.")


# --------------------------------------------------------------------------- param()


def test_param_requires_help():
    with pytest.raises(TypeError, match="needs help="):
        param(1, low=0)


def test_param_keeps_its_spec_and_default_or_factory():
    f = param(2, help="Two.", low=1, advanced=True)
    assert f.default == 2
    assert f.metadata["spec"] == Spec(help="Two.", low=1, advanced=True)
    g = param(default_factory=list, help="A list.")
    assert g.default is dataclasses.MISSING and g.default_factory is list


# --------------------------------------------------------------------------- infos()


def test_infos_types_optional_and_defaults_in_declaration_order():
    infos = Toy.infos()
    got = [(i.name, i.type, i.optional, i.default) for i in infos]
    assert got == [
        ("mode", str, False, "fast"),
        ("count", int, False, 3),
        ("rate", float, False, 0.5),
        ("frac", float, False, 0.2),
        ("window", int, True, None),
        ("flag", bool, False, False),
        ("weights", dict, False, {}),
        ("frames", list, False, [0, 1]),
        ("picked", list, False, []),
        ("name", str, True, None),
    ]


def test_info_label_flag_and_unknown_name():
    assert (Toy.info("count").label, Toy.info("count").flag) == ("count", "--count")
    assert (Toy.info("flag").label, Toy.info("flag").flag) == ("Switch it", "--switch")
    assert Toy.info("window").spec.none_means == "the model's"
    assert Toy.info("flag").spec.advanced and not Toy.info("count").spec.advanced
    with pytest.raises(KeyError):
        Toy.info("note")


def test_describe_default():
    assert describe_default(Toy.info("count")) == "default 3"
    assert describe_default(Toy.info("frames")) == "default [0, 1]"
    assert describe_default(Toy.info("window")) == "default: the model's"
    assert describe_default(Toy.info("name")) == "optional"


def test_jobs_of_maps_jobs_and_refuses_duplicates():
    assert jobs_of([Toy, Other]) == {"toy": Toy, "other": Other}
    with pytest.raises(ValueError, match="Two parameter classes for job 'toy'"):
        jobs_of([Toy, Other, Toy])


# --------------------------------------------------------------------------- dict and JSON


def _changed() -> Toy:
    return Toy(mode="exact", count=7, rate=0.75, window=5, flag=True, weights={"a": 2.0, "b": 0.5},
               frames=[3, 4], picked=[9], name="run 1")


def test_dict_round_trip():
    p = _changed()
    d = p.to_dict()
    assert d["weights"] == {"a": 2.0, "b": 0.5} and d["note"] == "not a parameter"
    assert Toy.from_dict(d) == p
    assert Toy.from_dict({}) == Toy()


def test_from_dict_refuses_unknown_keys_by_name():
    with pytest.raises(ValueError, match=r"Unknown toy parameter\(s\) \['bogus', 'zzz'\]; valid: \["):
        Toy.from_dict({"count": 2, "zzz": 0, "bogus": 1})


def test_json_round_trip_with_sorted_keys(tmp_path):
    p = _changed()
    path = p.to_json(tmp_path / "sub" / "params.json")
    assert path == tmp_path / "sub" / "params.json"
    written = json.loads(path.read_text())
    assert list(written) == sorted(written)
    assert Toy.from_json(path) == p


def test_from_json_bad_files_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"count": 2,\n "rate": }')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON \(Expecting value at line 2\)"):
        Toy.from_json(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list\.json holds list, not a dictionary of parameters"):
        Toy.from_json(listed)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"count": 2, "bogus": 1}')
    with pytest.raises(ValueError, match=r"Unknown toy parameter\(s\) \['bogus'\]"):
        Toy.from_json(unknown)


def test_replace_changes_a_copy_and_refuses_unknown_names():
    p = Toy()
    q = p.replace(count=5, name="x")
    assert (q.count, q.name, p.count, p.name) == (5, "x", 3, None)
    with pytest.raises(ValueError, match=r"Unknown toy parameter\(s\) \['cuont'\]"):
        p.replace(cuont=5)


# --------------------------------------------------------------------------- check()


def test_defaults_and_edges_of_closed_ranges_pass():
    Toy().check()
    Toy().validate()
    Toy(count=1).check()
    Toy(count=10).check()
    Toy(rate=1.0).check()  # high end closed
    Toy(frac=0.0).check()  # low end closed
    Toy(count=4.0).check()  # a whole float is a whole number
    Toy(rate=1).check()  # an int is a number


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "slow"}, "mode must be one of fast, exact; got 'slow'."),
        ({"count": 0}, "count must be >= 1, got 0. How many."),
        ({"count": 11}, "count must be <= 10, got 11. How many."),
        ({"rate": 0.0}, "rate must be > 0, got 0. A rate."),
        ({"rate": -0.5}, "rate must be > 0, got -0.5. A rate."),
        ({"frac": 1.0}, "frac must be < 1, got 1. A share."),
        ({"window": 0}, "window must be >= 1, got 0. Frames seen."),
        ({"count": 2.5}, "count must be a whole number, got 2.5."),
        ({"count": "3"}, "count must be a whole number, got '3'."),
        ({"rate": "fast"}, "rate must be a number, got 'fast'."),
        ({"rate": math.nan}, "rate must be a number, got NaN."),
        ({"count": math.nan}, "count must be a whole number, got nan."),
        ({"count": None}, "count needs a value. How many."),
        ({"mode": None}, "mode needs a value. How to run."),
    ],
)
def test_check_says_what_to_change(changes, message):
    p = Toy().replace(**changes)
    with pytest.raises(ValueError) as err:
        p.check()
    assert str(err.value) == message


def test_none_is_fine_for_optional_fields():
    Toy(window=None, name=None).check()


def test_check_refuses_a_bool_for_a_number():
    with pytest.raises(ValueError, match="count"):
        Toy(count=False).check()


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("count", "7", 7),
        ("count", " 7 ", 7),
        ("count", "3.0", 3),
        ("count", "1e3", 1000),
        ("rate", "0.25", 0.25),
        ("rate", "1", 1.0),
        ("flag", "yes", True),
        ("flag", "On", True),
        ("flag", "1", True),
        ("flag", "false", False),
        ("flag", "off", False),
        ("weights", '{"a": 1.5}', {"a": 1.5}),
        ("frames", "[1, 2]", [1, 2]),
        ("picked", "4,5", [4, 5]),
        ("window", "", None),
        ("window", "5", 5),
        ("name", "", None),
        ("mode", "exact", "exact"),
    ],
)
def test_from_text(name, text, value):
    got = Toy.info(name).from_text(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("count", 7, "7"),
        ("rate", 1e-5, "1e-05"),
        ("flag", True, "True"),
        ("weights", {"a": 1.5}, '{"a": 1.5}'),
        ("frames", [1, 2], "[1, 2]"),
        ("picked", [4, 5], "4,5"),
        ("window", None, ""),
        ("mode", "fast", "fast"),
    ],
)
def test_to_text_and_back(name, value, text):
    info = Toy.info(name)
    assert info.to_text(value) == text
    assert info.from_text(text) == value


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("count", "2.5", "a whole number"),
        ("count", "many", "a whole number"),
        ("count", "", "a whole number"),
        ("rate", "half", "a number"),
        ("flag", "maybe", "true or false"),
        ("weights", "{a: 1}", "a JSON dictionary"),
        ("frames", "[1,", "a JSON list"),
    ],
)
def test_from_text_error_names_the_field_the_kind_and_the_help(name, text, kind):
    info = Toy.info(name)
    with pytest.raises(ValueError) as err:
        info.from_text(text)
    assert str(err.value) == f"{name}: cannot read {text.strip()!r} as {kind}. {info.spec.help}"


def test_from_text_keeps_a_custom_parsers_own_message():
    with pytest.raises(ValueError) as err:
        Toy.info("picked").from_text("4;5")
    assert str(err.value).startswith("picked: ") and "a JSON list" not in str(err.value)


def test_from_text_keeps_large_integers_exact():
    assert Toy.info("count").from_text("9007199254740993") == 9007199254740993


def test_from_text_refuses_a_list_for_a_dict_field():
    with pytest.raises(ValueError, match="a JSON dictionary"):
        Toy.info("weights").from_text("[1, 2]")


def test_param_info_is_what_infos_returns():
    info = Toy.info("count")
    assert isinstance(info, ParamInfo)
    assert info == ParamInfo("count", int, False, 3, Spec(help="How many.", low=1, high=10))
