"""Folders of numbered frame images read as one movie.

Frames are sorted numerically (``frame2`` before ``frame10``) and must share one size;
a lazy read stacks them as a dask array that reads each frame when it is shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core.io.stacks import Stack, read_image

FRAME_SUFFIXES = (".tif", ".tiff", ".png")


def natural_key(path: Path) -> list[Any]:
    """Sort key that orders numbers in a file name by value (``frame2`` before ``frame10``)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """Frame files of a folder in numeric order (``frame2`` before ``frame10``)."""
    folder = Path(folder)
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES and not f.name.startswith(".")]
    return sorted(files, key=natural_key)


def read_frame_folder(folder: Path, lazy: bool) -> Stack:
    """Read a folder of frames as a ``TYX`` (or ``TYXC``) :class:`Stack`; see :func:`list_frames`."""
    files = list_frames(folder)
    if not files:
        raise ValueError(
            f"{folder}: the folder holds no frames ({', '.join(FRAME_SUFFIXES)}). "
            "Choose a folder of numbered frame images."
        )
    first = read_image(files[0])
    if lazy:
        import dask
        import dask.array as da

        _check_frame_shapes(files, first)
        frames = [da.from_delayed(dask.delayed(read_image)(f), shape=first.shape, dtype=first.dtype) for f in files]
        data: Any = da.stack(frames)
    else:
        frames_np = [first]
        for f in files[1:]:
            frame = read_image(f)
            if frame.shape != first.shape:
                raise ValueError(_mixed_sizes(folder, files[0], first.shape, f, frame.shape))
            frames_np.append(frame)
        data = np.stack(frames_np)
    axes = "TYXC" if first.ndim == 3 else "TYX"
    return Stack(data=data, axes=axes, path=folder, metadata={"files": [str(f) for f in files]})


def _check_frame_shapes(files: list[Path], first: np.ndarray) -> None:
    import imageio.v3 as iio

    for f in files[1:]:
        try:
            props = iio.improps(f)
            shape = tuple(props.shape)
        except Exception:  # noqa: BLE001
            shape = read_image(f).shape
        if shape != first.shape:
            raise ValueError(_mixed_sizes(f.parent, files[0], first.shape, f, shape))


def _mixed_sizes(folder: Path, f0: Path, s0: tuple[int, ...], f: Path, s: tuple[int, ...]) -> str:
    return (
        f"{folder}: frames differ in size ({f0.name} is {s0}, {f.name} is {s}). "
        "All frames of a movie must have the same size; crop or pad them, or move the odd ones out."
    )
