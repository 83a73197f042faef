"""``napari-cellnet`` command line: one module per command group, flags made from the
jobs' parameter objects (see :mod:`napari_cellnet.cli.app`)."""

from __future__ import annotations

from napari_cellnet.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
