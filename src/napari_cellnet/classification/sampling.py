"""What the training loop draws from a :class:`~napari_cellnet.classification.data.SampleSet`.

Prepared samples (:mod:`napari_cellnet.classification.data`) are only arithmetic away from a
batch: this module decides which samples an epoch sees, how often, in what order and how
class imbalance is countered, and refuses sample sets a classifier cannot learn from.

Imbalance policies (``ClassifierTrainConfig.balance``): :func:`class_weights` gives
inverse-frequency loss weights; :func:`balanced_indices` samples with probability inversely
proportional to the class size, so every class is drawn equally often.

Numpy only (no torch), like the rest of the sample preparation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from napari_cellnet.classification.data import SampleSet
from napari_cellnet.core.augment import AugmentParams, augment


def check_trainable(samples: SampleSet) -> None:
    """Refuse sample sets a classifier cannot learn from, saying what to add."""
    if len(samples) == 0:
        raise ValueError("No samples to train on (the gallery is empty or no object has a class).")
    counts = samples.counts()
    have = [c for c, n in counts.items() if n > 0]
    if len(have) < 2:
        raise ValueError(
            f"Training needs at least 2 classes with samples; found {have or 'none'} "
            f"(counts {counts}). Add a second class."
        )


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``N / (K * n_c)`` (1.0 for a balanced set, 0 for absent classes)."""
    y = np.asarray(labels)
    y = y[y >= 0]
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = y.size / (present.sum() * counts[present])
    return w.astype(np.float32)


def balanced_indices(rng: np.random.Generator, labels: np.ndarray, n: int) -> np.ndarray:
    """Draw ``n`` sample indices so that every present class is equally likely."""
    y = np.asarray(labels)
    counts = np.bincount(y[y >= 0])
    p = np.where(y >= 0, 1.0 / np.maximum(counts[np.clip(y, 0, None)], 1), 0.0)
    return rng.choice(y.size, size=n, replace=True, p=p / p.sum())


def epoch_indices(rng: np.random.Generator, labels: np.ndarray, rate: int = 1, balance: str = "none") -> np.ndarray:
    """The sample order of one epoch: every sample ``rate`` times (or a balanced draw of that size)."""
    if rate < 1:
        raise ValueError(f"Augmentation rate must be >= 1 (copies per image per epoch), got {rate}.")
    n = len(labels) * rate
    if balance == "sampler":
        return balanced_indices(rng, labels, n)
    return rng.permutation(np.tile(np.arange(len(labels)), rate))


def iterate_batches(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, batch_size: int,
                    params: AugmentParams | None = None, rate: int = 1, balance: str = "none",
                    drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Augmented training batches of one epoch.

    Yields
    ------
    x : ndarray of float32, shape (B, C, S, S)
    y : ndarray of int64, shape (B,)
    """
    order = epoch_indices(rng, labels, rate, balance)
    stop = len(order) - (len(order) % batch_size if drop_last and len(order) >= batch_size else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        if params is not None and params.active:
            x = np.stack([augment(rng, images[i], None, params)[0] for i in idx])
        else:
            x = images[idx]
        yield x, labels[idx]
