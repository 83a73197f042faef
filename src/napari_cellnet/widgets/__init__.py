"""napari dock widgets: the only package of napari-cellnet that imports Qt, magicgui or superqt.

Each widget lives in its own module and calls only the core engines (``inference``,
``training``, ``classify_inference``, ``classify_training``, ``metrics``); importing
this package does not import torch (engines are imported when a job starts).
Widgets are imported lazily so that loading the npe2 manifest stays cheap.
"""

from __future__ import annotations

from typing import Any

_WIDGETS = {
    "SegmentWidget": "._segment",
    "TrainSegmentationWidget": "._train_seg",
    "ClassifyWidget": "._classify",
    "TrainClassifierWidget": "._train_cls",
    "EvaluateWidget": "._evaluate",
}

__all__ = list(_WIDGETS)


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        import importlib

        return getattr(importlib.import_module(_WIDGETS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
