"""Stratified splits: every sample tested once, classes spread evenly, seeds reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.core.splits import stratified_holdout, stratified_kfold


def test_stratified_kfold_partitions_and_stratifies():
    y = np.array([0] * 10 + [1] * 5 + [2] * 7)
    folds = stratified_kfold(y, k=5, seed=3)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests.tolist()) == list(range(len(y)))  # every sample tested exactly once
    for train, test in folds:
        assert not set(train) & set(test)
        counts = np.bincount(y[test], minlength=3)
        assert counts[0] == 2 and counts[1] == 1 and counts[2] in (1, 2)
    assert [t.tolist() for _, t in folds] == [t.tolist() for _, t in stratified_kfold(y, 5, seed=3)]
    with pytest.raises(ValueError, match="fewer than the 6 folds"):
        stratified_kfold(y, k=6)


def test_stratified_kfold_refuses_fewer_than_two_folds():
    with pytest.raises(ValueError, match="k >= 2"):
        stratified_kfold([0, 1, 0, 1], k=1)


def test_stratified_holdout_takes_the_fraction_of_each_class():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, test = stratified_holdout(y, test_fraction=0.2, seed=1)
    # round(10 * 0.2) = 2, max(1, round(5 * 0.2)) = 1; a class of one sample stays in training
    assert np.bincount(y[test], minlength=3).tolist() == [2, 1, 0]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    assert not set(train) & set(test)
    assert test.tolist() == sorted(test.tolist())
    again = stratified_holdout(y, test_fraction=0.2, seed=1)
    assert test.tolist() == again[1].tolist() and train.tolist() == again[0].tolist()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_holdout_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_holdout([0, 0, 1, 1], test_fraction=fraction)
