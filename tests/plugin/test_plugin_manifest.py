"""The npe2 manifest is valid, lists our contributions, and loading it stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_cellnet._reader import get_reader


def test_manifest_validates_and_lists_contributions():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-cellnet")
    assert manifest.name == "napari-cellnet"
    assert {s.key for s in manifest.contributions.sample_data} == {"c2c12", "hushem"}
    assert manifest.contributions.readers and manifest.contributions.writers
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-cellnet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "module",
    ["napari_cellnet", "napari_cellnet._reader", "napari_cellnet._sample_data", "napari_cellnet._writer", "napari_cellnet.core.io"],
)
def test_light_modules_import_neither_torch_nor_qt(module):
    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('torch', 'PyQt5', 'qtpy', 'magicgui', 'superqt') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_reading_sample_through_reader_does_not_import_torch():
    code = (
        "import sys\n"
        "from napari_cellnet._reader import get_reader\n"
        "from napari_cellnet import datasets\n"
        "p = str(datasets.c2c12_paths()[0])\n"
        "layers = get_reader(p)(p)\n"
        "assert layers[0][0].shape == (10, 234, 234)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_get_reader_returns_none_for_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.tif").write_text("not a tiff")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty").mkdir()
    for bad in ["/does/not/exist.tif", tmp_path / "notes.tif", tmp_path / "table.csv", tmp_path / "empty"]:
        assert get_reader(str(bad)) is None
    import tifffile

    cut = tmp_path / "cut.tif"
    tifffile.imwrite(cut, np.zeros((4, 32, 32), np.uint16))
    cut.write_bytes(cut.read_bytes()[:3000])
    assert get_reader(str(cut)) is None
    assert get_reader([str(cut), str(cut)]) is None


def test_get_reader_accepts_frame_folders(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((6, 7), i, np.uint8)).save(tmp_path / f"t{i}.png")
    reader = get_reader(str(tmp_path))
    assert reader is not None
    data, kwargs, kind = reader(str(tmp_path))[0]
    assert (data.shape, kind, kwargs["axis_labels"]) == ((3, 6, 7), "image", ("t", "y", "x"))
    assert Path(kwargs["metadata"]["path"]) == tmp_path


def test_reader_opens_large_files_lazily(tmp_path, monkeypatch):
    import tifffile

    from napari_cellnet.core import io

    movie = np.arange(5 * 8 * 9, dtype=np.uint16).reshape(5, 8, 9)
    tifffile.imwrite(tmp_path / "big.tif", movie, compression="zlib", photometric="minisblack")
    monkeypatch.setattr(io, "LAZY_ABOVE_BYTES", 100)  # pretend the 720-byte movie is 4 GB
    data, kwargs, kind = get_reader(str(tmp_path / "big.tif"))(str(tmp_path / "big.tif"))[0]
    assert not isinstance(data, np.ndarray)  # dask: pages are read when napari shows them
    np.testing.assert_array_equal(np.asarray(data[3]), movie[3])
