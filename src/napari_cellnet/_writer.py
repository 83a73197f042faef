"""napari writer: a Labels layer to an ImageJ TIFF, with its per-object features as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.core.io import write_labels, write_table


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer to ``path`` (``.tif``) and, when it has features, ``<stem>_features.csv``.

    The axes are taken from the layer's ``metadata["axes"]`` when napari-cellnet made it,
    else ``TYX``/``YX`` by dimension; Y/X scale becomes the TIFF resolution.
    """
    out = Path(path)
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_suffix(".tif")
    arr = np.asarray(data)
    axes = (meta.get("metadata") or {}).get("axes")
    if not axes or len(axes) != arr.ndim or "C" in axes:
        axes = {2: "YX", 3: "TYX", 4: "TZYX"}.get(arr.ndim, "")
    scale = meta.get("scale")
    pixel_size = None
    if scale is not None and len(scale) >= 2 and (scale[-1] != 1 or scale[-2] != 1):
        pixel_size = (float(scale[-2]), float(scale[-1]))
    written = [str(write_labels(out, arr, axes=axes, pixel_size=pixel_size))]
    features = meta.get("features")
    if features is not None and len(features) > 0:
        table = {str(c): list(features[c]) for c in features.columns}
        written.append(str(write_table(out.with_name(out.stem + "_features.csv"), table)))
    return written
