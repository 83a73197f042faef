"""The Evaluate widget: segmentation and class comparisons, exact numbers, bad input, export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_cellnet.core import io, metrics

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, qtbot):
    from napari_cellnet.widgets import EvaluateWidget

    viewer = make_napari_viewer()
    widget = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _run(widget, qtbot):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    return widget.result


def test_segmentation_table_matches_the_metrics_module(make_napari_viewer, qtbot, c2c12_crop, tmp_path, errors):
    _, gt = c2c12_crop
    pred = gt.astype(np.int32).copy()
    pred[1][pred[1] == np.unique(pred[1])[1]] = 0  # one cell missed in frame 1
    pred[2] = np.roll(pred[2], 3, axis=1)  # frame 2 shifted by 3 px
    viewer, widget = _widget(make_napari_viewer, qtbot)
    viewer.add_labels(gt, name="truth")
    viewer.add_labels(pred, name="prediction")
    widget.prediction.value = viewer.layers["prediction"]
    widget.ground_truth.value = viewer.layers["truth"]
    result = _run(widget, qtbot)
    assert errors() == []
    expected = metrics.segmentation_report(pred, gt)
    rows = result["rows"]
    assert rows["frame"] == ["all", 0, 1, 2, 3]
    assert rows["seg"][0] == pytest.approx(expected["seg"])
    assert rows["seg"][1] == pytest.approx(1.0) and rows["seg"][2] < 1.0
    assert rows["f1"][3] == pytest.approx(expected["per_frame"][2]["f1"])
    assert rows["instance_fn"][2] == 1.0
    flick = metrics.temporal_consistency(pred)
    assert rows["mask_change"][0] == pytest.approx(flick["mask_change"])
    assert np.isnan(rows["mask_change"][1])  # no previous frame for frame 0
    assert rows["id_churn"][2] == pytest.approx(flick["per_pair"][0]["id_churn"])
    assert rows["gt_mask_change"][0] == pytest.approx(metrics.temporal_consistency(gt)["mask_change"])
    assert "SEG" in widget.status.value and "blink" in widget.status.value
    # the table widget shows the same numbers, and exports them
    shown = widget.table.value
    assert list(shown["columns"])[:2] == ["frame", "seg"] and len(shown["data"]) == 5
    assert float(shown["data"][0][1]) == pytest.approx(round(expected["seg"], 4))
    out = widget.save_csv(tmp_path / "eval.csv")
    table = io.read_table(out)
    assert [str(v) for v in table["frame"]] == ["all", "0", "1", "2", "3"]
    assert float(table["seg"][0]) == pytest.approx(expected["seg"])
    text = widget.table_text()
    assert text.splitlines()[0].split("\t")[:3] == ["frame", "seg", "ap"]


def test_iou_setting_is_evaluate_params_and_its_json_is_the_clis(make_napari_viewer, qtbot, c2c12_crop, tmp_path):
    from napari_cellnet.cli.app import build_parser
    from napari_cellnet.cli.flags import params_from_args
    from napari_cellnet.segmentation.params import EvaluateParams

    _, gt = c2c12_crop
    pred = gt.astype(np.int32).copy()
    pred[2] = np.roll(pred[2], 3, axis=1)
    viewer, widget = _widget(make_napari_viewer, qtbot)
    assert widget.form.value == EvaluateParams()
    viewer.add_labels(gt, name="truth")
    viewer.add_labels(pred, name="prediction")
    widget.prediction.value = viewer.layers["prediction"]
    widget.ground_truth.value = viewer.layers["truth"]
    widget.form.controls["iou"].value = 0.9
    result = _run(widget, qtbot)
    assert result["rows"]["ap"][0] == pytest.approx(metrics.segmentation_report(pred, gt, 0.9)["ap"])
    assert "AP@0.90" in widget.status.value
    saved = widget.form.save(tmp_path / "evaluate_params.json")
    args = build_parser().parse_args(["evaluate", "p.tif", "g.tif", "--params", str(saved)])
    assert params_from_args(EvaluateParams, args) == EvaluateParams(iou=0.9)


def test_sparse_ground_truth_scores_only_annotated_frames(make_napari_viewer, qtbot, c2c12_crop):
    _, gt = c2c12_crop
    sparse = gt.copy()
    sparse[[1, 3]] = 0
    viewer, widget = _widget(make_napari_viewer, qtbot)
    viewer.add_labels(sparse, name="three frames annotated")
    viewer.add_labels(gt.astype(np.int32), name="prediction")
    widget.prediction.value = viewer.layers["prediction"]
    widget.ground_truth.value = viewer.layers["three frames annotated"]
    result = _run(widget, qtbot)
    assert result["frames"] == [0, 2]
    assert result["rows"]["seg"][0] == pytest.approx(1.0)
    widget.annotated_only.value = "all frames"
    result = _run(widget, qtbot)
    # SEG ignores false positives, pixel F1 does not: cells predicted on unannotated frames now count
    assert result["frames"] == [0, 1, 2, 3] and result["rows"]["f1"][0] < 1.0


def test_shape_mismatch_and_missing_layers_are_explained(make_napari_viewer, qtbot, c2c12_crop, errors):
    _, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot)
    assert widget.run() is None
    assert any("Pick a prediction and a ground-truth" in m for m in errors())
    viewer.add_labels(gt, name="truth")
    viewer.add_labels(gt[:, :50], name="cropped")
    widget.prediction.value = viewer.layers["cropped"]
    widget.ground_truth.value = viewer.layers["truth"]
    assert widget.run() is None
    assert any("(4, 50, 96)" in m and "(4, 96, 96)" in m and "same movie" in m for m in errors())
    assert widget.result is None and widget.run_button.enabled


def test_class_comparison_confusion_matrix(make_napari_viewer, qtbot):
    lab = np.zeros((1, 10, 10), np.int32)
    for i in range(1, 7):
        lab[0, i, i] = i
    viewer, widget = _widget(make_napari_viewer, qtbot)
    features = pd.DataFrame({
        "frame": [0] * 6, "label": [1, 2, 3, 4, 5, 6],
        "class": ["normal", "normal", "tapered", "tapered", "normal", "tapered"],
        "annotated_class": ["normal", "tapered", "tapered", "tapered", "", "normal"],
    })
    viewer.add_labels(lab, name="objects", features=features)
    widget.mode.value = "classes"
    widget.class_layer.value = viewer.layers["objects"]
    assert widget.pred_column.value == "class" and widget.true_column.value == "annotated_class"
    result = _run(widget, qtbot)
    # 5 objects have both; truth rows x predicted columns, classes sorted: normal, tapered
    assert result["report"]["confusion_matrix"] == [[1, 1], [1, 2]]
    assert result["report"]["accuracy"] == pytest.approx(3 / 5)
    np.testing.assert_array_equal(widget.plot.matrix, [[1, 1], [1, 2]])
    rows = result["rows"]
    assert rows["class"][:2] == ["normal", "tapered"]
    assert rows["precision"][1] == pytest.approx(2 / 3) and rows["recall"][0] == pytest.approx(1 / 2)
    assert "accuracy 0.600" in widget.status.value
