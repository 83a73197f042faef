"""napari-cellnet: temporal U-Net segmentation and CNN morphology classification for napari.

Importing the package is cheap: it pulls in neither torch nor Qt. The engines live in
their own modules (``inference``, ``training``, ``classify_training`` ...) and import
torch when they are used.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-cellnet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
