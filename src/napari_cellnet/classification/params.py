"""The parameter objects of the classification jobs, training a classifier and classifying
(scoring a classifier on a labelled gallery is classifying it): every choice of a run with
its default, range or choices, help and basic/advanced flag (:mod:`napari_cellnet.core.params`),
from which the widgets, the CLI flags and ``params.json`` are made.

No torch here (the widgets and ``napari-cellnet --help`` import this module): the names
of the registered classifiers and activations are spelled out and a test checks them
against the model registry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from napari_cellnet.classification.data import Preprocessing
from napari_cellnet.core.augment import FILL_MODES, AugmentParams
from napari_cellnet.core.device import DEVICE_HELP
from napari_cellnet.core.optim import OPTIMIZERS, SCHEDULERS
from napari_cellnet.core.params import Params, param

LOSSES = ("ce", "weighted_ce", "focal")
#: The shipped demo's mixed ensemble (``parse_members`` form): 0.903 HuSHeM 5-fold accuracy.
DEMO_MEMBERS = "small_cnn*3,mobilenet_v2,resnet18:width=32"
BALANCE = ("none", "weights", "sampler")
META_VERSION = 1
#: The registered classification networks (``models.available_models("classification")``
#: without ``"ensemble"``); spelled out so that this module does not import torch.
CLASSIFIERS = ("small_cnn", "resnet18", "mobilenet_v2")
#: :data:`napari_cellnet.models.classifier.ACTIVATIONS`
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus", "tanh")
#: :meth:`napari_cellnet.core.augment.AugmentParams.preset` names
AUG_PRESETS = ("aligned", "strong", "light", "none", "temporal")


def parse_members(text: str) -> list[dict[str, Any]]:
    """``"small_cnn*3,resnet18:width=32"`` -> member specs (:func:`napari_cellnet.models.classifier.parse_members`)."""
    from napari_cellnet.models.classifier import parse_members as parse

    return parse(text)


def format_members(specs: list[dict[str, Any]]) -> str:
    """Inverse of :func:`parse_members`: runs of equal specs as ``name:key=value*N``."""
    parts: list[str] = []
    last, count = None, 0
    for spec in [*specs, None]:
        if spec == last and spec is not None:
            count += 1
            continue
        if last is not None:
            opts = "".join(f":{k}={json.dumps(v) if not isinstance(v, str) else v}"
                           for k, v in last.items() if k != "arch")
            parts.append(f"{last['arch']}{opts}" + (f"*{count}" if count > 1 else ""))
        last, count = spec, 1
    return ",".join(parts)


@dataclass
class ClassifierTrainConfig(Params):
    """Every choice of a classifier training run
    (:func:`napari_cellnet.classification.training.train_classifier`).

    The preprocessing and augmentation are flat fields (one flag, one control each); the
    training engine reads them as :attr:`preprocessing` (a
    :class:`~napari_cellnet.classification.data.Preprocessing`) and :attr:`augment` (an
    :class:`~napari_cellnet.core.augment.AugmentParams`, or None: "the preset that suits the
    samples", ``"aligned"`` for aligned cells, ``"strong"`` otherwise). The default recipe
    aligns every cell upright and blanks its surroundings, which raised HuSHeM 5-fold
    accuracy from 0.77 to 0.89 (docs/classification.md).

    ``**ClassifierTrainConfig.flat_preprocessing(prep)`` sets the flat fields from a
    Preprocessing (or its dict); ``augment=`` (an AugmentParams or its dict) gives a custom
    augmentation from Python, used when neither ``aug`` nor ``fill_mode`` is set (those two
    define the augmentation when given). :meth:`to_dict` writes the nested
    ``"preprocessing"`` and ``"augment"`` dictionaries checkpoints have always stored, and
    :meth:`from_dict` reads them back (configs of older checkpoints included).

    Members: a mixed ensemble, one ``{"arch": name, **builder options}`` per network
    (command line ``small_cnn*3,mobilenet_v2,resnet18:width=32``), replaces ``arch``,
    ``model_config`` and ``ensemble``; the k-th network of an architecture starts from seed
    ``seed + 7919 k``, and the model averages the networks' class probabilities.
    """

    JOB: ClassVar[str] = "train-cls"

    # ---------------------------------------------------------------- network
    arch: str = param("small_cnn", choices=CLASSIFIERS, label="network", group="network",
                      help="classification network: small_cnn (fast), resnet18 or mobilenet_v2")
    model_config: dict[str, Any] = param(default_factory=dict, advanced=True, group="network",
                                         help='extra builder options as JSON, e.g. {"width": 32}')
    activation: str = param("relu", choices=ACTIVATIONS, advanced=True, group="network",
                            help="activation function of the network")
    dropout: float = param(0.3, low=0, high=1, high_open=True, step=0.05, advanced=True, group="network",
                           help="dropout before the classifier layer")
    pretrained: str | None = param(None, advanced=True, group="network", none_means="random initialisation",
                                   help="weights file to start from (a napari-cellnet checkpoint or a state_dict; "
                                        "never downloaded)")
    ensemble: int = param(1, low=1, advanced=True, group="network",
                          help="networks of the chosen kind per model, each from its own seed; the model averages "
                               "their probabilities (costs as many times the training time)")
    members: list[dict[str, Any]] | None = param(None, parse=parse_members, format=format_members, advanced=True,
                                                 group="network", none_means="one network of the chosen kind",
                                                                        help="a mixed ensemble instead of network/ensemble, e.g. " +
                                                      DEMO_MEMBERS + " (the shipped demo's five networks: the most "
                                                      "accurate, five times the training time)")
    # ---------------------------------------------------------------- input
    size: int = param(64, low=8, high=1024, step=8, label="input size (px)", group="input",
                      help="side of the square network input in pixels (images are resized with aspect kept)")
    align: str = param("major_axis", choices=("major_axis", "none"), label="align cells", group="input",
                       help="major_axis: put every cell upright first (centred, long axis vertical) and blank its "
                            "surroundings; none: use the images as they are")
    crop_fraction: float = param(1.0, low=0.1, high=1.0, step=0.05, flag="--crop", label="central fraction kept",
                                 group="input", help="keep only this central part of each image (after aligning) "
                                                     "before resizing; 0.5 suits HuSHeM's 131 px heads")
    keep_surroundings: bool = param(False, advanced=True, group="input",
                                    help="with align major_axis: do not blank what lies beyond 3 px of the cell")
    channels: str = param("auto", choices=("auto", "rgb", "gray"), advanced=True, group="input",
                          help="auto: as the images are (mixed gray/RGB is refused); rgb or gray convert")
    normalisation: str = param("image", choices=("image", "range", "none"), advanced=True, group="input",
                               help="image: per-image percentiles norm_low..norm_high to 0..1; range: the dtype's "
                                    "range; none: as stored")
    norm_low: float = param(1.0, low=0, high=100, advanced=True, group="input",
                            help="percentile mapped to 0 by image normalisation")
    norm_high: float = param(99.8, low=0, high=100, advanced=True, group="input",
                             help="percentile mapped to 1 by image normalisation")
    pad_mode: str = param("edge", choices=("edge", "constant", "reflect", "wrap"), advanced=True, group="input",
                          help="how the short side of a non-square image is padded")
    crop_size: int = param(64, low=8, high=4096, label="object crop (px)", group="objects",
                           help="objects of a Labels layer: side of the crop cut around each object")
    mask_neighbours: bool = param(True, advanced=True, group="objects",
                                  help="objects of a Labels layer: blank neighbouring objects in each crop")
    # ---------------------------------------------------------------- optimisation
    epochs: int = param(30, low=1, high=100000, group="training", help="passes over the training images")
    batch_size: int = param(32, low=1, high=4096, group="training", help="images per optimisation step")
    lr: float = param(3e-3, low=0, low_open=True, label="learning rate", group="training",
                      help="learning rate of the optimiser")
    optimizer: str = param("adamw", choices=OPTIMIZERS, group="training", help="optimiser")
    weight_decay: float = param(1e-4, low=0, advanced=True, group="training", help="weight decay")
    momentum: float = param(0.9, low=0, high=1, advanced=True, group="training",
                            help="momentum (sgd, rmsprop)")
    scheduler: str = param("cosine", choices=SCHEDULERS, advanced=True, group="training",
                           help="learning-rate schedule over the epochs")
    warmup_epochs: int = param(2, low=0, advanced=True, group="training",
                               help="epochs of linear learning-rate warm-up")
    loss: str = param("ce", choices=LOSSES, group="training",
                      help="ce, weighted_ce (class-imbalance weights) or focal")
    label_smoothing: float = param(0.1, low=0, high=1, high_open=True, advanced=True, group="training",
                                   help="label smoothing of the targets")
    focal_gamma: float = param(2.0, low=0, advanced=True, group="training", help="gamma of the focal loss")
    mixup: float = param(0.0, low=0, advanced=True, group="training",
                         help="mixup Beta(a, a) parameter: blend each batch with a shuffled copy (0 = off; 0.2-0.4 "
                              "usual, a regulariser for small galleries)")
    balance: str = param("none", choices=BALANCE, advanced=True, group="training",
                         help="class imbalance: nothing, inverse-frequency loss weights, or balanced sampling")
    patience: int | None = param(None, low=1, advanced=True, group="training", none_means="no early stopping",
                                 help="stop when the validation loss has not improved for this many epochs "
                                      "(needs a validation split)")
    seed: int = param(0, low=0, advanced=True, group="training",
                      help="seeds the split, the initialisation and the augmentation")
    # ---------------------------------------------------------------- augmentation
    aug: str | None = param(None, choices=AUG_PRESETS, label="augmentation", group="augmentation",
                            none_means="aligned for aligned cells, strong otherwise",
                            help="augmentation preset: aligned (small rotations, mirrors), strong (any angle), "
                                 "light, none, temporal")
    aug_rate: int = param(3, low=1, high=100, label="augmentation rate (x)", group="augmentation",
                          help="randomly augmented copies of every training image per epoch")
    fill_mode: str | None = param(None, choices=FILL_MODES, advanced=True, group="augmentation",
                                  none_means="the preset's",
                                  help="how rotated and shifted images are filled at their borders")
    # ---------------------------------------------------------------- evaluation
    folds: int = param(5, low=0, high=100, label="k folds (1 = hold-out)", group="evaluation",
                       help="stratified k-fold cross-validation; 1 = one hold-out split; 0 = no evaluation")
    holdout: float = param(0.2, low=0, high=1, low_open=True, high_open=True, advanced=True, group="evaluation",
                           help="test fraction of the hold-out split (folds 1)")
    val_fraction: float = param(0.2, low=0, high=1, high_open=True, step=0.05, label="validation fraction",
                                group="evaluation",
                                help="inner validation split of each training part: its accuracy is plotted per "
                                     "epoch and the epoch with the lowest validation loss is kept (0 = none: the "
                                     "last epoch, and all the training part is trained on)")
    refit: bool = param(True, label="refit on all samples", group="evaluation",
                        help="after cross-validation, train the model to use on every sample")
    tta: int = param(1, low=1, high=8, advanced=True, group="evaluation",
                     help="test-time augmentation views when scoring the folds (1 = off, up to 8)")
    # ---------------------------------------------------------------- run
    device: str = param("auto", group="run", help=DEVICE_HELP)
    threads: int | None = param(None, low=1, advanced=True, group="run", none_means="every core",
                                help="CPU threads for torch (on a shared machine 1 is often much faster)")
    # ---------------------------------------------------------------- set by Python and the engine
    augment: AugmentParams | None = None

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentParams.from_dict(self.augment)
        if self.aug is not None or self.fill_mode is not None:
            self.augment = self.chosen_augment()
        if isinstance(self.members, str):
            self.members = parse_members(self.members)
        if self.members is not None:
            self.members = [dict(spec) for spec in self.members]
            if self.members and isinstance(self.members[0].get("arch"), str):
                self.arch = self.members[0]["arch"]
        self.validate()

    # ------------------------------------------------------------------ derived objects
    @staticmethod
    def flat_preprocessing(prep: Preprocessing | dict[str, Any]) -> dict[str, Any]:
        """The input fields a :class:`~napari_cellnet.classification.data.Preprocessing` stands for."""
        if isinstance(prep, dict):
            prep = Preprocessing.from_dict(prep)
        return {"size": prep.size, "channels": prep.channels, "normalisation": prep.normalisation,
                "norm_low": float(prep.percentiles[0]), "norm_high": float(prep.percentiles[1]),
                "pad_mode": prep.pad_mode, "crop_fraction": prep.crop_fraction, "align": prep.align,
                "keep_surroundings": prep.align != "none" and not prep.isolate}

    @property
    def preprocessing(self) -> Preprocessing:
        """The :class:`~napari_cellnet.classification.data.Preprocessing` of the input fields
        (made whenever it is read, so ``replace(cfg, size=32)`` can never leave a stale one)."""
        return Preprocessing(size=self.size, channels=self.channels, normalisation=self.normalisation,
                             percentiles=(self.norm_low, self.norm_high), pad_mode=self.pad_mode,
                             crop_fraction=self.crop_fraction, align=self.align,
                             isolate=self.align != "none" and not self.keep_surroundings)

    def chosen_augment(self) -> AugmentParams | None:
        """The augmentation ``aug`` and ``fill_mode`` stand for (None when both are unset)."""
        if self.aug is None and self.fill_mode is None:
            return None
        aug = AugmentParams.preset(self.aug or ("strong" if self.align == "none" else "aligned"))
        if self.fill_mode is not None:
            aug = AugmentParams(**{**aug.to_dict(), "fill_mode": self.fill_mode})
        return aug

    def member_specs(self) -> list[dict[str, Any]]:
        """One ``{"arch": name, **builder options}`` per network of the model."""
        from napari_cellnet.models.classifier import member_specs

        return member_specs(self.arch, self.members if self.members is not None else self.ensemble,
                            self.model_config)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Every check; a ValueError that says what to change."""
        if self.arch == "ensemble":
            raise ValueError("Choose the members' network as arch and their number with ensemble=N.")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 (networks per model), got {self.ensemble}.")
        if self.members is not None:
            self._check_members()
        if self.arch not in CLASSIFIERS:
            raise ValueError(f"Unknown classifier {self.arch!r}; choose one of {', '.join(CLASSIFIERS)}.")
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.balance not in BALANCE:
            raise ValueError(f"Unknown imbalance policy {self.balance!r}; choose one of {', '.join(BALANCE)}.")
        super().validate()
        if self.patience is not None and self.val_fraction == 0:
            raise ValueError("Early stopping (patience) needs a validation split: set val_fraction > 0 "
                             "(CLI --val-fraction 0.2).")
        if self.norm_low >= self.norm_high:
            raise ValueError(f"norm_low ({self.norm_low:g}) must be below norm_high ({self.norm_high:g}).")

    def _check_members(self) -> None:
        if self.ensemble != 1:
            raise ValueError("Give either members (a mixed ensemble) or ensemble=N, not both.")
        if self.pretrained:
            raise ValueError("A pretrained weights file fits one architecture: leave it out for a mixed "
                             "ensemble (members), or train one architecture.")
        if self.model_config:
            raise ValueError("With members, give each network's options in its spec (e.g. "
                             "resnet18:width=32), not in model_config.")
        if not self.members:
            raise ValueError("An ensemble needs at least one member network.")
        for spec in self.members:
            if spec.get("arch") not in CLASSIFIERS:
                raise ValueError(f"Unknown ensemble member {spec.get('arch')!r}; choose from "
                                 f"{', '.join(CLASSIFIERS)}.")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Every field, plus the nested ``"preprocessing"`` and ``"augment"`` checkpoints store."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d = json.loads(json.dumps(d, default=lambda o: o.to_dict()))
        d["preprocessing"] = self.preprocessing.to_dict()
        d["augment"] = None if self.augment is None else self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierTrainConfig:
        """Inverse of :meth:`to_dict`; reads the configs stored in older checkpoints too (nested
        ``"preprocessing"`` and ``"augment"``, no flat input fields)."""
        d = dict(d)
        prep = d.pop("preprocessing", None)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown {cls.JOB} parameter(s) {unknown}; valid: {sorted(names)}.")
        flat = cls.flat_preprocessing(prep) if prep is not None else {}
        return cls(**{**flat, **d})  # fields stored by name win over the nested dictionary

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the parameters as ``params.json``: the front-end fields (and a custom
        ``augment`` set from Python, which no front-end field can express)."""
        from napari_cellnet.core.io import write_json

        d = {i.name: getattr(self, i.name) for i in self.infos()}
        d = json.loads(json.dumps(d))
        if self.augment is not None and self.chosen_augment() is None:
            d["augment"] = self.augment.to_dict()
        return write_json(path, dict(sorted(d.items())))


@dataclass
class ClassifyParams(Params):
    """Every choice of a classification run (:func:`napari_cellnet.classification.inference.classify`,
    and :func:`~napari_cellnet.classification.inference.evaluate`, which classifies a labelled
    gallery); the model and what to classify are the run's inputs, not parameters."""

    JOB: ClassVar[str] = "classify"

    device: str = param("auto", group="run", help=DEVICE_HELP)
    tta: int = param(1, low=1, high=8, label="test-time augmentation", group="prediction",
                     help="average over this many flips/rotations (1 = off, up to 8)")
    batch_size: int = param(128, low=1, high=4096, flag="--batch", advanced=True, group="run",
                            help="images per forward pass")
    crop_size: int | None = param(None, low=8, high=4096, advanced=True, group="objects", none_means="the model's",
                                  label="object crop (px)",
                                  help="objects of a Labels layer: side of the crop cut around each object")
    mask_neighbours: bool | None = param(None, advanced=True, group="objects", none_means="the model's",
                                         help="objects of a Labels layer: blank neighbouring objects in each crop")
    threads: int | None = param(None, low=1, advanced=True, group="run", none_means="torch's choice",
                                help="CPU threads for torch")

