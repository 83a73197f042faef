"""Segmentation losses: weighted cross-entropy, Dice, their sum, and a per-pixel weight map.

Cells cover a few percent of a microscopy frame (2.8 % in the bundled C2C12 movie), so a
plain cross-entropy learns "everything is background" first. StemNet answered with a
fixed weight of 2 on the cell class and also implemented median-frequency balancing
(Eigen & Fergus 2015); Dice is insensitive to the imbalance by construction; the U-Net
weight map (Ronneberger et al. 2015) makes the thin background gaps between touching cells
count more so that they stay separate. All of these are here, behind one
:class:`SegmentationLoss` that the trainer builds from its parameters.

Targets are class maps ``(B, Y, X)`` int64 with ``0`` background, ``1`` cell, ``2``
boundary (see :func:`napari_cellnet.segmentation.postprocessing.instance_target`) and :data:`IGNORE`
for pixels that carry no annotation (padding around a patch smaller than the network's
input); ignored pixels contribute to no term.
"""

from __future__ import annotations  # noqa: I001

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_cellnet.segmentation.params import CLASS_WEIGHTINGS, LOSSES  # noqa: F401  (named there, without torch)
from napari_cellnet.segmentation.targets import IGNORE  # target value of pixels left out of every term (padding)


def fixed_class_weights(classes: int, cell: float = 2.0, boundary: float | None = None) -> np.ndarray:
    """StemNet's fixed class weights: 1 on background, ``cell`` on cells.

    Parameters
    ----------
    classes : int
        2 (background, cell) or 3 (background, cell, boundary).
    cell : float
        Weight of the cell class (StemNet used 2).
    boundary : float, optional
        Weight of the boundary class (3 classes only); defaults to ``cell``.

    Returns
    -------
    ndarray, shape (classes,), float32
    """
    if classes not in (2, 3):
        raise ValueError(f"classes must be 2 or 3, got {classes}.")
    if cell <= 0 or (boundary is not None and boundary <= 0):
        raise ValueError(f"Class weights must be > 0, got cell={cell}, boundary={boundary}.")
    w = [1.0, float(cell)]
    if classes == 3:
        w.append(float(cell if boundary is None else boundary))
    return np.asarray(w, dtype=np.float32)


def median_frequency_weights(targets: Sequence[np.ndarray] | np.ndarray, classes: int) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015), as implemented in StemNet's code.

    ``freq(c)`` is the number of pixels of class ``c`` divided by the number of pixels of
    the images in which ``c`` occurs; the weight is ``median(freq) / freq(c)``. A class that
    never occurs gets weight 1.

    Parameters
    ----------
    targets : ndarray, shape (N, Y, X), or a sequence of (Y, X) arrays
        Class maps; :data:`IGNORE` pixels are not counted.
    classes : int
        Number of classes.

    Returns
    -------
    ndarray, shape (classes,), float32
    """
    counts = np.zeros(classes, dtype=np.float64)
    present_pixels = np.zeros(classes, dtype=np.float64)
    for t in targets:
        t = np.asarray(t)
        valid = t != IGNORE
        n = float(valid.sum())
        c = np.bincount(t[valid].ravel().astype(np.int64), minlength=classes)[:classes]
        counts += c
        present_pixels += n * (c > 0)
    seen = counts > 0
    if not seen.any():
        raise ValueError("Median-frequency weights need at least one annotated pixel.")
    freq = np.ones(classes)
    freq[seen] = counts[seen] / present_pixels[seen]
    med = float(np.median(freq[seen]))
    w = np.ones(classes)
    w[seen] = med / freq[seen]
    return w.astype(np.float32)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = False,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 |P ∩ T| + s) / (|P| + |T| + s)``, averaged over classes.

    Sums run over the whole batch (not per image), which keeps the loss defined for patches
    that happen to contain no cell.

    Parameters
    ----------
    logits : Tensor, shape (B, C, Y, X)
    target : Tensor, shape (B, Y, X), int64
        Class indices; :data:`IGNORE` pixels are left out.
    include_background : bool
        Also average the background class's Dice (off by default: it is ~1 anyway).
    smooth : float
        Added to numerator and denominator (a class absent from both gives loss 0).

    Returns
    -------
    Tensor, scalar
    """
    classes = logits.shape[1]
    prob = logits.softmax(dim=1)
    valid = (target != IGNORE).unsqueeze(1).to(prob.dtype)
    onehot = F.one_hot(target.clamp(min=0), classes).permute(0, 3, 1, 2).to(prob.dtype)
    prob = prob * valid
    onehot = onehot * valid
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    first = 0 if include_background or classes == 1 else 1
    return 1 - dice[first:].mean()


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    weight_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy with per-class weights or a per-pixel weight map.

    Parameters
    ----------
    logits : Tensor, shape (B, C, Y, X)
    target : Tensor, shape (B, Y, X), int64
    class_weights : Tensor, shape (C,), optional
        The loss is ``sum(w[t] * ce) / sum(w[t])`` (torch's weighted mean).
    weight_map : Tensor, shape (B, Y, X), optional
        Per-pixel weights (the U-Net map already includes class balance, so it replaces
        ``class_weights``); the loss is ``sum(map * ce) / sum(map)`` over valid pixels.

    Returns
    -------
    Tensor, scalar
    """
    if weight_map is None:
        return F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    w = weight_map * (target != IGNORE).to(weight_map.dtype)
    return (w * ce).sum() / w.sum().clamp(min=1e-8)


class SegmentationLoss(nn.Module):
    """The trainer's loss: ``"ce"``, ``"dice"`` or ``"ce+dice"`` (sum of both).

    Parameters
    ----------
    kind : {"ce", "dice", "ce+dice"}
    class_weights : sequence of float, optional
        Cross-entropy class weights (see :func:`fixed_class_weights`,
        :func:`median_frequency_weights`).
    dice_weight : float
        Factor on the Dice term of ``"ce+dice"``.
    """

    def __init__(
        self,
        kind: str = "ce+dice",
        class_weights: Sequence[float] | np.ndarray | None = None,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"Unknown loss {kind!r}; choose one of {', '.join(LOSSES)}.")
        self.kind = kind
        self.dice_weight = float(dice_weight)
        w = None if class_weights is None else torch.as_tensor(np.asarray(class_weights, dtype=np.float32))
        self.register_buffer("class_weights", w)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of logits ``(B, C, Y, X)`` against targets ``(B, Y, X)`` (optional map ``(B, Y, X)``)."""
        loss = logits.new_zeros(())
        if self.kind in ("ce", "ce+dice"):
            cw: torch.Tensor | None = self.class_weights  # type: ignore[assignment]
            loss = loss + weighted_cross_entropy(logits, target, cw, weight_map)
        if self.kind in ("dice", "ce+dice"):
            loss = loss + self.dice_weight * soft_dice_loss(logits, target)
        return loss
