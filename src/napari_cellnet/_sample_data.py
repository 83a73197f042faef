"""napari sample data: the C2C12 movie with its labels and the HuSHeM gallery with classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_cellnet import datasets
from napari_cellnet.core.io import read_image


def c2c12_movie() -> list[tuple[Any, dict[str, Any], str]]:
    """C2C12 phase-contrast movie (T, Y, X) and its instance labels as two layers."""
    images, labels = datasets.c2c12()
    meta = {"source": "napari-cellnet sample data", "attribution": datasets.C2C12_ATTRIBUTION}
    axis_labels = ("t", "y", "x")
    return [
        (images, {"name": "C2C12 phase contrast", "metadata": meta, "axis_labels": axis_labels}, "image"),
        (labels, {"name": "C2C12 labels", "metadata": meta, "axis_labels": axis_labels, "opacity": 0.5}, "labels"),
    ]


def hushem_gallery() -> list[tuple[Any, dict[str, Any], str]]:
    """The HuSHeM gallery as one RGB stack (one sperm head per frame) plus its class names.

    The six images smaller than 131x131 are padded with their edge values to that size.
    The class of each frame is shown as text on a Points layer (one point per frame) whose
    ``features`` hold ``frame`` and ``class``.
    """
    ds = datasets.hushem()
    imgs = [read_image(p)[..., :3] for p in ds.paths]
    h = max(i.shape[0] for i in imgs)
    w = max(i.shape[1] for i in imgs)
    stack = np.stack([_pad_to(i, h, w) for i in imgs])
    classes = [ds.class_names[k] for k in ds.labels]
    n = len(imgs)
    points = np.column_stack([np.arange(n), np.full(n, 8.0), np.full(n, w / 2)])
    meta = {
        "source": "napari-cellnet sample data",
        "attribution": datasets.HUSHEM_ATTRIBUTION,
        "class_names": list(ds.class_names),
        "files": [p.relative_to(ds.root).as_posix() for p in ds.paths],
    }
    features = {"frame": np.arange(n), "class": classes}
    return [
        (stack, {"name": "HuSHeM sperm heads", "rgb": True, "metadata": meta}, "image"),
        (
            points,
            {
                "name": "HuSHeM classes",
                "features": features,
                "text": {"string": "{class}", "color": "yellow", "size": 12},
                "size": 0.1,
                "face_color": "transparent",
                "border_color": "transparent",
                "metadata": meta,
            },
            "points",
        ),
    ]


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    dy, dx = h - img.shape[0], w - img.shape[1]
    pad = [(dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2)] + [(0, 0)] * (img.ndim - 2)
    return np.pad(img, pad, mode="edge")
