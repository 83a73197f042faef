"""Put every cell in the same pose before classifying it: centred, long axis vertical.

Single-cell galleries such as HuSHeM show each cell at a random angle. A CNN can learn
that any angle is the same class only from many rotated copies, and a few hundred images
are not enough: rotation augmentation spends the network's capacity on the pose instead of
the shape. Sperm-head morphology papers therefore align the heads first (Shaker et al.
2017 fit an ellipse and rotate it upright before their dictionary classifier). This module
does that for any single-cell image:

1. :func:`object_mask` finds the cell: the smoothed colour distance of each pixel to the
   background colour (the median of the image border), Otsu's threshold, an opening that
   cuts thin appendages (a sperm tail), and the connected component that is large and near
   the image centre, not touching the image edge. Objects of a Labels layer bring their own mask instead.
2. :func:`pose` measures the mask's centroid and the angle of its major axis
   (:func:`skimage.measure.regionprops`), and its *polarity*: faint structure attached to
   the cell (a sperm tail) goes down; without any, the broad end of the mask goes up.
3. :func:`align` rotates the image about the centroid so the centroid lands on the image
   centre and the major axis is vertical, broad end up (:func:`scipy.ndimage.affine_transform`,
   through :func:`napari_cellnet.core.augment.affine_matrix`).

What is left free is a mirror image (left-right), which a classifier learns by horizontal-flip
augmentation; :data:`ALIGNED_TTA` are the test-time views that respect the pose.

Numpy, scipy and scikit-image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label, regionprops
from skimage.morphology import disk

from napari_cellnet.core.augment import affine_matrix

ALIGN_MODES = ("none", "major_axis")


@dataclass(frozen=True)
class Pose:
    """Where a cell lies in its image.

    Attributes
    ----------
    centroid : (float, float)
        ``(row, col)`` of the mask's centroid, pixels.
    angle : float
        Counter-clockwise rotation (degrees, as displayed with y down) that makes the major
        axis vertical with the broad end up.
    elongation : float
        Major over minor axis length (1 for a disc); below about 1.1 the angle is
        arbitrary and only the centring matters.
    """

    centroid: tuple[float, float]
    angle: float
    elongation: float


def contrast_image(cyx: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Smoothed colour distance of each pixel to the background colour, shape (Y, X).

    The background colour is the per-channel median of the whole image: a single-cell image
    is mostly background (padding bars at the border, as in a few HuSHeM images, would
    spoil a border median).
    """
    x = np.asarray(cyx, dtype=np.float32)
    background = np.median(x.reshape(x.shape[0], -1), axis=1)
    contrast = np.sqrt(((x - background[:, None, None]) ** 2).sum(axis=0))
    return gaussian(contrast, sigma=sigma, preserve_range=True) if sigma > 0 else contrast


def object_mask(cyx: np.ndarray, sigma: float = 1.5, opening: int = 2,
                contrast: np.ndarray | None = None) -> np.ndarray:
    """The mask of the cell nearest the centre of a single-cell image.

    Parameters
    ----------
    cyx : ndarray, shape (C, Y, X)
        Any channel count and dtype.
    sigma : float
        Gaussian smoothing (pixels) of the contrast image before thresholding.
    opening : int
        Radius of the binary opening that removes thin appendages (tails, debris);
        0 turns it off.
    contrast : ndarray, shape (Y, X), optional
        :func:`contrast_image` of ``cyx`` when the caller already has it.

    Returns
    -------
    ndarray of bool, shape (Y, X)
        All ``False`` when the image is flat (nothing to find).
    """
    c = contrast_image(cyx, sigma) if contrast is None else contrast
    if float(c.max()) <= float(c.min()):
        return np.zeros(c.shape, bool)
    mask = c > threshold_otsu(c)
    if opening > 0:
        opened = ndi.binary_opening(mask, structure=disk(opening))
        mask = opened if opened.any() else mask
    regions = label(mask)
    props = regionprops(regions)
    if not props:
        return mask
    centre = (np.asarray(mask.shape, float) - 1) / 2
    scale = max(mask.shape) / 4

    def score(p: object) -> float:
        d = np.hypot(*(np.asarray(p.centroid) - centre)) / scale  # type: ignore[attr-defined]
        return float(p.area) / (1.0 + d * d)  # type: ignore[attr-defined]

    # Padding bars and neighbours cut by the image edge are not the centred cell.
    inner = [p for p in props if p.bbox[0] > 0 and p.bbox[1] > 0
             and p.bbox[2] < mask.shape[0] and p.bbox[3] < mask.shape[1]]
    best = max(inner or props, key=score)
    return ndi.binary_fill_holes(regions == best.label)


def _appendage_side(mask: np.ndarray, contrast: np.ndarray, along: np.ndarray, across: np.ndarray,
                    half_width: float) -> float:
    """Which end of the axis faint structure leaves the mask from (a tail): +1 bottom, -1 top, 0 unknown.

    ``along``/``across`` hold every pixel's coordinates along and across the cell's major
    axis. Only structure in a band as wide as the cell around the axis counts, so
    neighbours and debris beside the cell do not.
    """
    distance = ndi.distance_transform_edt(~mask)  # to the mask; <= r is a dilation by a disk of radius r
    ring = (distance > 4) & (distance <= 12) & (np.abs(across) < half_width)
    if not ring.any():
        return 0.0
    excess = np.clip(contrast - float(np.median(contrast)), 0, None)
    below = float(excess[ring & (along > 0)].sum())
    above = float(excess[ring & (along < 0)].sum())
    if max(below, above) < 1.5 * min(below, above) or max(below, above) == 0:
        return 0.0  # nothing clearly on one side
    return 1.0 if below > above else -1.0


