"""Stacks in and out: TIFF (BigTIFF, ImageJ hyperstacks, OME-TIFF), frame folders, class folders.

One package so that every front end and pipeline reads and writes files the same way;
its names are re-exported here, so ``from napari_cellnet.core.io import read_stack``
works whichever module a name lives in:

* :mod:`.axes` -- axes strings: validate, guess, reorder to ``(T, C, Y, X)``;
* :mod:`.stacks` -- :func:`read_stack` and :class:`Stack`, one entry point for every format;
* :mod:`.tiff` and :mod:`.frames` -- the TIFF reader (eager or lazy) and frame folders;
* :mod:`.classes` -- class-folder datasets and their k-fold copies;
* :mod:`.files` -- atomic writes, JSON, label TIFFs, movies frame by frame
  (:class:`TiffFrameWriter`) and CSV tables.

Qt- and torch-free by design (enforced by import-linter).
"""

from __future__ import annotations

from napari_cellnet.core.io.axes import AXES_LETTERS, guess_axes, to_tcyx, validate_axes
from napari_cellnet.core.io.classes import (
    CLASS_IMAGE_SUFFIXES,
    ClassDataset,
    read_class_folders,
    write_kfold_folders,
    write_split_csv,
)
from napari_cellnet.core.io.files import (
    TiffFrameWriter,
    atomic_path,
    json_default,
    read_table,
    temp_path_beside,
    write_json,
    write_labels,
    write_table,
)
from napari_cellnet.core.io.frames import FRAME_SUFFIXES, list_frames
from napari_cellnet.core.io.stacks import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    Stack,
    read_image,
    read_stack,
)

#: Files larger than this (bytes) open lazily when ``read_stack`` is not told ``lazy=``.
#: A setting: the TIFF reader looks it up here each time, so changing it takes effect.
LAZY_ABOVE_BYTES = 512 * 2**20

__all__ = [
    "AXES_LETTERS",
    "CLASS_IMAGE_SUFFIXES",
    "FRAME_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LAZY_ABOVE_BYTES",
    "TIFF_SUFFIXES",
    "ClassDataset",
    "Stack",
    "TiffFrameWriter",
    "atomic_path",
    "guess_axes",
    "json_default",
    "list_frames",
    "read_class_folders",
    "read_image",
    "read_stack",
    "read_table",
    "temp_path_beside",
    "to_tcyx",
    "validate_axes",
    "write_json",
    "write_kfold_folders",
    "write_labels",
    "write_split_csv",
    "write_table",
]
