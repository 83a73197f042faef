"""Random training patches from the annotated windows, planned per epoch from the seed so
that a resumed run sees exactly the patches an uninterrupted one would.

numpy only (no torch); :mod:`napari_cellnet.segmentation.training` turns batches into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_cellnet.core.augment import AugmentParams, augment
from napari_cellnet.segmentation.data import FrameSample
from napari_cellnet.segmentation.targets import IGNORE, make_target, unet_weight_map


@dataclass(frozen=True)
class PatchSpec:
    """Where one training patch comes from: fully determined before the epoch starts."""

    sample: int
    y0: int
    x0: int
    seed: int


class PatchSampler:
    """Random (augmented) patches from the annotated windows, reproducible by seed.

    Every patch of an epoch is drawn from ``numpy.random.default_rng([seed, epoch])``
    before the epoch starts and carries its own augmentation seed, so resuming in the
    middle of an epoch continues with exactly the patches an uninterrupted run would see.

    Parameters
    ----------
    samples : list of FrameSample
    patch_size : int
        Side of the square patches; frames smaller than a patch are padded (the padding
        is :data:`IGNORE` in the target).
    classes : {2, 3}
    augment_params : AugmentParams, optional
        Applied identically to all frames of a window and, nearest-neighbour, to its labels.
    rate : int
        Augmentation rate: an epoch has ``rate`` times as many patches as it takes to
        cover the annotated frames once (1x, 5x, 10x as the sperm-morphology GUI offered).
    fg_fraction : float
        Share of patches centred on a random labelled pixel (cells are rare).
    weight_map : bool
        Also return the U-Net weight map (``class_weights``, ``w0``, ``sigma``).
    """

    def __init__(
        self,
        samples: Sequence[FrameSample],
        patch_size: int,
        classes: int = 3,
        augment_params: AugmentParams | None = None,
        rate: int = 1,
        fg_fraction: float = 0.5,
        weight_map: bool = False,
        class_weights: Sequence[float] | np.ndarray | None = None,
        w0: float = 10.0,
        sigma: float = 5.0,
    ) -> None:
        if not samples:
            raise ValueError("No training frame to sample patches from.")
        if patch_size < 8:
            raise ValueError(f"Patch size must be at least 8 pixels, got {patch_size}.")
        if int(rate) < 1:
            raise ValueError(f"The augmentation rate must be 1 or more (1x, 5x, 10x), got {rate}.")
        if not 0.0 <= fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must be between 0 and 1, got {fg_fraction}.")
        self.samples = list(samples)
        self.patch_size = int(patch_size)
        self.classes = int(classes)
        self.augment_params = augment_params
        self.rate = int(rate)
        self.fg_fraction = float(fg_fraction)
        self.weight_map = bool(weight_map)
        self.class_weights = np.ones(classes, np.float32) if class_weights is None else np.asarray(class_weights, np.float32)
        self.w0, self.sigma = float(w0), float(sigma)

    def patches_per_frame(self, s: FrameSample) -> int:
        """Patches needed to cover one frame once."""
        y, x = s.labels.shape
        return int(np.ceil(y / self.patch_size) * np.ceil(x / self.patch_size))

    def __len__(self) -> int:
        """Patches per epoch."""
        return self.rate * sum(self.patches_per_frame(s) for s in self.samples)

    def plan(self, seed: int, epoch: int) -> list[PatchSpec]:
        """The patches of one epoch, in order."""
        rng = np.random.default_rng([int(seed), int(epoch)])
        base = [i for i, s in enumerate(self.samples) for _ in range(self.patches_per_frame(s))]
        order = np.concatenate([rng.permutation(base) for _ in range(self.rate)])
        specs = []
        p = self.patch_size
        for i in order:
            s = self.samples[int(i)]
            y, x = s.labels.shape
            fg = s.foreground
            if len(fg) and rng.random() < self.fg_fraction:
                cy, cx = np.unravel_index(fg[rng.integers(len(fg))], (y, x))
                y0 = int(np.clip(cy - p // 2, 0, max(0, y - p)))
                x0 = int(np.clip(cx - p // 2, 0, max(0, x - p)))
            else:
                y0 = int(rng.integers(0, max(0, y - p) + 1))
                x0 = int(rng.integers(0, max(0, x - p) + 1))
            specs.append(PatchSpec(int(i), y0, x0, int(rng.integers(2**31))))
        return specs

    def make(self, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Cut, pad and augment one patch.

        Returns
        -------
        image : ndarray, shape (window * C, P, P), float32
        target : ndarray, shape (P, P), int64 (:data:`IGNORE` outside the frame)
        weights : ndarray, shape (P, P), float32, or None
        """
        s = self.samples[spec.sample]
        p = self.patch_size
        img = s.window[:, spec.y0:spec.y0 + p, spec.x0:spec.x0 + p]
        # +1 so that 0 marks "no annotation" (padding, or pixels rotated in from outside)
        lab = s.labels[spec.y0:spec.y0 + p, spec.x0:spec.x0 + p].astype(np.int32) + 1
        py, px = p - img.shape[1], p - img.shape[2]
        if py or px:
            mode = "reflect" if (py < img.shape[1] and px < img.shape[2]) else "edge"
            img = np.pad(img, ((0, 0), (0, py), (0, px)), mode=mode)  # type: ignore[call-overload]
            lab = np.pad(lab, ((0, py), (0, px)), mode="constant")
        if self.augment_params is not None and self.augment_params.active:
            img, lab_aug = augment(np.random.default_rng(spec.seed), img, lab, self.augment_params)
            lab = lab_aug if lab_aug is not None else lab
        valid = lab > 0
        inst = np.where(valid, lab - 1, 0)
        target = make_target(inst, self.classes)
        target[~valid] = IGNORE
        weights = None
        if self.weight_map:
            weights = unet_weight_map(inst, self.class_weights, target, self.w0, self.sigma)
        return np.ascontiguousarray(img, dtype=np.float32), target, weights

    def batch(self, specs: Sequence[PatchSpec]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Stack patches: images ``(B, window*C, P, P)``, targets ``(B, P, P)``, weights or None."""
        parts = [self.make(s) for s in specs]
        x = np.stack([a for a, _, _ in parts])
        y = np.stack([b for _, b, _ in parts])
        w = np.stack([c for _, _, c in parts]) if self.weight_map else None  # type: ignore[misc]
        return x, y, w
