"""Put results into the viewer as layers that line up with their input and say where they came from.

A result layer copies the input layer's ``scale``, ``translate`` and ``axis_labels`` (for
the spatial-temporal axes it shares with it), so labels sit on the cells whatever the
pixel size; it records provenance (model, parameters, device, package version) in
``layer.metadata``; and re-running a widget *updates* its output layer instead of piling
up "Labels [1]", "Labels [2]" ... An output layer is recognised by the
``metadata["napari_cellnet"]["output_of"]`` tag, so a layer the user renamed or made
by hand is never overwritten.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_cellnet import __version__

TAG = "napari_cellnet"


def geometry_of(layer: Any, ndim: int) -> dict[str, Any]:
    """The trailing ``ndim`` axes' ``scale``, ``translate`` and ``axis_labels`` of ``layer``.

    An RGB image's colour axis is not a layer dimension, and a (T, C, Y, X) image gives
    its labels (T, Y, X): the channel axis is dropped by taking the leading time axis and
    the two trailing spatial axes.
    """
    if layer is None:
        return {}
    scale = list(layer.scale)
    translate = list(layer.translate)
    names = list(layer.axis_labels)
    n = len(scale)
    if n > ndim >= 3:  # (T, C, Y, X) image -> (T, Y, X) result
        keep = [0, *range(n - ndim + 1, n)]
    else:
        keep = list(range(n))[-ndim:]
    out: dict[str, Any] = {
        "scale": [float(scale[i]) for i in keep],
        "translate": [float(translate[i]) for i in keep],
    }
    if len(keep) == ndim:
        out["axis_labels"] = [str(names[i]) for i in keep]
    else:  # fewer layer axes than data axes: pad at the front
        extra = ndim - len(keep)
        out["scale"] = [1.0] * extra + out["scale"]
        out["translate"] = [0.0] * extra + out["translate"]
    return out


def provenance(output_of: str, source: Any, **info: Any) -> dict[str, Any]:
    """The metadata block of an output layer: which widget made it from which layer, and how."""
    return {
        TAG: {
            "output_of": output_of,
            "source_layer": getattr(source, "name", None),
            "package_version": __version__,
            **info,
        }
    }


def find_output(viewer: Any, output_of: str, source_name: str | None) -> Any:
    """The existing output layer of ``output_of`` for ``source_name`` (None if there is none)."""
    for layer in viewer.layers:
        tag = layer.metadata.get(TAG, {}) if isinstance(layer.metadata, dict) else {}
        if tag.get("output_of") == output_of and tag.get("source_layer") == source_name:
            return layer
    return None


def add_or_update(
    viewer: Any,
    kind: str,
    data: Any,
    output_of: str,
    name: str,
    source: Any = None,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Add a layer, or replace the data of the one a previous run of the same widget made.

    Parameters
    ----------
    viewer : napari.Viewer
    kind : {"labels", "image", "tracks"}
        napari layer type.
    data : array_like
        Layer data: ``(T, Y, X)`` for labels and images, ``(N, 4)`` for tracks.
    output_of : str
        Which output this is ("segment/labels", "segment/probabilities" ...); with the
        source layer's name it identifies the layer to update.
    name : str
        Name of a new layer.
    source : napari layer, optional
        The input layer: geometry is copied from it.
    metadata : dict, optional
        Extra provenance (parameters, model, device), merged under ``metadata["napari_cellnet"]``.
    **kwargs
        Passed to ``viewer.add_<kind>`` for a new layer (opacity, colormap, features ...);
        ``features`` and ``properties`` are also applied on update.

    Returns
    -------
    napari layer
    """
    source_name = getattr(source, "name", None)
    meta = provenance(output_of, source, **(metadata or {}))
    layer = find_output(viewer, output_of, source_name)
    if kind == "tracks":
        ndim = np.asarray(data).shape[1] - 1 if np.asarray(data).ndim == 2 else 3
    elif kind in ("points", "vectors"):
        ndim = np.asarray(data).shape[-1]
    else:
        ndim = np.asarray(data).ndim if not hasattr(data, "ndim") else int(data.ndim)
    geo = geometry_of(source, ndim)
    if layer is not None and type(layer).__name__.lower() == kind:
        layer.data = data
        if "features" in kwargs:
            layer.features = kwargs["features"]
        for key, value in geo.items():
            if key == "axis_labels":
                continue
            setattr(layer, key, value)
        layer.metadata = {**{k: v for k, v in layer.metadata.items() if k != TAG}, **meta}
        layer.refresh()
        return layer
    adder = getattr(viewer, f"add_{kind}")
    params = {**geo, **kwargs}
    if kind == "tracks":
        params.pop("axis_labels", None)
    return adder(data, name=name, metadata=meta, **params)
