"""Checkpoints that rebuild themselves: one ``.pt`` file, loadable with ``weights_only=True``.

A checkpoint is a plain dictionary of tensors, strings, numbers, lists and dicts, so
``torch.load(..., weights_only=True)`` can read it and a file carrying pickled code is
refused. Layout::

    {"format": "napari-cellnet-checkpoint", "format_version": 1,
     "model": <registry name>, "config": {...}, "state_dict": {...},
     "task": "segmentation" | "classification",
     "meta": {... temporal window, edge policy, normalisation, class names, input size,
               drift compensation, training summary ...},
     "package_version": "0.1.0"}

Writing goes to a temporary file in the same folder and is renamed into place, so a full
disk or a crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_cellnet.core.io import atomic_path

FORMAT = "napari-cellnet-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network's recipe, its weights and what it expects."""

    model: str
    config: dict[str, Any]
    state_dict: dict[str, Any]
    task: str
    meta: dict[str, Any] = field(default_factory=dict)
    package_version: str = ""
    path: Path | None = None

    def build(self, device: Any = None) -> Any:
        """Rebuild the network with its weights, in eval mode, on ``device``."""
        from napari_cellnet.models import build_model

        net = build_model(self.model, **self.config)
        net.load_state_dict(self.state_dict)  # copies into the network's dtype (float16 files too)
        net.eval()
        if device is not None:
            net.to(device)
        return net


def save_checkpoint(
    path: str | os.PathLike[str],
    net: Any,
    model: str,
    config: dict[str, Any],
    task: str,
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``net``'s weights and recipe to ``path`` atomically and return the path.

    ``half=True`` stores floating-point weights as float16 (half the file; loading casts
    them back to the network's float32, see :meth:`Checkpoint.build`) and records
    ``meta["weights_dtype"] = "float16"``: for shipping a model, where the file size
    matters more than the last bits of the weights.
    """
    import torch

    from napari_cellnet import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "config": dict(config),
        "state_dict": {k: _stored(v, half) for k, v in net.state_dict().items()},
        "task": task,
        "meta": {**(meta or {}), **({"weights_dtype": "float16"} if half else {})},
        "package_version": __version__,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _stored(tensor: Any, half: bool) -> Any:
    tensor = tensor.detach().cpu()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def load_checkpoint(path: str | os.PathLike[str], task: str | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file.
    task : str, optional
        ``"segmentation"`` or ``"classification"``; a checkpoint of the other task is refused.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a napari-cellnet checkpoint, carries code (refused by
        ``weights_only=True``), or is for another task.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}. Choose an existing .pt checkpoint.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError,
            IndexError, KeyError, TypeError) as err:  # garbage bytes reach torch's unpickler in many ways
        raise ValueError(
            f"{path} is not a loadable napari-cellnet checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'unreadable'}). Files that carry code are "
            "refused for safety; choose a .pt file saved by napari-cellnet."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a torch file but not a napari-cellnet checkpoint (no '{FORMAT}' header). "
            "Choose a .pt file saved by napari-cellnet training."
        )
    ckpt = Checkpoint(
        model=payload["model"],
        config=dict(payload["config"]),
        state_dict=payload["state_dict"],
        task=payload["task"],
        meta=dict(payload.get("meta", {})),
        package_version=str(payload.get("package_version", "")),
        path=path,
    )
    if task is not None and ckpt.task != task:
        raise ValueError(
            f"{path} is a {ckpt.task} model, but a {task} model is needed here. "
            f"Choose a {task} checkpoint."
        )
    return ckpt
