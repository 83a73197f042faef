"""napari dock widgets: the only package of napari-cellnet that imports Qt, magicgui or superqt.

Each widget lives in its own module, builds its job's controls from the job's parameter
object (:mod:`._params`) and calls only the engines of :mod:`napari_cellnet.segmentation`
and :mod:`napari_cellnet.classification`; importing this package does not import torch
(engines are imported when a job starts).
Widgets are imported lazily so that loading the npe2 manifest stays cheap.

Besides the widgets, what scripts need to drive them (``scripts/make_screenshots.py``,
``benchmarks/bench_gui.py``), also imported lazily:

* ``DEMO_MODEL`` and ``MODEL_FILE``: values of a Segment or Classify widget's ``model``
  picker for "the bundled demo model" and "the checkpoint file in ``widget.checkpoint``"
  (a model trained in this session is chosen by its path);
* ``class_colormap(class_names)``: the napari label colormap the Classify widget paints
  classes with (class k as pixel value k + 1).
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

#: public name -> (module, name there)
_HELPERS = {
    "DEMO_MODEL": ("._common", "DEMO"),
    "MODEL_FILE": ("._common", "FILE"),
    "class_colormap": ("._classify", "class_colormap"),
}

__all__ = [*_WIDGETS, *_HELPERS]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _WIDGETS:
        return getattr(importlib.import_module(_WIDGETS[name], __name__), name)
    if name in _HELPERS:
        module, attr = _HELPERS[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
