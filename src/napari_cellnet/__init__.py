"""napari-cellnet: temporal U-Net segmentation and CNN morphology classification for napari.

Importing the package is cheap: it pulls in neither torch nor Qt. Two pipelines
(:mod:`napari_cellnet.segmentation`, :mod:`napari_cellnet.classification`) sit on a shared
:mod:`napari_cellnet.core` and :mod:`napari_cellnet.models`; the front ends are
:mod:`napari_cellnet.cli` and :mod:`napari_cellnet.widgets` (docs/architecture.md). The
engines import torch when they are used.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-cellnet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
