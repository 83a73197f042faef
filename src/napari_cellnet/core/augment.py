"""Random geometric and intensity augmentation for small training sets, numpy/scipy only.

Training sets in microscopy are small (HuSHeM has 216 images), so every epoch shows the
network randomly rotated, shifted, zoomed, sheared and flipped copies of each image, with
its brightness, contrast and gamma jittered. This module does that on plain arrays so the
same code serves both trainers:

* the classifier augments one single-cell image ``(C, Y, X)``;
* the temporal segmentation trainer augments a window of frames stacked as channels
  ``(C=2k+1, Y, X)`` together with the label of the centre frame ``(Y, X)``.

Every channel of one call receives exactly the same transform (the same rotation, the same
shift, the same gamma), which is what keeps a temporal window consistent; the label gets the
same geometry with nearest-neighbour interpolation so label values are never blended.

The parameter names follow the Keras ``ImageDataGenerator`` options that the sperm
morphology GUI exposed (rotation range, width/height shift, zoom, shear, flips, fill mode),
plus 90 degree rotations and intensity/gamma/noise jitter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
# Keras fill names -> scipy.ndimage modes with the same meaning on the pixel grid.
_SCIPY_MODE = {
    "constant": "grid-constant",
    "nearest": "nearest",
    "reflect": "reflect",
    "wrap": "grid-wrap",
}


@dataclass
class AugmentParams:
    """Ranges of the random transforms; the defaults do nothing.

    Parameters
    ----------
    rotation_range : float
        Rotation drawn uniformly in ``[-rotation_range, +rotation_range]`` degrees.
    width_shift, height_shift : float
        Shift drawn uniformly in ``[-s, +s]`` as a fraction of the width/height.
    zoom_range : float
        Scale drawn uniformly in ``[1 - z, 1 + z]`` (values > 1 enlarge the content).
    shear_range : float
        Shear angle drawn uniformly in ``[-s, +s]`` degrees.
    horizontal_flip, vertical_flip : bool
        Flip left-right / up-down with probability 1/2 each.
    rot90 : bool
        Rotate by a random multiple of 90 degrees (exact, no interpolation). Only used on
        square images; non-square images are left as they are by this step.
    fill_mode : {"constant", "nearest", "reflect", "wrap"}
        How pixels that come from outside the image are filled (as in Keras).
    cval : float
        Fill value for ``fill_mode="constant"`` (the label is always filled with 0).
    brightness : float
        Additive shift drawn in ``[-b, +b]`` times the image's intensity range.
    contrast : float
        Contrast factor drawn in ``[1 - c, 1 + c]`` around the image mean.
    gamma : float
        Gamma drawn log-uniformly in ``[1 / (1 + g), 1 + g]``, applied on the image rescaled
        to [0, 1] by its own min and max and mapped back.
    noise_std : float
        Standard deviation of added Gaussian noise, as a fraction of the intensity range.
    order : int
        Spline order for the image (1 = bilinear). Labels always use 0 (nearest).
    """

    rotation_range: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    zoom_range: float = 0.0
    shear_range: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rot90: bool = False
    fill_mode: str = "reflect"
    cval: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    noise_std: float = 0.0
    order: int = 1

    def __post_init__(self) -> None:
        if self.fill_mode not in FILL_MODES:
            raise ValueError(
                f"Unknown fill mode {self.fill_mode!r}; choose one of {', '.join(FILL_MODES)}."
            )
        for name in ("rotation_range", "width_shift", "height_shift", "zoom_range",
                     "shear_range", "brightness", "contrast", "gamma", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"Augmentation {name} must be >= 0, got {getattr(self, name)}.")
        if self.zoom_range >= 1:
            raise ValueError(f"zoom_range must be < 1 (scale in [1-z, 1+z]), got {self.zoom_range}.")
        if self.contrast >= 1:
            raise ValueError(f"contrast must be < 1 (factor in [1-c, 1+c]), got {self.contrast}.")
        if self.order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"Interpolation order must be 0..5, got {self.order}.")

    @property
    def geometric(self) -> bool:
        """True when any interpolated (affine) transform is enabled."""
        return any((self.rotation_range, self.width_shift, self.height_shift,
                    self.zoom_range, self.shear_range))

    @property
    def active(self) -> bool:
        """True when the parameters change anything at all."""
        return self.geometric or self.horizontal_flip or self.vertical_flip or self.rot90 or any(
            (self.brightness, self.contrast, self.gamma, self.noise_std))

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (for checkpoint meta and logs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentParams:
        """Inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"Unknown augmentation option(s) {sorted(unknown)}; valid: {sorted(names)}.")
        return cls(**d)

    @classmethod
    def preset(cls, name: str) -> AugmentParams:
        """Named settings: ``"none"``, ``"light"``, ``"strong"`` (any orientation), ``"aligned"``, ``"temporal"``.

        ``"strong"`` suits single cells with no preferred orientation (sperm heads,
        organelles): full rotation, flips, small shifts/zoom/shear and intensity jitter.
        ``"aligned"`` suits cells already put upright (``Preprocessing.align``): the same
        jitter with only +-20 degree rotations and mirroring in both axes, so the long axis
        stays vertical (the upside-down mirror forgives a wrongly chosen polarity).
        ``"temporal"`` suits time-lapse windows: flips, 90 degree rotations, mild zoom and
        intensity jitter, no shear.
        """
        presets = {
            "none": cls(),
            "light": cls(rotation_range=15, width_shift=0.05, height_shift=0.05, zoom_range=0.05,
                         horizontal_flip=True, vertical_flip=True, brightness=0.05, contrast=0.1),
            "strong": cls(rotation_range=180, width_shift=0.08, height_shift=0.08, zoom_range=0.1,
                          shear_range=8, horizontal_flip=True, vertical_flip=True, rot90=True,
                          fill_mode="reflect", brightness=0.1, contrast=0.2, gamma=0.2,
                          noise_std=0.02),
            "aligned": cls(rotation_range=20, width_shift=0.05, height_shift=0.05, zoom_range=0.1,
                           shear_range=5, horizontal_flip=True, vertical_flip=True, fill_mode="nearest",
                           brightness=0.1,
                           contrast=0.2, gamma=0.2, noise_std=0.02),
            "temporal": cls(horizontal_flip=True, vertical_flip=True, rot90=True, zoom_range=0.1,
                            rotation_range=10, fill_mode="reflect", brightness=0.05,
                            contrast=0.1, gamma=0.1),
        }
        if name not in presets:
            raise ValueError(f"Unknown augmentation preset {name!r}; choose one of {', '.join(presets)}.")
        return presets[name]


