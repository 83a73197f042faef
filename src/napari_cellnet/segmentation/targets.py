"""Training targets from instance labels: the class map the network learns (background /
cell / boundary, which separates touching cells) and the U-Net border weight map.

numpy and scipy only; :data:`IGNORE` marks pixels that carry no annotation (padding), which
every loss leaves out (:mod:`napari_cellnet.segmentation.losses`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

IGNORE = -1
"""Target value of pixels that carry no annotation (padding); the losses leave them out.
Defined here, not in :mod:`losses`, so that preparing data does not import torch."""


def make_target(labels: np.ndarray, classes: int) -> np.ndarray:
    """Class map for instance labels: 0 background, 1 cell, 2 boundary (3 classes) or 0/1 (2 classes).

    Parameters
    ----------
    labels : ndarray, shape (Y, X), int
    classes : {2, 3}

    Returns
    -------
    ndarray, shape (Y, X), int64
    """
    if classes == 2:
        return (np.asarray(labels) > 0).astype(np.int64)
    from napari_cellnet.segmentation.postprocessing import instance_target

    return np.asarray(instance_target(labels), dtype=np.int64)


def unet_weight_map(
    labels: np.ndarray,
    class_weights: Sequence[float] | np.ndarray,
    target: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
) -> np.ndarray:
    """U-Net weight map (Ronneberger et al. 2015, eq. 2) for instance labels.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` on background pixels,
    where ``d1`` and ``d2`` are the distances to the nearest and second-nearest cell; the
    thin gaps between touching cells get the largest weight. Cells are visited one at a
    time (running minima), so memory stays at a few frames whatever the cell count.

    Parameters
    ----------
    labels : ndarray, shape (Y, X), int
        Instance labels (0 background).
    class_weights : sequence of float, shape (classes,)
        ``w_c`` per target class.
    target : ndarray, shape (Y, X), int, optional
        Class map (:func:`make_target`); built from ``labels`` with ``len(class_weights)``
        classes when omitted. :data:`IGNORE` pixels get weight 0.
    w0, sigma : float
        Border weight and its width in pixels (the paper's 10 and 5).

    Returns
    -------
    ndarray, shape (Y, X), float32
    """
    labels = np.asarray(labels)
    cw = np.asarray(class_weights, dtype=np.float32)
    if target is None:
        target = make_target(labels, len(cw))
    valid = target != IGNORE
    out = np.where(valid, cw[np.clip(target, 0, None)], 0).astype(np.float32)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) < 2 or w0 == 0:
        return out
    d1 = np.full(labels.shape, np.inf, dtype=np.float32)
    d2 = np.full(labels.shape, np.inf, dtype=np.float32)
    for i in ids:
        d = ndi.distance_transform_edt(labels != i).astype(np.float32)
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        d1 = np.where(closer, d, d1)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    bg = (labels == 0) & valid
    out[bg] += border[bg].astype(np.float32)
    return out
