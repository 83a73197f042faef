"""What a segmentation checkpoint says about its model, as one typed object.

A checkpoint's ``meta`` (:mod:`napari_cellnet.models.checkpoint`) is a plain dictionary so
that ``torch.load(..., weights_only=True)`` reads it and older versions of the package can
too. :class:`SegmentationMeta` is that dictionary with its defaults written once: inference
reads the window, edge policy, normalisation, input scale and post-processing from it,
training writes it, and checkpoints saved by earlier versions (no ``scale``, the
normalisation method spelled ``kind``, no ``classes``) load with the defaults those
versions used. :meth:`SegmentationMeta.to_dict` writes the keys every version reads.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_cellnet.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from napari_cellnet.segmentation.params import MODEL_NAME
from napari_cellnet.segmentation.preprocessing import Normalisation


@dataclass
class SegmentationMeta:
    """The ``meta`` of a segmentation checkpoint.

    Attributes
    ----------
    window : int
        Odd number of frames the network sees.
    in_channels : int
        Channels per frame.
    edge : {"reflect", "replicate", "skip"}
        Edge policy training used.
    normalization : Normalisation
        How intensities were mapped.
    background_subtraction, drift : bool
        Temporal-median subtraction; registration of neighbours onto the centre frame.
    scale : float
        Input scale factor (1 for models saved before it existed).
    class_names : list of str
    classes : int or None
        Output classes (None in checkpoints that did not record it).
    threshold, min_size : float, int
        Post-processing (calibrated after training when asked).
    preset : str or None
        The U-Net preset trained.
    training, calibration, resume : dict or None
        Training summary, calibration result, and the resumable state (``last.pt`` only).
    extra : dict
        Keys this version does not know, kept so that re-saving loses nothing.
    """

    window: int = 1
    in_channels: int = 1
    edge: str = "reflect"
    normalization: Normalisation = field(default_factory=Normalisation)
    background_subtraction: bool = False
    drift: bool = False
    scale: float = 1.0
    class_names: list[str] = field(default_factory=list)
    classes: int | None = None
    threshold: float = 0.5
    min_size: int = 30
    preset: str | None = None
    training: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, meta: dict[str, Any], config: dict[str, Any] | None = None) -> SegmentationMeta:
        """Read a checkpoint's ``meta``; window and channels fall back to the network ``config``.

        Raises
        ------
        ValueError
            For a normalisation method this version does not know.
        """
        d, config = dict(meta or {}), dict(config or {})
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: d[k] for k in names if k in d and d[k] is not None}
        known.setdefault("window", config.get("window", 1))
        known.setdefault("in_channels", config.get("in_channels", 1))
        known["normalization"] = Normalisation.from_meta(d.get("normalization"))
        for name, kind in (("window", int), ("in_channels", int), ("threshold", float), ("min_size", int),
                           ("scale", float), ("background_subtraction", bool), ("drift", bool)):
            if name in known:
                known[name] = kind(known[name])
        if "classes" in known:
            known["classes"] = int(known["classes"])
        known["class_names"] = list(known.get("class_names", []))
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> SegmentationMeta:
        """The typed ``meta`` of a loaded checkpoint."""
        return cls.from_dict(ckpt.meta, ckpt.config)

    def to_dict(self) -> dict[str, Any]:
        """The plain dictionary a checkpoint stores (the same keys older versions read)."""
        out: dict[str, Any] = {
            "window": int(self.window), "in_channels": int(self.in_channels), "edge": self.edge,
            "normalization": self.normalization.to_meta(),
            "background_subtraction": bool(self.background_subtraction), "drift": bool(self.drift),
            "scale": float(self.scale), "class_names": list(self.class_names),
        }
        if self.classes is not None:
            out["classes"] = int(self.classes)
        out.update(threshold=float(self.threshold), min_size=int(self.min_size))
        for name in ("preset", "training", "calibration", "resume"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return {**self.extra, **out}

    def replace(self, **changes: Any) -> SegmentationMeta:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def load_segmentation_model(checkpoint_or_path: Any) -> Checkpoint:
    """A segmentation :class:`Checkpoint` from a path (or a loaded one, checked).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, not a checkpoint, or a classification model.
    """
    if isinstance(checkpoint_or_path, Checkpoint):
        ckpt = checkpoint_or_path
    else:
        ckpt = load_checkpoint(checkpoint_or_path, task="segmentation")
    if ckpt.task != "segmentation":
        raise ValueError(f"{ckpt.path or 'The checkpoint'} is a {ckpt.task} model; choose a segmentation model.")
    return ckpt


def save_segmentation_model(path: str | os.PathLike[str], net: Any, config: dict[str, Any],
                            meta: SegmentationMeta) -> Path:
    """Write a segmentation checkpoint atomically; a full disk says what to do.

    Raises
    ------
    OSError
        Naming the file and the fix (the previous file, if any, is unchanged).
    """
    path = Path(path)
    try:
        return save_checkpoint(path, net, MODEL_NAME, config, "segmentation", meta.to_dict())
    except OSError as err:
        why = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise OSError(
            err.errno, f"Could not write {path.name} to {path.parent} ({why}). The previous {path.name}, if any, "
            "is unchanged. Free disk space or choose another output folder, then resume from last.pt."
        ) from err
