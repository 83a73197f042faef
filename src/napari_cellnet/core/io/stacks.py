"""One entry point for movies and images: :func:`read_stack` and the :class:`Stack` it returns.

One reader serves the napari reader, the CLI and training, so a movie opens the same way
everywhere and a bad file fails with one message that names the file and what to do.
Axes are taken from the file when it says (tifffile reads ImageJ and OME metadata),
guessed otherwise, and always overridable with ``axes=``. The format readers live in
:mod:`.tiff` and :mod:`.frames`; this module picks one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core.io.axes import guess_axes, validate_axes

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Stack:
    """An image stack and what its file says about it.

    Attributes
    ----------
    data : ndarray or array-like, shape given by ``axes``
        A numpy array, a ``numpy.memmap`` or a dask array when read lazily.
    axes : str
        One letter per dimension of ``data``, from ``"TCZYX"`` (e.g. ``"TYX"``, ``"TCYX"``, ``"YXC"``).
    pixel_size : tuple of float or None
        Physical pixel size ``(y, x)`` when the file states one.
    unit : str or None
        Unit of ``pixel_size`` (e.g. ``"um"``).
    path : Path or None
        Where the stack was read from.
    """

    data: Any
    axes: str
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def scale(self) -> tuple[float, ...]:
        """Per-axis scale for napari layers (pixel size on Y and X, 1 elsewhere)."""
        if self.pixel_size is None:
            return tuple(1.0 for _ in self.axes)
        sizes = {"Y": self.pixel_size[0], "X": self.pixel_size[1]}
        return tuple(float(sizes.get(a, 1.0)) for a in self.axes)


def read_stack(path: str | os.PathLike[str], axes: str | None = None, lazy: bool | None = None) -> Stack:
    """Read a movie or image from a TIFF file, a single image file or a folder of frames.

    Parameters
    ----------
    path : path-like
        A ``.tif``/``.tiff`` (plain, BigTIFF, ImageJ hyperstack, OME-TIFF), a ``.png``/``.jpg``/
        ``.bmp`` image, or a folder of ``.tif``/``.png`` frames (sorted numerically).
    axes : str, optional
        Override the axes the file states or that are guessed (e.g. ``"TYX"``).
    lazy : bool, optional
        Return a memory map or dask array instead of reading everything. The default
        reads files up to 512 MiB (``napari_cellnet.core.io.LAZY_ABOVE_BYTES``) and opens
        larger ones lazily.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an image, is truncated, a folder is empty or mixes frame sizes,
        or ``axes`` does not fit the data. Messages name the file and what to do.
    """
    # The format readers build Stacks, so they import this module: import them here.
    from napari_cellnet.core.io.frames import read_frame_folder
    from napari_cellnet.core.io.tiff import read_tiff

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"No such file or folder: {p}. Check the path.")
    if p.is_dir():
        stack = read_frame_folder(p, lazy=bool(lazy))
    elif p.suffix.lower() in TIFF_SUFFIXES:
        stack = read_tiff(p, lazy)
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        data = read_image(p)
        stack = Stack(data=data, axes=guess_axes(data.shape), path=p)
    else:
        raise ValueError(
            f"{p.name}: unsupported file type {p.suffix!r}. napari-cellnet reads TIFF "
            f"({', '.join(TIFF_SUFFIXES)}), {', '.join(IMAGE_SUFFIXES)} and folders of frames."
        )
    if axes is not None:
        stack.axes = validate_axes(axes, stack.shape, source=p.name)
    return stack


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one 2-D image (grayscale ``(Y, X)`` or colour ``(Y, X, C)``) from any common format."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such image file: {p}.")
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(p)
        else:
            import imageio.v3 as iio

            data = np.asarray(iio.imread(p))
    except Exception as err:  # noqa: BLE001 - any decoder failure means "not a readable image"
        raise ValueError(f"{p}: not a readable image ({type(err).__name__}: {err}). Replace or remove the file.") from err
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
        data = np.moveaxis(data, 0, -1)  # planar RGB -> interleaved
    if data.ndim not in (2, 3):
        raise ValueError(f"{p}: expected a single 2-D image, got shape {data.shape}.")
    return data