def _ellipse(mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """Centroid (row, col), orientation (radians) and major/minor axis lengths of a mask.

    The second central moments, with :func:`skimage.measure.regionprops`' formulas and
    conventions (its ``orientation``, ``axis_major_length``, ``axis_minor_length``), computed
    directly: regionprops costs several times more on the small masks of object crops.
    """
    rows, cols = np.nonzero(mask)
    cy, cx = rows.mean(), cols.mean()
    dr, dc = rows - cy, cols - cx
    # regionprops' inertia tensor [[a, b], [b, c]] = [[mu02, -mu11], [-mu11, mu20]] / mu00
    a, b, c = float(np.mean(dc * dc)), -float(np.mean(dr * dc)), float(np.mean(dr * dr))
    if a - c == 0:
        orientation = np.pi / 4 if b < 0 else -np.pi / 4
    else:
        orientation = 0.5 * np.arctan2(-2 * b, c - a)
    half = np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1, l2 = (a + c) / 2 + half, max((a + c) / 2 - half, 0.0)
    return float(cy), float(cx), float(orientation), 4 * np.sqrt(l1), 4 * np.sqrt(l2)


def pose(mask: np.ndarray, contrast: np.ndarray | None = None) -> Pose | None:
    """Centroid, upright angle and elongation of a mask; ``None`` for an empty mask.

    Polarity (which end goes up): with a ``contrast`` image (:func:`contrast_image`, lightly
    smoothed so a one-pixel tail survives), faint structure touching the mask -- a sperm tail, a neurite -- is put at the bottom; without
    one, or when nothing touches the mask, the broad end of the mask goes up (the skewness
    of the mask along its axis).
    """
    m = np.asarray(mask, bool)
    if not m.any():
        return None
    cy, cx, orientation, major, minor = _ellipse(m)
    # orientation = angle between the row axis and the major axis, counter-clockwise as
    # displayed (regionprops' convention). Rotating the content by -orientation makes the
    # axis vertical.
    angle = -float(np.rad2deg(orientation))
    th = np.deg2rad(angle)
    rr, cc = np.indices(m.shape)
    # Row coordinate of each pixel after that rotation (the same convention as affine_matrix).
    along = np.cos(th) * (rr - cy) - np.sin(th) * (cc - cx)
    across = np.sin(th) * (rr - cy) + np.cos(th) * (cc - cx)
    side = (_appendage_side(m, contrast, along, across, minor / 2)
            if contrast is not None else 0.0)
    if side == 0.0:
        inside = along[m]
        spread = inside.std()
        skew = float(np.mean(inside ** 3) / spread ** 3) if spread > 0 else 0.0
        side = skew  # a long tail of the distribution towards +rows: the broad end is up
    if side < 0:
        angle += 180.0
    elongation = float(major / minor) if minor > 0 else float("inf")
    return Pose((float(cy), float(cx)), (angle + 180.0) % 360.0 - 180.0, elongation)


def isolate(cyx: np.ndarray, mask: np.ndarray, margin: int = 3) -> np.ndarray:
    """Paint everything farther than ``margin`` pixels from the cell with the background colour.

    Tails, neighbours and debris then cannot sway a classifier that should judge the cell's
    own shape. The background colour is the per-channel median outside the dilated mask.

    Parameters
    ----------
    cyx : ndarray, shape (C, Y, X)
    mask : ndarray of bool, shape (Y, X)
    margin : int

    Returns
    -------
    ndarray of float32, shape (C, Y, X)
    """
    x = np.array(cyx, dtype=np.float32)
    keep = ndi.distance_transform_edt(~np.asarray(mask, bool)) <= margin
    if keep.all() or not keep.any():
        return x
    fill = np.median(x[:, ~keep], axis=1)
    x[:, ~keep] = fill[:, None]
    return x


def align(cyx: np.ndarray, mask: np.ndarray | None = None, order: int = 1,
          keep_only_cell: bool = False) -> np.ndarray:
    """Rotate a single-cell image so the cell is centred, its long axis vertical, broad end up.

    Parameters
    ----------
    cyx : ndarray, shape (C, Y, X)
    mask : ndarray of bool, shape (Y, X), optional
        The cell (e.g. from a Labels layer); found with :func:`object_mask` when omitted.
    order : int
        Spline order of the resampling (1 = bilinear).
    keep_only_cell : bool
        :func:`isolate` the cell first (its surroundings become background colour).

    Returns
    -------
    ndarray of float32, shape (C, Y, X)
        Pixels brought in from outside the image repeat the nearest edge pixel. An image
        in which no cell is found is returned unchanged.
    """
    x = np.asarray(cyx, dtype=np.float32)
    m = object_mask(x) if mask is None else np.asarray(mask, bool)
    found = pose(m, contrast_image(x, sigma=0.5))
    if found is None:
        return x.copy()
    if keep_only_cell:
        x = isolate(x, m)
    centre = (np.asarray(x.shape[-2:], float) - 1) / 2
    th = np.deg2rad(found.angle)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    shift = -rot @ (np.asarray(found.centroid) - centre)
    matrix, offset = affine_matrix(x.shape[-2:], rotation=found.angle, shift=tuple(shift))
    return np.stack([ndi.affine_transform(plane, matrix, offset=offset, order=order, mode="nearest",
                                          prefilter=order > 1) for plane in x])
