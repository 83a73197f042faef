"""The Classify widget: objects of a Labels layer, a gallery stack, annotation by clicking, export."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_cellnet.core import io

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, qtbot, wait_idle, checkpoint):
    from napari_cellnet.widgets import ClassifyWidget
    from napari_cellnet.widgets import _common as common

    viewer = make_napari_viewer()
    widget = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    wait_idle(widget)
    widget.model.value = common.FILE
    widget.checkpoint.value = str(checkpoint)
    widget.form.controls["device"].value = "cpu"
    return viewer, widget


def _run(widget, wait_idle):
    worker = widget.run()
    assert worker is not None, widget.status.value
    wait_idle(widget)


def test_objects_get_classes_in_features_and_a_class_coloured_layer(make_napari_viewer, qtbot, wait_idle,
                                                                    gray_classifier, c2c12_crop, tmp_path, errors):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, gray_classifier)
    viewer.add_image(images, name="movie", scale=(1, 0.5, 0.5))
    labels = viewer.add_labels(gt.astype(np.int32), name="cells", scale=(1, 0.5, 0.5))
    widget.image.value = viewer.layers["movie"]
    widget.label_layer.value = labels
    _run(widget, wait_idle)
    assert errors() == []
    f = labels.features
    n_objects = sum(len(np.unique(fr)) - 1 for fr in gt)
    assert len(f) == n_objects
    assert {"frame", "label", "class", "confidence", "p_round", "p_elongated", "track_class", "model",
            "annotated_class"} <= set(f.columns)
    assert set(f["class"]) <= {"round", "elongated"}
    np.testing.assert_allclose(f["p_round"] + f["p_elongated"], 1.0, atol=1e-5)
    assert (f["model"] == f"{gray_classifier.parent.name}/gray.pt").all()
    # each ID has one majority class over its frames
    assert (f.groupby("label")["track_class"].nunique() == 1).all()
    classes = viewer.layers["cells classes"]
    assert classes.data.shape == (4, 96, 96) and classes.data.dtype == np.uint8
    assert tuple(classes.scale) == (1.0, 0.5, 0.5)
    row = f.iloc[0]
    pixels = classes.data[int(row["frame"])][gt[int(row["frame"])] == int(row["label"])]
    assert (pixels == ["round", "elongated"].index(row["class"]) + 1).all()
    assert list(classes.features["class"]) == ["", "round", "elongated"]
    y, x = np.argwhere(gt[int(row["frame"])] == int(row["label"]))[0]
    status = classes.get_status((int(row["frame"]), y * 0.5, x * 0.5), world=True)
    assert f"class: {row['class']}" in status["value"]  # hovering shows the class name
    out = widget.save_csv(tmp_path / "classes.csv")
    table = io.read_table(out)
    assert len(table["label"]) == n_objects and "annotated_class" in table
    # the object-crop settings reach the job: the same table as the engine called with them
    from napari_cellnet.classification.inference import classify
    from napari_cellnet.core.jobs import run_job

    widget.form.controls["crop_size"].value = "48"
    widget.form.controls["mask_neighbours"].value = False
    _run(widget, wait_idle)
    direct = run_job(classify(gray_classifier, image=images, labels=gt.astype(np.int32), device="cpu",
                              crop_size=48, mask_neighbours=False))
    np.testing.assert_allclose(labels.features["p_round"], direct["p_round"], atol=1e-6)
    assert not np.allclose(f["p_round"], direct["p_round"], atol=1e-4)  # and they changed the crops


def test_gallery_stack_gets_a_points_layer_with_classes(make_napari_viewer, qtbot, wait_idle, rgb_classifier):
    from napari_cellnet._sample_data import hushem_gallery

    stack = hushem_gallery()[0][0][:12]
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, rgb_classifier)
    widget.mode.value = "image stack (one cell per frame)"
    widget.image.value = viewer.add_image(stack, name="gallery", rgb=True)
    _run(widget, wait_idle)
    points = viewer.layers["gallery classes"]
    assert points.data.shape == (12, 3)
    np.testing.assert_array_equal(points.data[:, 0], np.arange(12))
    assert list(points.features["frame"]) == list(range(12))
    assert set(points.features["class"]) <= {"01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous"}
    assert "12 of 12 classified" in widget.status.value


def test_annotating_by_click_writes_the_class_to_every_frame_of_the_id(make_napari_viewer, qtbot, wait_idle,
                                                                      gray_classifier, c2c12_crop):
    _, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, gray_classifier)
    labels = viewer.add_labels(gt.astype(np.int32), name="cells")
    widget.label_layer.value = labels
    target = int(np.unique(gt[1])[1])
    y, x = np.argwhere(gt[1] == target)[0]
    widget.annotate_class.value = "round"
    widget.annotate.value = True
    viewer.dims.set_current_step(0, 1)
    click = labels.mouse_drag_callbacks[-1]
    click(labels, SimpleNamespace(position=(1.0, float(y), float(x))))
    f = labels.features
    frames_with_id = [t for t in range(4) if (gt[t] == target).any()]
    marked = f[f["annotated_class"] == "round"]
    assert sorted(marked["frame"].tolist()) == frames_with_id and set(marked["label"]) == {target}
    assert widget.n_annotated.value == len(frames_with_id)
    widget.whole_track.value = False
    other = int(np.unique(gt[2])[2])
    widget.annotate_object(2, other, "elongated")
    assert widget.n_annotated.value == len(frames_with_id) + 1
    widget.annotate.value = False
    assert click not in labels.mouse_drag_callbacks


def test_missing_model_and_mismatched_layers_are_explained(make_napari_viewer, qtbot, wait_idle, c2c12_crop,
                                                          tmp_path, errors):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "nope.pt")
    viewer.add_image(images, name="movie")
    viewer.add_labels(gt[:, :40], name="other")
    widget.image.value = viewer.layers["movie"]
    widget.label_layer.value = viewer.layers["other"]
    assert widget.run() is None
    assert any("(4, 40, 96)" in m and "pick the Labels layer made from this image" in m for m in errors())
    viewer.add_labels(gt, name="cells")
    widget.label_layer.value = viewer.layers["cells"]
    assert widget.run() is None
    assert any("Model file not found" in m for m in errors())
