"""What the Segment widget runs in worker threads: reading a model, re-labelling a kept probability map.

Nothing here touches a widget: :mod:`napari_cellnet.widgets._segment` hands these functions to
``napari.qt.threading.create_worker`` (and guesses a layer's axes with :func:`_guess_axes_for`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core import io
from napari_cellnet.widgets import _common as common

FROM_MODEL = "from model"


def _guess_axes_for(layer: Any) -> str:
    shape = tuple(int(n) for n in layer.data.shape)
    if getattr(layer, "rgb", False):
        return "TYXC" if len(shape) == 4 else "YXC"
    try:
        return io.guess_axes(shape)
    except ValueError:
        return ""


def _load_for_segment(path: Path, background: str) -> Any:
    """Load a checkpoint and apply the widget's overrides of its stored policy (worker thread)."""
    from napari_cellnet.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, task="segmentation")
    if background != FROM_MODEL:
        ckpt.meta = {**ckpt.meta, "background_subtraction": background == "on"}
    return ckpt


def _describe_model(path: Path) -> dict[str, Any]:
    """The parts of a checkpoint's ``meta`` a biologist needs to pick it (worker thread)."""
    from napari_cellnet.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, task="segmentation")
    m = ckpt.meta
    training = m.get("training", {}) if isinstance(m.get("training"), dict) else {}
    return {
        "path": str(path),
        "window": int(m.get("window", ckpt.config.get("window", 1))),
        "in_channels": int(m.get("in_channels", ckpt.config.get("in_channels", 1))),
        "edge": str(m.get("edge", "reflect")),
        "classes": int(m.get("classes", ckpt.config.get("classes", 2))),
        "background_subtraction": bool(m.get("background_subtraction", False)),
        "threshold": float(m.get("threshold", 0.5)),
        "min_size": int(m.get("min_size", 30)),
        "scale": float(m.get("scale", 1.0)),
        "preset": str(m.get("preset", ckpt.config.get("preset", "?"))),
        "val": dict(training.get("val_metrics", {}) or {}),
        "package_version": ckpt.package_version,
    }


def _probe(path: Path | None) -> tuple[dict[str, str], dict[str, Any] | None, str | None]:
    devices = common.probe_devices()
    if path is None:
        return devices, None, None
    try:
        return devices, _describe_model(path), None
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        return devices, None, str(err)


def relabel(probabilities: np.ndarray, frames: list[int], threshold: float, min_size: int) -> dict[str, Any]:
    """Labels, tracks and features from a kept foreground probability map (worker thread).

    The probability map is the foreground probability only, so touching cells are split
    by the distance-transform watershed here (the network's boundary class is not kept).
    """
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels
    from napari_cellnet.segmentation.tracking import (
        label_features,
        match_labels_through_time,
        tracks_from_features,
    )

    labels = np.zeros(probabilities.shape, np.int32)
    for t in frames:
        labels[t] = probabilities_to_labels(probabilities[t], threshold=threshold, min_size=min_size)
    labels = match_labels_through_time(labels)
    features = label_features(labels)
    return {"labels": labels, "features": features, "tracks": tracks_from_features(features)}


def _ranges(frames: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    if not frames:
        return "none"
    frames = sorted(frames)
    out, start, prev = [], frames[0], frames[0]
    for f in frames[1:] + [None]:  # type: ignore[list-item]
        if f is not None and f == prev + 1:
            prev = f
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ", ".join(out)
