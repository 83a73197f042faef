"""The parameter object of classifier training: every choice of a run, its defaults,
ranges and help, from which the widget, the CLI and ``params.json`` are made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from napari_cellnet.classification.data import Preprocessing
from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.models import available_models
from napari_cellnet.models.classifier import member_specs

LOSSES = ("ce", "weighted_ce", "focal")
#: The shipped demo's mixed ensemble (``parse_members`` form): 0.903 HuSHeM 5-fold accuracy.
DEMO_MEMBERS = "small_cnn*3,mobilenet_v2,resnet18:width=32"
BALANCE = ("none", "weights", "sampler")
META_VERSION = 1


@dataclass
class ClassifierTrainConfig:
    """Every choice of a classifier training run (the widget and the CLI fill this).

    Parameters
    ----------
    arch : str
        Registered classification model (``small_cnn``, ``resnet18``, ``mobilenet_v2``).
    model_config : dict
        Extra builder options (``width``, ``blocks``, ``width_mult``, ``stem`` ...).
    activation : str
        Activation of the network (see :data:`napari_cellnet.models.classifier.ACTIVATIONS`).
    dropout : float
        Dropout before the classifier layer.
    pretrained : str, optional
        Weights file to start from (a napari-cellnet checkpoint or a state_dict).
    preprocessing : Preprocessing
        Input size, channel policy, normalisation, alignment; used when ``train_classifier``
        is given a folder. Default: 64 px, cells aligned upright with their surroundings
        blanked (``align="major_axis", isolate=True``), which raised HuSHeM 5-fold accuracy
        from 0.77 to 0.89 (docs/classification.md).
    epochs, batch_size, lr, weight_decay, optimizer, momentum, scheduler, warmup_epochs
        Optimisation (see :mod:`napari_cellnet.core.optim`).
    loss : {"ce", "weighted_ce", "focal"}
        Cross-entropy, class-weighted cross-entropy, or focal loss (``focal_gamma``).
    label_smoothing : float
        Label smoothing of the cross-entropy / focal targets.
    mixup : float
        Mixup (Zhang et al. 2018): each batch is blended with a shuffled copy of itself with
        a weight drawn from Beta(mixup, mixup), and the loss blends both targets the same
        way. 0 turns it off; 0.2-0.4 is usual. A regulariser for small galleries.
    augment : AugmentParams, optional
        Random transforms of training images. ``None`` (default) picks the preset that
        suits the samples: ``"aligned"`` for aligned samples, ``"strong"`` (any angle)
        otherwise.
    aug_rate : int
        Randomly augmented copies of every training image per epoch (the seed GUI's 1x/5x/10x).
    balance : {"none", "weights", "sampler"}
        Class imbalance: nothing, inverse-frequency loss weights, or balanced sampling.
    folds : int
        Stratified k-fold CV with this many folds; 1 = one hold-out split of ``holdout``;
        0 = no evaluation (train on everything).
    holdout : float
        Test fraction of the hold-out split.
    val_fraction : float
        Inner validation split of each training part used to pick the best epoch (0 = use
        the last epoch).
    refit : bool
        After CV, train the shipped model on all samples.
    tta : int
        Test-time augmentation views (1 = off, up to 8) when scoring.
    ensemble : int
        Train this many networks of ``arch`` per fold (and for the refit), each from its own
        seed, and save them as one model that averages their class probabilities
        (:class:`~napari_cellnet.models.classifier.Ensemble`). Costs ``ensemble`` times the
        training and inference time; lowers the variance of small-data models.
    members : list of dict, optional
        A mixed ensemble: one spec per network, ``{"arch": name, **builder options}``
        (e.g. ``[{"arch": "small_cnn"}, {"arch": "mobilenet_v2"}, {"arch": "resnet18",
        "width": 32}]``; CLI ``--members small_cnn,mobilenet_v2,resnet18:width=32``). Replaces
        ``arch``, ``model_config`` and ``ensemble``; every network is trained with the same
        recipe, the k-th network of an architecture from seed ``seed + 7919 k`` (so its first
        network is the one a single-network run of that architecture trains), and the model
        averages their class probabilities.
    seed : int
        Seeds the split, the initialisation, the augmentation.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda:0"`` ...
    patience : int, optional
        Early stopping when the validation loss has not improved for this many epochs
        (needs ``val_fraction > 0``).
    threads : int, optional
        CPU threads for torch (default: all cores). On a machine shared with other jobs,
        1 is often many times faster than oversubscribing the cores.
    """

    arch: str = "small_cnn"
    model_config: dict[str, Any] = field(default_factory=dict)
    activation: str = "relu"
    dropout: float = 0.3
    pretrained: str | None = None
    preprocessing: Preprocessing = field(
        default_factory=lambda: Preprocessing(align="major_axis", isolate=True))
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: int = 2
    loss: str = "ce"
    label_smoothing: float = 0.1
    mixup: float = 0.0
    focal_gamma: float = 2.0
    augment: AugmentParams | None = None
    aug_rate: int = 3
    balance: str = "none"
    folds: int = 5
    holdout: float = 0.2
    val_fraction: float = 0.0
    refit: bool = True
    tta: int = 1
    ensemble: int = 1
    members: list[dict[str, Any]] | None = None
    seed: int = 0
    device: str = "auto"
    patience: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.arch == "ensemble":
            raise ValueError("Choose the members' network as arch and their number with ensemble=N.")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 (networks per model), got {self.ensemble}.")
        if self.members is not None:
            if self.ensemble != 1:
                raise ValueError("Give either members (a mixed ensemble) or ensemble=N, not both.")
            if self.pretrained:
                raise ValueError("A pretrained weights file fits one architecture: leave it out for a mixed "
                                 "ensemble (members), or train one architecture.")
            if self.model_config:
                raise ValueError("With members, give each network's options in its spec (e.g. "
                                 "resnet18:width=32), not in model_config.")
            self.members = member_specs("", self.members)
            self.arch = self.members[0]["arch"]
        if self.arch not in available_models("classification"):
            raise ValueError(f"Unknown classifier {self.arch!r}; choose one of "
                             f"{', '.join(available_models('classification'))}.")
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.balance not in BALANCE:
            raise ValueError(f"Unknown imbalance policy {self.balance!r}; choose one of {', '.join(BALANCE)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.aug_rate < 1:
            raise ValueError("epochs, batch_size and aug_rate must all be >= 1.")
        if self.folds < 0:
            raise ValueError(f"folds must be >= 0, got {self.folds}.")
        if not 0 <= self.val_fraction < 1 or not 0 < self.holdout < 1:
            raise ValueError("val_fraction must be in [0, 1) and holdout in (0, 1).")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.mixup < 0:
            raise ValueError(f"mixup must be >= 0 (0 = off), got {self.mixup}.")
        if self.patience is not None and self.val_fraction == 0:
            raise ValueError("Early stopping (patience) needs a validation split: set val_fraction > 0.")
        if isinstance(self.augment, dict):
            self.augment = AugmentParams.from_dict(self.augment)
        if isinstance(self.preprocessing, dict):
            self.preprocessing = Preprocessing.from_dict(self.preprocessing)

    def member_specs(self) -> list[dict[str, Any]]:
        """One ``{"arch": name, **builder options}`` per network of the model."""
        return member_specs(self.arch, self.members if self.members is not None else self.ensemble,
                            self.model_config)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        d["augment"] = None if self.augment is None else self.augment.to_dict()
        return d
