"""Tiling a frame too large for one forward pass: pad to the network's size divisor, cut
overlapping tiles whose grid lines up with the untiled image, and blend them back so that
tiled == untiled wherever the overlap covers the receptive field.

numpy only; :mod:`napari_cellnet.segmentation.predict` runs the network on the tiles.
"""

from __future__ import annotations

import numpy as np


def pad_to_multiple(image: np.ndarray, divisor: int, mode: str = "reflect") -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes at the bottom/right up to multiples of ``divisor``.

    Returns
    -------
    padded : ndarray, shape (..., Y', X')
    (pad_y, pad_x) : the rows and columns added (crop them off the output).
    """
    y, x = image.shape[-2:]
    py, px = (-y) % divisor, (-x) % divisor
    if py == 0 and px == 0:
        return image, (0, 0)
    # reflect needs the padded size < the axis; fall back to edge for tiny images
    m = mode if (py < y and px < x) else "edge"
    widths = [(0, 0)] * (image.ndim - 2) + [(0, py), (0, px)]
    return np.pad(image, widths, mode=m), (py, px)  # type: ignore[call-overload]


def tile_starts(size: int, tile: int, overlap: int, divisor: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap``.

    Starts are multiples of ``divisor`` (so pooling grids line up with the untiled
    image) except possibly the last, which is flush with the end; that last one is also
    a multiple of ``divisor`` when ``size`` and ``tile`` are.

    Raises
    ------
    ValueError
        If ``overlap >= tile`` or the rounded step is zero.
    """
    if tile >= size:
        return [0]
    if overlap >= tile:
        raise ValueError(f"Tile overlap ({overlap}) must be smaller than the tile ({tile}); use a larger tile.")
    step = ((tile - overlap) // divisor) * divisor
    if step <= 0:
        raise ValueError(
            f"Tile {tile} with overlap {overlap} leaves no step that is a multiple of {divisor}; use a larger tile."
        )
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def tile_grid(shape: tuple[int, int], tile: int, overlap: int, divisor: int = 1) -> list[tuple[slice, slice]]:
    """All ``(rows, cols)`` slices of a tiling of a ``(Y, X)`` image; see :func:`tile_starts`."""
    ys = tile_starts(shape[0], tile, overlap, divisor)
    xs = tile_starts(shape[1], tile, overlap, divisor)
    ty, tx = min(tile, shape[0]), min(tile, shape[1])
    return [(slice(y, y + ty), slice(x, x + tx)) for y in ys for x in xs]


def blend_weights(tile_shape: tuple[int, int], where: tuple[slice, slice], image_shape: tuple[int, int],
                  margin: int, ramp: int) -> np.ndarray:
    """Blending weight of one tile, shape ``tile_shape``, float32.

    On each side that lies inside the image (not on the image border) the weight is 0
    for the ``margin`` outermost pixels (the network saw padding there), then rises
    linearly over ``ramp`` pixels to 1. Accumulate ``sum(w * p) / sum(w)``: where every
    contributing tile is at least ``margin`` from its inner edges, and ``margin`` is at
    least half the receptive field, the blend equals the untiled prediction exactly.
    """
    out = np.ones(tile_shape, dtype=np.float32)
    for axis in (0, 1):
        n = tile_shape[axis]
        s = where[axis]
        prof = np.ones(n, dtype=np.float32)
        ramp_vals = np.clip((np.arange(n, dtype=np.float32) - margin + 1) / max(ramp + 1, 1), 0, 1)
        if s.start > 0:
            prof = np.minimum(prof, ramp_vals)
        if s.stop < image_shape[axis]:
            prof = np.minimum(prof, ramp_vals[::-1])
        out *= prof[:, None] if axis == 0 else prof[None, :]
    return out

