"""Writing results so that a crash never leaves half a file, and reading back the tables.

Every writer goes through a temporary file beside the target (:func:`atomic_path`,
:class:`TiffFrameWriter`): the file appears under its name only when complete. JSON, label
TIFFs that Fiji and napari reopen with their axes, movies written frame by frame, and CSV
tables.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core.io.axes import validate_axes


def temp_path_beside(path: str | os.PathLike[str]) -> Path:
    """Create an empty hidden temporary file next to ``path`` and return its path.

    It gets the permissions a plain ``open`` would give (``mkstemp`` alone makes it
    private to the owner); rename it onto ``path`` when it is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A crash, a full disk or an exception never leaves a half-written file under the
    final name, and the temporary file is removed.
    """
    tmp = temp_path_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically; numpy scalars/arrays become numbers/lists."""
    import json

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as numbers and lists, anything else (paths) as text."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_labels(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    axes: str = "TYX",
    pixel_size: tuple[float, float] | None = None,
    unit: str = "um",
) -> Path:
    """Write a label or mask stack to an ImageJ TIFF that Fiji, napari and this package reopen with its axes.

    Labels up to 65535 are stored as uint16 (ImageJ's label type); larger IDs as int32 in a
    tifffile-shaped TIFF. The file appears under its name only once fully written.
    """
    path = Path(path)
    arr = np.asarray(labels)
    ax = validate_axes(axes, arr.shape, source=path.name)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    kwargs: dict[str, Any] = {}
    if pixel_size is not None:
        kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
    import tifffile

    with atomic_path(path) as tmp:
        if np.issubdtype(arr.dtype, np.integer) and arr.size and (arr.min() < 0 or arr.max() > 65535):
            tifffile.imwrite(tmp, arr.astype(np.int32), metadata={"axes": ax}, photometric="minisblack", **kwargs)
        else:
            if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
                arr = arr.astype(np.uint16)
            elif np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(np.float32)
            # ImageJ calls interleaved colour samples "S"
            meta: dict[str, Any] = {"axes": ax[:-1] + "S" if ax.endswith("C") else ax}
            if pixel_size is not None:
                meta["unit"] = unit
            tifffile.imwrite(tmp, arr, imagej=True, metadata=meta, **kwargs)
    return path


class TiffFrameWriter:
    """Write a movie to a BigTIFF one frame at a time, under a temporary name until :meth:`commit`.

    A long movie then never has to be held in memory, and a crash or :meth:`abort` leaves
    no file under the final name (the temporary file beside it is removed). The file is
    a tifffile-shaped BigTIFF with axes ``TYX``, one contiguous page per frame, that
    :func:`~napari_cellnet.core.io.read_stack` and napari reopen as a ``(T, Y, X)`` stack.

    Parameters
    ----------
    path : path-like
        Where the finished file goes; its folder is created if missing.
    dtype : numpy dtype
        Every frame is converted to this type (``np.uint32`` labels, ``np.float32``
        probabilities).
    pixel_size : (float, float) or None
        Pixel size ``(y, x)``, stored as the TIFF resolution (1 / size per unit).

    Attributes
    ----------
    path : Path
        The final path.
    frames : int
        Frames written so far.

    Examples
    --------
    >>> writer = TiffFrameWriter(out / "labels.tif", np.uint32, (0.65, 0.65))  # doctest: +SKIP
    >>> for frame in frames:  # doctest: +SKIP
    ...     writer.write(frame)
    >>> writer.commit()  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], dtype: Any,
                 pixel_size: tuple[float, float] | None = None) -> None:
        import tifffile

        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.frames = 0
        self._tmp = temp_path_beside(self.path)
        self._kwargs: dict[str, Any] = {"photometric": "minisblack", "contiguous": True,
                                        "metadata": {"axes": "TYX"}}
        if pixel_size is not None:
            self._kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
        self._writer = tifffile.TiffWriter(self._tmp, bigtiff=True)

    def write(self, frame: np.ndarray) -> None:
        """Append one frame, shape (Y, X), converted to the writer's dtype."""
        self._writer.write(np.asarray(frame).astype(self.dtype, copy=False), **self._kwargs)
        self.frames += 1

    def commit(self) -> Path:
        """Close the file and rename it to its final name; returns that path."""
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; nothing appears under the final name."""
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)


def write_table(path: str | os.PathLike[str], columns: Mapping[str, Sequence[Any]]) -> Path:
    """Write equal-length columns to a CSV file (one row per object), atomically."""
    path = Path(path)
    names = list(columns)
    lengths = {len(columns[n]) for n in names}
    if len(lengths) > 1:
        raise ValueError(f"Columns of {path.name} differ in length: { {n: len(columns[n]) for n in names} }")
    n = lengths.pop() if lengths else 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for i in range(n):
            writer.writerow([_cell(columns[c][i]) for c in names])
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_table(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read a CSV written by :func:`write_table`; numeric columns come back as numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such table: {path}.")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: the table is empty (no header row).")
    header, body = rows[0], rows[1:]
    cols: dict[str, list[Any]] = {h: [r[i] if i < len(r) else "" for r in body] for i, h in enumerate(header)}
    for name, values in cols.items():
        for cast in (int, float):
            try:
                cols[name] = [cast(v) for v in values]
                break
            except ValueError:
                continue
    return cols
