"""Stratified train/test splits of class labels: k folds or one hold-out.

Not I/O: training, the k-fold folder copy and the benchmarks all split with these, so a
fold means the same samples everywhere for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_kfold(labels: Sequence[int] | np.ndarray, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split sample indices into ``k`` folds with each class spread evenly over the folds.

    Returns
    -------
    list of (train_idx, test_idx)
        Sorted index arrays; every sample is in exactly one test fold.

    Raises
    ------
    ValueError
        If ``k < 2`` or some class has fewer than ``k`` samples.
    """
    y = np.asarray(labels)
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2 folds, got {k}.")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < k:
        small = classes[counts.argmin()]
        raise ValueError(
            f"Class {small!r} has only {counts.min()} samples, fewer than the {k} folds asked for. "
            "Use fewer folds or add samples."
        )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    start = 0
    for c in classes:
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold_of[idx] = (np.arange(len(idx)) + start) % k
        start = (start + len(idx)) % k  # keeps fold sizes balanced across classes
    all_idx = np.arange(len(y))
    return [(all_idx[fold_of != f], all_idx[fold_of == f]) for f in range(k)]


def stratified_holdout(labels: Sequence[int] | np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One stratified train/test split with about ``test_fraction`` of each class held out."""
    y = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}.")
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test += idx[:n].tolist()
    test_idx = np.sort(np.asarray(test, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx
