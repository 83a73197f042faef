"""napari reader: TIFF movies (ImageJ, OME, BigTIFF) and folders of frames.

``get_reader`` checks cheaply (extension, TIFF header, truncation) and returns ``None``
for anything it cannot read, so napari can try another plugin; it never raises.
Integer stacks whose file name says labels/masks open as Labels layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core.io import FRAME_SUFFIXES, TIFF_SUFFIXES, Stack, list_frames, read_stack

LayerData = tuple[Any, dict[str, Any], str]
_LABEL_WORDS = ("label", "mask", "seg", "instances")
log = logging.getLogger(__name__)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_layers` if ``path`` is something this plugin can open, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    try:
        if p.is_dir():
            return read_layers if list_frames(p) else None
        if p.suffix.lower() not in TIFF_SUFFIXES or not p.is_file():
            return None
        read_stack(p, lazy=True)  # header, axes and truncation checks; reads no pixels
    except (ValueError, OSError):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read ``path`` into napari layer data (image or labels, with scale and axis labels)."""
    if isinstance(path, list):
        path = path[0]
    stack = read_stack(path)
    return [stack_to_layer_data(stack)]


def stack_to_layer_data(stack: Stack) -> LayerData:
    """Layer data for a :class:`~napari_cellnet.core.io.Stack`: labels for integer label files, else image."""
    name = stack.path.stem if stack.path is not None else "stack"
    axes = stack.axes
    data = stack.data
    meta: dict[str, Any] = {"axes": axes, "path": str(stack.path), **stack.metadata}
    if stack.pixel_size is not None:
        meta["pixel_size"] = stack.pixel_size
        meta["unit"] = stack.unit
    kwargs: dict[str, Any] = {"name": name, "metadata": meta}
    scale = list(stack.scale)
    is_labels = np.issubdtype(np.dtype(data.dtype), np.integer) and any(w in name.lower() for w in _LABEL_WORDS)
    if "C" in axes and not is_labels:
        c = axes.index("C")
        n = data.shape[c]
        if c == len(axes) - 1 and n in (3, 4) and np.dtype(data.dtype) == np.uint8:
            kwargs["rgb"] = True
            scale.pop(c)
            axes_l = axes[:-1]
        else:
            kwargs["channel_axis"] = c
            scale.pop(c)
            axes_l = axes.replace("C", "")
    else:
        axes_l = axes
    kwargs["scale"] = tuple(scale)
    kwargs["axis_labels"] = tuple(a.lower() for a in axes_l)
    if "channel_axis" in kwargs:
        kwargs.pop("axis_labels")  # napari applies it per channel layer, which then has one axis less
    return (data, kwargs, "labels" if is_labels else "image")


__all__ = ["get_reader", "read_layers", "stack_to_layer_data", "FRAME_SUFFIXES"]
