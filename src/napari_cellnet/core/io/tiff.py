"""TIFF files (plain, BigTIFF, ImageJ hyperstacks, OME-TIFF), eagerly or lazily.

Large movies open lazily: uncompressed contiguous TIFFs are memory-mapped, others become a
dask array read one page at a time, so a 4 GB movie opens without being read. Damaged and
truncated files are refused with a message, not read around silently as tifffile would.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core.io.axes import AXES_LETTERS, guess_axes
from napari_cellnet.core.io.stacks import Stack

# tifffile's axis codes -> ours ("S" samples are colour channels, "I"/"Q" image sequences)
_TIFFFILE_AXES = {"S": "C", "I": "T", "Q": "T", "E": "C"}


def read_tiff(path: Path, lazy: bool | None) -> Stack:
    """Read the first series of a TIFF file with its axes, pixel size and ImageJ metadata.

    Parameters
    ----------
    path : Path
    lazy : bool or None
        Memory-map or page-wise dask instead of reading; None reads files up to
        ``napari_cellnet.core.io.LAZY_ABOVE_BYTES`` and opens larger ones lazily.

    Raises
    ------
    ValueError
        If the file is not a TIFF, holds no image, or is damaged or truncated.
    """
    import tifffile

    with _tifffile_complaints() as complaints:
        try:
            tf = tifffile.TiffFile(path)
        except Exception as err:  # noqa: BLE001 - tifffile raises many types for garbage
            raise ValueError(f"{path}: not a readable TIFF ({type(err).__name__}: {err}). Is it really a TIFF?") from err
        series = tf.series[0] if tf.series else None
    try:
        if series is None:
            raise ValueError(f"{path}: the TIFF contains no image data.")
        if complaints:
            raise ValueError(
                f"{path}: the TIFF is damaged or truncated ({complaints[0]}). Copy the file again from its source."
            )
        axes = "".join(_TIFFFILE_AXES.get(a, a) for a in series.axes)
        if len(set(axes)) != len(axes) or set(axes) - set(AXES_LETTERS):
            axes = guess_axes(series.shape)
        if axes in ("TYX",) and series.shape[-1] in (3, 4) and "S" in series.axes:
            axes = "TYXC"
        _check_complete(path, tf, series)
        pixel_size, unit = _pixel_size(tf)
        meta: dict[str, Any] = {"tiff_axes": series.axes}
        if tf.is_imagej and tf.imagej_metadata:
            meta["imagej"] = {k: v for k, v in tf.imagej_metadata.items() if isinstance(v, (int, float, str))}
        nbytes = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
        want_lazy = nbytes > _lazy_above_bytes() if lazy is None else lazy
        if want_lazy:
            data = _lazy_tiff(path, tf, series)
        else:
            data = series.asarray()
    except ValueError:
        tf.close()
        raise
    except Exception as err:  # noqa: BLE001
        tf.close()
        raise ValueError(f"{path}: could not read the TIFF ({type(err).__name__}: {err}). The file may be damaged.") from err
    if not want_lazy or isinstance(data, np.memmap):
        tf.close()
    return Stack(data=data, axes=axes, pixel_size=pixel_size, unit=unit, path=path, metadata=meta)


def _lazy_above_bytes() -> int:
    # A setting of the package, looked up when a file opens, so that changing
    # ``napari_cellnet.core.io.LAZY_ABOVE_BYTES`` takes effect.
    from napari_cellnet.core import io

    return int(io.LAZY_ABOVE_BYTES)


@contextmanager
def _tifffile_complaints() -> Iterator[list[str]]:
    """Collect what tifffile logs about broken page chains (it reads around them silently)."""
    found: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if any(w in msg for w in ("invalid page offset", "corrupted", "failed to reshape", "truncated")):
                found.append(msg.split("> ", 1)[-1])

    logger = logging.getLogger("tifffile")
    handler = _Catch(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _check_complete(path: Path, tf: Any, series: Any) -> None:
    """Refuse truncated files: every strip/tile must lie inside the file."""
    size = path.stat().st_size
    offset = series.dataoffset
    if offset is not None:
        nbytes = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
        end = offset + nbytes
    else:
        end = 0
        for page in series.pages:
            if page is None:
                continue
            offs, counts = page.dataoffsets, page.databytecounts
            if offs:
                end = max(end, max(o + c for o, c in zip(offs, counts, strict=False)))
    if end > size:
        raise ValueError(
            f"{path}: the TIFF is truncated (its data runs to byte {end} but the file has {size} bytes). "
            "Copy the file again from its source."
        )


def _pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None]:
    if tf.is_ome and tf.ome_metadata:
        sx = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tf.ome_metadata)
        sy = re.search(r'PhysicalSizeY="([0-9.eE+-]+)"', tf.ome_metadata)
        unit_m = re.search(r'PhysicalSizeXUnit="([^"]+)"', tf.ome_metadata)
        if sx and sy:
            u = unit_m.group(1) if unit_m else "um"
            return (float(sy.group(1)), float(sx.group(1))), ("um" if u in ("µm", "um", "micron") else u)
    page = tf.pages[0]
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    unit = None
    if tf.is_imagej and tf.imagej_metadata:
        unit = tf.imagej_metadata.get("unit")
    if xres is None or yres is None:
        return None, None
    (xn, xd), (yn, yd) = xres.value, yres.value
    if not (xn and yn) or (xn == xd and yn == yd and unit in (None, "pixel", "")):
        return None, None  # 1 pixel per unit with no unit: the file states no pixel size
    if unit in ("micron", "\\u00B5m", "µm"):
        unit = "um"
    return (yd / yn, xd / xn), unit


class _TiffPages:
    """Array-like view of a TIFF series read one page at a time (for dask)."""

    def __init__(self, path: Path, tf: Any, series: Any) -> None:
        self.path = path
        self.shape = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)
        self.ndim = len(self.shape)
        page_shape = tuple(series.keyframe.shape)
        self.page_ndim = len(page_shape)
        self.lead_shape = self.shape[: self.ndim - self.page_ndim]
        self._tf = tf
        self._series = series
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        lead_idx = [np.arange(n)[k] for n, k in zip(self.lead_shape, key[: len(self.lead_shape)], strict=False)]
        grids = np.meshgrid(*lead_idx, indexing="ij") if lead_idx else []
        flat = np.ravel_multi_index([g.ravel() for g in grids], self.lead_shape) if lead_idx else np.array([0])
        with self._lock:
            pages = [self._series.pages[int(i)].asarray() for i in flat]
        out = np.stack(pages).reshape(tuple(len(i) for i in lead_idx) + pages[0].shape)
        tail = key[len(self.lead_shape):]
        out = out[(slice(None),) * len(lead_idx) + tuple(tail)]
        # integer indices in the leading key drop their axis
        drop = tuple(i for i, k in enumerate(key[: len(self.lead_shape)]) if isinstance(k, (int, np.integer)))
        return out.squeeze(axis=drop) if drop else out


def _lazy_tiff(path: Path, tf: Any, series: Any) -> Any:
    import tifffile

    if series.dataoffset is not None:  # contiguous and uncompressed
        try:
            return tifffile.memmap(path, series=0, mode="r")
        except (ValueError, OSError):
            pass
    import dask.array as da

    pages = _TiffPages(path, tf, series)
    page_shape = series.shape[len(pages.lead_shape):]
    chunks = (1,) * len(pages.lead_shape) + tuple(page_shape)
    return da.from_array(pages, chunks=chunks, asarray=True, fancy=False, name=f"tiff-{path.name}-{id(pages)}")

