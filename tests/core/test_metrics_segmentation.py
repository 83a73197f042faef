"""Segmentation metrics against small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_cellnet.core.metrics import (
    instance_metrics,
    pixel_metrics,
    pixel_metrics_per_frame,
    seg_score,
    segmentation_report,
)


def test_pixel_metrics_hand_case():
    gt = np.array([[1, 1, 0, 0],
                   [1, 1, 0, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]])
    pred = np.array([[1, 1, 1, 0],
                     [1, 0, 0, 0],
                     [0, 0, 0, 0],
                     [0, 0, 0, 1]])
    # tp 3, fp 2, fn 1, tn 10 of 16
    m = pixel_metrics(pred, gt)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 2, 1, 10)
    assert m["error_rate"] == pytest.approx(3 / 16)
    assert m["accuracy"] == pytest.approx(13 / 16)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["wp_accuracy"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(6 / 9)
    assert m["dice"] == pytest.approx(6 / 9)
    assert m["iou"] == pytest.approx(3 / 6)
    assert m["false_white"] == 2
    assert m["false_white_rate"] == pytest.approx(2 / 16)


def test_pixel_metrics_empty_cases_and_shape_error():
    z = np.zeros((3, 3), int)
    assert pixel_metrics(z, z)["f1"] == 1.0 and pixel_metrics(z, z)["precision"] == 1.0
    one = z.copy()
    one[0, 0] = 1
    m = pixel_metrics(z, one)  # nothing predicted, one cell pixel missed
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    with pytest.raises(ValueError, match="differs"):
        pixel_metrics(z, np.zeros((2, 3)))


def test_pixel_metrics_per_frame_and_pooled():
    gt = np.zeros((2, 2, 2), int)
    pred = np.zeros((2, 2, 2), int)
    gt[0, 0, 0] = 1
    pred[0, 0, 0] = 1
    pred[1, 1, 1] = 1
    per = pixel_metrics_per_frame(pred, gt)
    assert per[0]["f1"] == 1.0 and per[1]["false_white"] == 1 and per[1]["precision"] == 0.0
    pooled = pixel_metrics(pred, gt)
    assert pooled["precision"] == pytest.approx(0.5) and pooled["error_rate"] == pytest.approx(1 / 8)


def _two_objects():
    gt = np.zeros((6, 6), np.int32)
    gt[0:2, 0:3] = 1  # 6 px
    gt[3:6, 3:6] = 2  # 9 px
    pred = np.zeros((6, 6), np.int32)
    pred[0:2, 0:2] = 7  # covers 4/6 of gt 1, IoU 4/6
    pred[3:6, 5:6] = 3  # covers 3/9 of gt 2: not more than half -> 0
    pred[5, 0] = 9  # a false positive
    return gt, pred


def test_seg_score_hand_case():
    gt, pred = _two_objects()
    assert seg_score(gt, pred) == pytest.approx((4 / 6 + 0.0) / 2)
    # exactly half is not "more than half"
    g = np.zeros((1, 4), np.int32)
    g[0, :2] = 1
    p = np.zeros((1, 4), np.int32)
    p[0, 0] = 1
    assert seg_score(g, p) == 0.0
    assert math.isnan(seg_score(np.zeros((3, 3), np.int32), p[:, :3].repeat(3, 0)[:3]))


def test_seg_score_pools_frames():
    gt, pred = _two_objects()
    stack_gt = np.stack([gt, gt])
    stack_pred = np.stack([pred, gt])  # second frame perfect
    assert seg_score(stack_gt, stack_pred) == pytest.approx((4 / 6 + 0 + 1 + 1) / 4)


def test_instance_metrics_hand_case():
    gt, pred = _two_objects()
    m = instance_metrics(gt, pred, 0.5)
    # matches: gt1-pred7 IoU 0.667 (tp); gt2-pred3 IoU 3/9 < 0.5 (fn + fp); pred9 fp
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 / 5)
    assert m["ap"] == pytest.approx(1 / 4)
    assert m["mean_matched_iou"] == pytest.approx(4 / 6)
    m2 = instance_metrics(gt, pred, 0.3)
    assert (m2["tp"], m2["fp"], m2["fn"]) == (2, 1, 0)


def test_instance_metrics_uses_one_to_one_matching():
    gt = np.zeros((1, 8), np.int32)
    gt[0, :4] = 1
    pred = np.zeros((1, 8), np.int32)
    pred[0, :3] = 1
    pred[0, 3:4] = 2
    m = instance_metrics(gt, pred, 0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)


def test_instance_metrics_refuses_float_and_bad_threshold():
    with pytest.raises(ValueError, match="integer label images"):
        instance_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="iou_threshold"):
        instance_metrics(np.zeros((2, 2), int), np.zeros((2, 2), int), 0)


def test_segmentation_report_overall_and_per_frame():
    gt, pred = _two_objects()
    rep = segmentation_report(np.stack([pred, gt]), np.stack([gt, gt]))
    assert rep["frames"] == 2 and len(rep["per_frame"]) == 2
    assert rep["per_frame"][1]["seg"] == 1.0 and rep["per_frame"][1]["f1"] == 1.0
    assert rep["seg"] == pytest.approx((4 / 6 + 0 + 1 + 1) / 4)
    # frame 0: tp 1, fp 2, fn 1; frame 1: tp 2 -> ap = 3 / (3 + 2 + 1)
    assert rep["instance_tp"] == 3 and rep["ap"] == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="differs"):
        segmentation_report(pred, gt[:5])
