"""The plugin inside a real napari viewer: manifest, sample data, reader and writer.

These tests need an X display with OpenGL (run under ``xvfb-run``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cellnet.core import io

pytestmark = pytest.mark.gui


def test_open_c2c12_sample_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cellnet", "c2c12")
    image, labels = viewer.layers["C2C12 phase contrast"], viewer.layers["C2C12 labels"]
    assert image.data.shape == (10, 234, 234) and image.data.dtype == np.uint8
    assert labels.data.shape == (10, 234, 234) and labels.data.dtype == np.uint16
    assert type(labels).__name__ == "Labels"
    assert int(labels.data.max()) >= 8
    assert "Ker et al. 2018" in image.metadata["attribution"]
    assert viewer.dims.ndim == 3


def test_open_hushem_sample_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cellnet", "hushem")
    gallery = viewer.layers["HuSHeM sperm heads"]
    assert gallery.rgb and gallery.data.shape == (216, 131, 131, 3) and gallery.data.dtype == np.uint8
    classes = viewer.layers["HuSHeM classes"].features
    assert len(classes) == 216
    assert classes["class"].value_counts().to_dict() == {"03_Pyriform": 57, "01_Normal": 54, "02_Tapered": 53, "04_Amorphous": 52}


def test_reader_opens_imagej_movie_with_scale(make_napari_viewer, tmp_path):
    movie = np.random.default_rng(1).integers(0, 200, (4, 2, 16, 18), dtype=np.uint8)
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, movie, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TCYX", "unit": "um"})
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-cellnet")
    assert len(layers) == 2  # one layer per channel
    assert layers[0].data.shape == (4, 16, 18)
    assert tuple(layers[0].scale) == pytest.approx((1.0, 0.5, 0.5))


def test_reader_opens_label_files_as_labels(make_napari_viewer, tmp_path):
    lab = np.zeros((3, 10, 10), np.uint16)
    lab[:, 2:5, 2:5] = 4
    io.write_labels(tmp_path / "cell_labels.tif", lab)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "cell_labels.tif", plugin="napari-cellnet")
    assert type(layer).__name__ == "Labels"
    np.testing.assert_array_equal(layer.data, lab)


def test_writer_saves_labels_and_features(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    lab = np.zeros((2, 12, 12), np.int32)
    lab[0, 1:4, 1:4] = 1
    lab[1, 5:9, 5:9] = 2
    layer = viewer.add_labels(lab, scale=(1, 0.5, 0.5), features={"label": [1, 2], "class": ["round", "long"]})
    written = layer.save(str(tmp_path / "out.tif"), plugin="napari-cellnet")
    assert sorted(p.split("/")[-1] for p in written) == ["out.tif", "out_features.csv"]
    back = io.read_stack(tmp_path / "out.tif")
    np.testing.assert_array_equal(back.data, lab)
    assert back.pixel_size == pytest.approx((0.5, 0.5))
    assert io.read_table(tmp_path / "out_features.csv") == {"label": [1, 2], "class": ["round", "long"]}
