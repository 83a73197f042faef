"""Losses on hand-computed cases: every expected value below is worked out in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cellnet.segmentation.losses import (
    IGNORE,
    SegmentationLoss,
    fixed_class_weights,
    median_frequency_weights,
    soft_dice_loss,
    weighted_cross_entropy,
)

LN2 = math.log(2)


def _two_pixels():
    # pixel A: logits (0, 0), target 0 -> p = 1/2 -> ce = ln 2
    # pixel B: logits (ln 3, 0), target 1 -> p1 = 1 / (3 + 1) -> ce = ln 4 = 2 ln 2
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    return logits, target


def test_cross_entropy_plain_and_class_weighted():
    logits, target = _two_pixels()
    assert weighted_cross_entropy(logits, target).item() == pytest.approx(1.5 * LN2, rel=1e-6)
    # weights (1, 2): (1 ln2 + 2 * 2 ln2) / (1 + 2) = 5 ln2 / 3
    w = torch.tensor([1.0, 2.0])
    assert weighted_cross_entropy(logits, target, w).item() == pytest.approx(5 * LN2 / 3, rel=1e-6)


def test_cross_entropy_weight_map_and_ignore():
    logits, target = _two_pixels()
    wmap = torch.tensor([[[1.0, 3.0]]])
    # (1 ln2 + 3 * 2 ln2) / 4 = 7 ln2 / 4
    assert weighted_cross_entropy(logits, target, weight_map=wmap).item() == pytest.approx(7 * LN2 / 4, rel=1e-6)
    ignored = torch.tensor([[[IGNORE, 1]]])
    assert weighted_cross_entropy(logits, ignored).item() == pytest.approx(2 * LN2, rel=1e-6)
    assert weighted_cross_entropy(logits, ignored, weight_map=wmap).item() == pytest.approx(2 * LN2, rel=1e-6)


def test_soft_dice_half_overlap():
    # 2 classes, p(cell) = 0.5 on 4 pixels, 2 of them cells, no smoothing:
    # |P| = 2, |T| = 2, |P n T| = 1 -> Dice 0.5 -> loss 0.5
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[1, 1], [0, 0]]])
    assert soft_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(0.5, abs=1e-6)
    # with the background class averaged in, its Dice is also 0.5
    assert soft_dice_loss(logits, target, include_background=True, smooth=0.0).item() == pytest.approx(0.5, abs=1e-6)


def test_soft_dice_perfect_wrong_and_ignored():
    target = torch.tensor([[[1, 1], [0, 0]]])
    good = torch.zeros(1, 2, 2, 2)
    good[0, 1][target[0] == 1] = 50.0
    good[0, 0][target[0] == 0] = 50.0
    assert soft_dice_loss(good, target, smooth=0.0).item() == pytest.approx(0.0, abs=1e-6)
    bad = torch.zeros(1, 2, 2, 2)
    bad[0, 0][target[0] == 1] = 50.0
    bad[0, 1][target[0] == 0] = 50.0
    assert soft_dice_loss(bad, target, smooth=0.0).item() == pytest.approx(1.0, abs=1e-6)
    # the wrong pixels ignored: only the two correct cell pixels... none remain here, so
    # ignoring the background row of `good` leaves a perfect prediction
    partly = torch.tensor([[[1, 1], [IGNORE, IGNORE]]])
    assert soft_dice_loss(good, partly, smooth=0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(bad, partly, smooth=0.0).item() == pytest.approx(1.0, abs=1e-6)


def test_fixed_weights_stemnet():
    assert fixed_class_weights(2).tolist() == [1.0, 2.0]
    assert fixed_class_weights(3, cell=2.0, boundary=5.0).tolist() == [1.0, 2.0, 5.0]
    assert fixed_class_weights(3).tolist() == [1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="classes must be 2 or 3"):
        fixed_class_weights(4)


def test_median_frequency_hand_computed():
    # image 1: 3 bg + 1 cell; image 2: 2 bg + 2 boundary
    # counts (5, 1, 2); pixels of images containing the class (8, 4, 4)
    # freq (0.625, 0.25, 0.5), median 0.5 -> weights (0.8, 2.0, 1.0)
    t1 = np.array([[0, 0], [0, 1]])
    t2 = np.array([[0, 0], [2, 2]])
    np.testing.assert_allclose(median_frequency_weights([t1, t2], 3), [0.8, 2.0, 1.0], rtol=1e-6)
    # ignored pixels are not counted; an absent class gets 1
    t3 = np.array([[0, IGNORE], [1, 1]])
    np.testing.assert_allclose(median_frequency_weights([t3], 3), [1.5, 0.75, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="annotated pixel"):
        median_frequency_weights([np.full((2, 2), IGNORE)], 2)


def test_segmentation_loss_kinds():
    logits, target = _two_pixels()
    ce = SegmentationLoss("ce")(logits, target).item()
    dice = SegmentationLoss("dice")(logits, target).item()
    both = SegmentationLoss("ce+dice", dice_weight=0.5)(logits, target).item()
    assert ce == pytest.approx(1.5 * LN2, rel=1e-6)
    assert both == pytest.approx(ce + 0.5 * dice, rel=1e-6)
    weighted = SegmentationLoss("ce", class_weights=[1.0, 2.0])(logits, target).item()
    assert weighted == pytest.approx(5 * LN2 / 3, rel=1e-6)
    with pytest.raises(ValueError, match="Unknown loss 'focal'"):
        SegmentationLoss("focal")


def test_loss_gradient_flows():
    logits, target = _two_pixels()
    logits.requires_grad_(True)
    SegmentationLoss("ce+dice", class_weights=[1.0, 2.0])(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
