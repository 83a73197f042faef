"""The Train classifier widget: annotated objects and a gallery stack, k-fold, confusion matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, qtbot, wait_idle, out_dir):
    from napari_cellnet.widgets import TrainClassifierWidget

    viewer = make_napari_viewer()
    widget = TrainClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    wait_idle(widget)
    p = widget.params
    p.input_size.value = 32
    p.epochs.value = 2
    p.batch_size.value = 8
    p.aug_rate.value = 1
    p.augment.value = "none"
    p.folds.value = 2
    p.device.value = "cpu"
    p.output_folder.value = str(out_dir)
    return viewer, widget


def test_train_on_annotated_objects_with_kfold(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path, errors):
    from napari_cellnet.widgets import ClassifyWidget

    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "cls")
    viewer.add_image(images, name="movie")
    labels = viewer.add_labels(gt.astype(np.int32), name="cells")
    rows = [(t, int(v)) for t in range(4) for v in np.unique(gt[t]) if v]
    area = {(t, v): int((gt[t] == v).sum()) for t, v in rows}
    median = np.median(list(area.values()))
    labels.features = pd.DataFrame({
        "frame": [t for t, _ in rows], "label": [v for _, v in rows],
        "annotated_class": ["big" if area[r] > median else "small" for r in rows]})
    widget.source.value = "annotated objects (Image + Labels)"
    widget.label_layer.value = labels
    assert widget.class_column.value == "annotated_class"
    n_big = sum(area[r] > median for r in rows)
    assert widget.data_note.value == f"Annotated: big {n_big}, small {len(rows) - n_big}"
    classify = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(classify)
    wait_idle(classify)
    assert widget.train() is not None
    wait_idle(widget, timeout=120000)
    assert errors() == []
    result = widget.result
    assert len(result.folds) == 2 and result.class_names == ["big", "small"]
    assert (tmp_path / "cls" / "model.pt").is_file()
    assert int(np.sum(widget.confusion.matrix)) == len(rows)  # every object scored once out of fold
    assert widget.plot.series["train_loss"][0] == [1.0, 2.0]  # the refit run's epochs
    assert classify.params.model.value == str(result.checkpoint)
    assert "accuracy" in widget.status.value and "now selectable in Classify" in widget.status.value


def test_train_on_gallery_stack_with_class_layer(make_napari_viewer, qtbot, wait_idle, tmp_path):
    from napari_cellnet._sample_data import hushem_gallery

    (stack, _, _), (points, kw, _) = hushem_gallery()
    classes = np.asarray(kw["features"]["class"])
    pick = np.concatenate([np.flatnonzero(classes == c)[:4] for c in np.unique(classes)])
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "gal")
    viewer.add_image(stack[pick], name="gallery", rgb=True)
    viewer.add_points(points[pick] * [0, 1, 1] + np.column_stack([np.arange(len(pick)), np.zeros((len(pick), 2))]),
                      name="gallery classes", features={"frame": np.arange(len(pick)), "class": classes[pick]})
    widget.source.value = "image stack + class layer"
    widget.image.value = viewer.layers["gallery"]
    widget.class_layer.value = viewer.layers["gallery classes"]
    assert widget.class_column.value == "class"
    widget.params.refit.value = False
    widget.params.epochs.value = 1
    assert widget.train() is not None
    wait_idle(widget, timeout=120000)
    assert widget.result.summary["n_samples"] == 16
    assert widget.confusion.matrix.shape == (4, 4) and int(widget.confusion.matrix.sum()) == 16
    widget.params.augment.value = "aligned"
    cfg = widget.build_config()  # the default: heads aligned upright, surroundings blanked
    assert (cfg.preprocessing.align, cfg.preprocessing.isolate) == ("major_axis", True)
    assert cfg.augment.rotation_range == 20 and cfg.augment.vertical_flip  # the "aligned" preset
    widget.params.align_cells.value = False
    widget.params.central_fraction.value = 0.5
    cfg = widget.build_config()
    assert (cfg.preprocessing.align, cfg.preprocessing.isolate, cfg.preprocessing.crop_fraction) == ("none", False, 0.5)
    widget.params.arch.value = widget.params.arch.choices[-1]  # the demo's mixed ensemble
    assert [m["arch"] for m in widget.build_config().member_specs()] == ["small_cnn"] * 3 + ["mobilenet_v2",
                                                                                            "resnet18"]


def test_one_class_only_disables_train(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "x")
    viewer.add_image(images, name="movie")
    labels = viewer.add_labels(gt.astype(np.int32), name="cells")
    labels.features = pd.DataFrame({"frame": [0, 0], "label": [int(v) for v in np.unique(gt[0])[1:3]],
                                    "annotated_class": ["round", "round"]})
    widget.label_layer.value = labels
    widget._check()
    assert not widget.train_button.enabled
    assert "annotate at least two classes" in widget.data_note.value