def affine_matrix(
    shape: tuple[int, int],
    rotation: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    zoom: float = 1.0,
    shear: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Output-to-input mapping for :func:`scipy.ndimage.affine_transform`, about the centre.

    Parameters
    ----------
    shape : (int, int)
        ``(Y, X)`` of the image.
    rotation : float
        Counter-clockwise rotation of the content in degrees (as displayed, y down).
    shift : (float, float)
        ``(dy, dx)`` translation of the content in pixels.
    zoom : float
        Scale of the content (> 1 enlarges).
    shear : float
        Shear angle of the content in degrees (x shifted proportionally to y).

    Returns
    -------
    matrix : ndarray, shape (2, 2)
    offset : ndarray, shape (2,)
        ``input = matrix @ output + offset`` in (row, col) coordinates.
    """
    th = np.deg2rad(rotation)
    sh = np.deg2rad(shear)
    # Forward map of the content in (row, col): rotate (counter-clockwise on screen), shear, zoom.
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    shr = np.array([[1.0, 0.0], [np.tan(sh), 1.0]])
    forward = zoom * rot @ shr
    inverse = np.linalg.inv(forward)
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    out_centre = centre + np.asarray(shift, dtype=float)
    offset = centre - inverse @ out_centre
    return inverse, offset


def _warp(plane: np.ndarray, matrix: np.ndarray, offset: np.ndarray, order: int,
          mode: str, cval: float) -> np.ndarray:
    return ndi.affine_transform(plane, matrix, offset=offset, order=order, mode=mode,
                                cval=cval, prefilter=order > 1)


def augment(
    rng: np.random.Generator,
    image: np.ndarray,
    label: np.ndarray | None = None,
    params: AugmentParams | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply one random draw of ``params`` to an image and, optionally, its label.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (pass a seeded one for reproducible training).
    image : ndarray, shape (C, Y, X)
        Channels (colours, or the frames of a temporal window); all get the same transform.
        A 2-D ``(Y, X)`` image is accepted and returned 2-D.
    label : ndarray, shape (Y, X), optional
        Mask or instance labels; transformed with the same geometry, nearest-neighbour,
        filled with 0 outside, never intensity-jittered.
    params : AugmentParams, optional
        The ranges; ``None`` or inactive parameters return copies of the inputs.

    Returns
    -------
    image : ndarray, shape like the input, float32
    label : ndarray, shape (Y, X), the label's dtype, or None
    """
    params = params or AugmentParams()
    squeeze = image.ndim == 2
    img = np.asarray(image, dtype=np.float32)
    if squeeze:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"augment expects an image of shape (C, Y, X) or (Y, X), got {image.shape}.")
    lab = None if label is None else np.asarray(label)
    if lab is not None and lab.shape != img.shape[1:]:
        raise ValueError(f"Label shape {lab.shape} does not match the image's (Y, X) {img.shape[1:]}.")
    img = img.copy()
    lab = None if lab is None else lab.copy()
    ny, nx = img.shape[1:]

    if params.geometric:
        rotation = rng.uniform(-params.rotation_range, params.rotation_range)
        shift = (rng.uniform(-params.height_shift, params.height_shift) * ny,
                 rng.uniform(-params.width_shift, params.width_shift) * nx)
        zoom = rng.uniform(1 - params.zoom_range, 1 + params.zoom_range)
        shear = rng.uniform(-params.shear_range, params.shear_range)
        matrix, offset = affine_matrix((ny, nx), rotation, shift, zoom, shear)
        mode = _SCIPY_MODE[params.fill_mode]
        img = np.stack([_warp(c, matrix, offset, params.order, mode, params.cval) for c in img])
        if lab is not None:
            lab = _warp(lab, matrix, offset, 0, mode, 0).astype(lab.dtype, copy=False)

    if params.horizontal_flip and rng.random() < 0.5:
        img = img[:, :, ::-1]
        lab = None if lab is None else lab[:, ::-1]
    if params.vertical_flip and rng.random() < 0.5:
        img = img[:, ::-1, :]
        lab = None if lab is None else lab[::-1, :]
    if params.rot90 and ny == nx:
        k = int(rng.integers(4))
        img = np.rot90(img, k, axes=(1, 2))
        lab = None if lab is None else np.rot90(lab, k)

    if params.brightness or params.contrast or params.gamma or params.noise_std:
        img = _jitter_intensity(rng, img, params)

    img = np.ascontiguousarray(img, dtype=np.float32)
    lab = None if lab is None else np.ascontiguousarray(lab)
    return (img[0] if squeeze else img), lab


def _jitter_intensity(rng: np.random.Generator, img: np.ndarray, p: AugmentParams) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    span = hi - lo if hi > lo else 1.0
    if p.gamma:
        g = float(np.exp(rng.uniform(-np.log1p(p.gamma), np.log1p(p.gamma))))
        img = lo + span * np.clip((img - lo) / span, 0, 1) ** g
    if p.contrast:
        c = rng.uniform(1 - p.contrast, 1 + p.contrast)
        img = (img - img.mean()) * c + img.mean()
    if p.brightness:
        img = img + rng.uniform(-p.brightness, p.brightness) * span
    if p.noise_std:
        img = img + rng.normal(0.0, p.noise_std * span, size=img.shape)
    return img.astype(np.float32, copy=False)
