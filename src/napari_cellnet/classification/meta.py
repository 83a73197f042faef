"""What a classifier checkpoint says about its model, typed, with its defaults in one place.

A classification checkpoint (:mod:`napari_cellnet.models.checkpoint`, task
``"classification"``) carries a plain ``meta`` dictionary so that it loads with
``torch.load(..., weights_only=True)``. Training writes it and prediction reads it;
:class:`ClassifierMeta` is the one place that knows its keys, which are required, and what
a missing optional key means (older checkpoints lack the keys added later), so the writer
and the readers cannot drift apart.

The keys written are the ones napari-cellnet always wrote (``meta_version`` 1), so older
releases read new checkpoints and the shipped demo model reads unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from napari_cellnet.classification.data import Preprocessing, SampleSet
from napari_cellnet.classification.params import META_VERSION

if TYPE_CHECKING:
    from napari_cellnet.classification.params import ClassifierTrainConfig

#: Crops of a model trained on a gallery (no crop settings stored) hide neighbouring cells.
DEFAULT_MASK_NEIGHBOURS = True
#: Crops keep the background unless the model was trained on crops that hid it.
DEFAULT_MASK_BACKGROUND = False
#: Crop windows that leave the image are filled with a constant.
DEFAULT_PAD_MODE = "constant"

_REQUIRED = ("class_names", "preprocessing")
# Keys written only when set: how object crops were cut, and what the training found.
_OPTIONAL = ("source", "crop_size", "mask_neighbours", "mask_background", "pad_mode", "cv_summary",
             "cv_folds", "selected_by", "fold", "fold_report", "weights_dtype")


@dataclass
class ClassifierMeta:
    """The ``meta`` of a classification checkpoint.

    Attributes
    ----------
    class_names : list of str
        Class of each output of the network, in order.
    preprocessing : Preprocessing
        How images became network input (resolved: ``channels`` is ``"rgb"`` or ``"gray"``).
    augment : dict, optional
        The training augmentation (:class:`~napari_cellnet.core.augment.AugmentParams` as a dict).
    train_config : dict, optional
        The whole training recipe (``ClassifierTrainConfig.to_dict()``).
    meta_version : int
    package_version : str
        napari-cellnet version that trained the model.
    source : str, optional
        ``"objects"`` for models trained on the objects of a Labels layer.
    crop_size, mask_neighbours, mask_background, pad_mode : optional
        How those object crops were cut (:func:`~napari_cellnet.classification.crops.object_crops`);
        :meth:`crop_options` fills in the defaults.
    cv_summary : dict, optional
        Mean and sd over folds of the cross-validation metrics, and timings.
    cv_folds : int, optional
    selected_by : str, optional
        ``"refit on all samples"`` or ``"best fold"``.
    fold : int, optional
        For a fold's checkpoint: its number, and ``fold_report`` its test-part metrics.
    fold_report : dict, optional
    weights_dtype : str, optional
        ``"float16"`` when the weights were stored at half precision.
    other : dict
        Keys this version does not know (kept, and written back as they were).
    """

    class_names: list[str]
    preprocessing: Preprocessing
    augment: dict[str, Any] | None = None
    train_config: dict[str, Any] | None = None
    meta_version: int = META_VERSION
    package_version: str = ""
    source: str | None = None
    crop_size: int | None = None
    mask_neighbours: bool | None = None
    mask_background: bool | None = None
    pad_mode: str | None = None
    cv_summary: dict[str, Any] | None = None
    cv_folds: int | None = None
    selected_by: str | None = None
    fold: int | None = None
    fold_report: dict[str, Any] | None = None
    weights_dtype: str | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, meta: dict[str, Any], source: str | os.PathLike[str] = "the checkpoint") -> ClassifierMeta:
        """Read a checkpoint's ``meta``.

        Raises
        ------
        ValueError
            When ``class_names`` or ``preprocessing`` is missing: the file was not written by
            napari-cellnet's classifier training.
        """
        for key in _REQUIRED:
            if key not in meta:
                raise ValueError(f"{source} lacks {key!r} in its metadata; it was not saved by napari-cellnet's "
                                 "classifier training. Choose a model trained with napari-cellnet.")
        known = {f.name for f in fields(cls)} - {"other"}
        values = {k: v for k, v in meta.items() if k in known}
        values["class_names"] = list(meta["class_names"])
        values["preprocessing"] = Preprocessing.from_dict(meta["preprocessing"])
        derived = {"input_size", "in_channels"}  # written from the preprocessing
        return cls(**values, other={k: v for k, v in meta.items() if k not in known | derived})

    @classmethod
    def for_training(cls, cfg: ClassifierTrainConfig, samples: SampleSet, **outcome: Any) -> ClassifierMeta:
        """The meta of a model trained with ``cfg`` on ``samples``.

        Parameters
        ----------
        cfg : ClassifierTrainConfig
        samples : SampleSet
            The training samples (their resolved preprocessing and how crops were cut).
        **outcome
            ``cv_summary``, ``cv_folds``, ``selected_by`` or ``fold``, ``fold_report``.
        """
        from napari_cellnet import __version__

        return cls.from_dict({
            "class_names": list(samples.class_names),
            "preprocessing": samples.preprocessing.to_dict(),
            "augment": cfg.augment.to_dict() if cfg.augment is not None else None,
            "train_config": json.loads(json.dumps(cfg.to_dict(), default=str)),
            "package_version": __version__,
            **samples.meta,
            **outcome,
        })

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``meta``: the keys napari-cellnet always wrote, optional ones when set."""
        prep = self.preprocessing
        out: dict[str, Any] = {
            "meta_version": self.meta_version,
            "class_names": list(self.class_names),
            "input_size": prep.size,
            "in_channels": prep.n_channels,
            "preprocessing": prep.to_dict(),
            "augment": self.augment,
            "train_config": self.train_config,
            "package_version": self.package_version,
        }
        out.update({k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None})
        out.update(self.other)
        return out

    def crop_options(self, crop_size: int | None = None, mask_neighbours: bool | None = None) -> dict[str, Any]:
        """How to cut object crops for this model: as its training crops were cut.

        A model trained on a gallery stored no crop settings: it gets crops of its input
        size (``crop_size`` overrides: choose a window about as large, relative to the
        cell, as the gallery images were) with neighbours hidden.

        Returns
        -------
        dict
            ``crop_size``, ``mask_neighbours``, ``mask_background``, ``pad_mode``: keyword
            arguments of :func:`~napari_cellnet.classification.data.load_objects`.
        """
        stored_mask = DEFAULT_MASK_NEIGHBOURS if self.mask_neighbours is None else self.mask_neighbours
        return {
            "crop_size": int(crop_size or self.crop_size or self.preprocessing.size),
            "mask_neighbours": bool(stored_mask if mask_neighbours is None else mask_neighbours),
            "mask_background": bool(DEFAULT_MASK_BACKGROUND if self.mask_background is None
                                    else self.mask_background),
            "pad_mode": str(self.pad_mode or DEFAULT_PAD_MODE),
        }
