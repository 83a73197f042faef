"""Model registry: every network is built by name from a plain config dictionary.

A checkpoint stores the name and the config, so it can rebuild its network without any
code of its own (see :mod:`napari_cellnet.models.checkpoint`). Model modules register
themselves with :func:`register`; they are imported lazily by :func:`build_model`, so
importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# name -> (module that defines it, kind). Kind is "segmentation" or "classification".
_KNOWN: dict[str, tuple[str, str]] = {}
_BUILDERS: dict[str, Callable[..., Any]] = {}
_MODULES = ("napari_cellnet.models.unet", "napari_cellnet.models.classifier")


def register(name: str, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that makes ``build_model(name, **config)`` call the decorated builder."""

    def deco(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"Model name {name!r} is registered twice")
        _BUILDERS[name] = builder
        _KNOWN[name] = (builder.__module__, kind)
        return builder

    return deco


def _load_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a model module that is not written yet
            if err.name != module:
                raise


def available_models(kind: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one kind."""
    _load_all()
    return sorted(n for n, (_, k) in _KNOWN.items() if kind is None or k == kind)


def model_kind(name: str) -> str:
    """``"segmentation"`` or ``"classification"``."""
    _load_all()
    if name not in _KNOWN:
        raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(available_models())}")
    return _KNOWN[name][1]


def build_model(name: str, **config: Any) -> Any:
    """Build a registered network (a ``torch.nn.Module``) from its config.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or a bad config value.
    """
    _load_all()
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(available_models())}")
    return _BUILDERS[name](**config)
