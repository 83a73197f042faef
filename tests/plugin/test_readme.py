"""The README's promises: its Python example runs as printed and its commands parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import tifffile

README = Path(__file__).parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_example_runs_on_the_sample_movie(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from napari_cellnet import datasets

    images, _ = datasets.c2c12()
    tifffile.imwrite(tmp_path / "movie.tif", images[:5], imagej=True, metadata={"axes": "TYX"})
    monkeypatch.chdir(tmp_path)
    (block,) = _python_blocks()
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    result = namespace["result"]
    assert result.labels.shape == (5, 234, 234) and result.labels.max() > 0
    assert result.params["threshold"] == pytest.approx(0.4)
    assert len(np.unique(result.tracks[:, 0])) > 1


def test_readme_commands_parse():
    from napari_cellnet.cli import build_parser

    parser = build_parser()
    text = README.read_text()
    lines = [m.split("#")[0].strip() for m in re.findall(r"^napari-cellnet .*$", text, flags=re.M)]
    assert len(lines) >= 5
    for line in lines:
        argv = shlex.split(line)[1:]
        parser.parse_args(argv)  # exits (SystemExit) on an unknown flag
