"""The parameter object of segmentation training: every choice of a run, its defaults,
ranges and help, from which the widget, the CLI and ``params.json`` are made."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.core.io import write_json
from napari_cellnet.core.params import Params, param
from napari_cellnet.segmentation import preprocessing as pre
from napari_cellnet.segmentation.losses import CLASS_WEIGHTINGS, LOSSES

MODEL_NAME = "temporal_unet"
CALIBRATE_MODES = ("none", "validation", "any")
BEST_METRICS = {"seg": "max", "f1": "max", "ap": "max", "instance_f1": "max", "val_loss": "min"}
CLASS_NAMES = {2: ["background", "cell"], 3: ["background", "cell", "boundary"]}
# Parameters that change the network or the data stream: a resumed run must keep them.
_STRUCTURAL = ("preset", "window", "classes", "model_config", "edge", "drift", "background_subtraction", "scale",
               "norm_low", "norm_high", "frames", "val_frames", "val_fraction", "patch_size", "fg_fraction",
               "augment", "aug_rate", "loss", "class_weighting", "cell_weight", "boundary_weight",
               "weight_map", "w0", "sigma", "optimizer", "lr", "weight_decay", "momentum", "scheduler",
               "lr_decay", "min_lr", "warmup_epochs", "batch_size", "seed")


@dataclass
class TrainSegParams:
    """Everything that defines a segmentation training run (the CLI and the widget build this).

    JSON-serialisable with :meth:`to_dict` / :meth:`from_dict`; saved as ``params.json``
    beside the model and inside every checkpoint.

    Parameters
    ----------
    preset : {"light", "stemnet"}
        U-Net architecture (:func:`napari_cellnet.models.unet.unet_preset`).
    window : int
        Odd number of frames the network sees (1 = single frames, 5 = StemNet's Network_5).
    classes : {2, 3}
        2 = background/cell (StemNet), 3 = background/cell/boundary (separates touching cells).
    model_config : dict
        Overrides of the preset's architecture (e.g. ``{"base_width": 32}``).
    edge : {"reflect", "replicate", "skip"}
        What the window uses beyond the movie's ends (stored in the model for inference).
    drift : bool
        Register neighbours onto the centre frame (for a drifting stage).
    background_subtraction : bool
        Subtract the per-pixel temporal median (StemNet).
    norm_low, norm_high : float
        Per-movie intensity percentiles mapped to 0 and 1.
    scale : float
        Input scale factor (cellpose's "diameter" rescaling): windows and labels are
        upsampled by this factor before training and the network works at that scale;
        stored in the model, so inference rescales the movie the same way and brings the
        probabilities back to the movie's grid. 2 suits cells about 10 px across.
    frames, val_frames : list of int (one movie) or list of lists (several), optional
        Training and validation frames; see :func:`napari_cellnet.segmentation.data.split_frames`.
        ``val_frames=[]`` trains without validation; None chooses automatically.
    val_fraction : float
        Share of annotated frames held back when validation frames are chosen automatically.
    patch_size : int
        Side of the square training patches (a multiple of the network's size divisor, 16
        for "light"); frames smaller than a patch are padded.
    fg_fraction : float
        Share of patches centred on a labelled pixel.
    augment : str or dict
        An :meth:`AugmentParams.preset` name ("none", "light", "strong", "temporal") or a
        dict of :class:`~napari_cellnet.core.augment.AugmentParams` fields.
    aug_rate : int
        Patches per epoch as a multiple of what covers the training frames once (1, 5, 10).
    loss : {"ce", "dice", "ce+dice"}
    class_weighting : {"fixed", "median_frequency", "none"}
        Cross-entropy class weights: StemNet's fixed weights, median-frequency balancing
        computed on the training frames, or none.
    cell_weight, boundary_weight : float
        The fixed weights of the cell and boundary classes (background 1).
    weight_map : bool
        Use the U-Net border weight map (``w0``, ``sigma`` in pixels) in the cross-entropy.
    optimizer : str
        One of :data:`napari_cellnet.core.optim.OPTIMIZERS` ("adamw", "sgd", "adam", "rmsprop", "adamax", ...).
    lr, weight_decay, momentum : float
        Optimiser settings (momentum for SGD and RMSprop).
    scheduler : {"cosine", "exponential", "plateau", "none"}
        Per-epoch schedule; ``lr_decay`` is the exponential factor, ``min_lr`` the floor.
    warmup_epochs : int
        Linear warm-up epochs before the cosine schedule.
    batch_size, epochs : int
    best_metric : {"seg", "f1", "ap", "instance_f1", "val_loss"}
        What makes ``best.pt`` best (CTC SEG by default; pixel F1 as StemNet).
    early_stopping : int
        Stop after this many epochs without a better ``best_metric`` (0 = never).
    threshold, min_size : float, int
        Post-processing used for validation and stored in the model for inference.
    calibrate : {"none", "validation", "any"}
        After training, choose the threshold and minimum size that maximise SEG
        (:func:`calibrate_postprocessing`) and store them in ``best.pt``: ``"validation"``
        on the validation frames only (nothing changes without them), ``"any"`` on the
        training frames when there is no validation frame, ``"none"`` keeps ``threshold``
        and ``min_size``.
    seed : int
        Seed of the weights, the patches and the augmentation.
    device : str
        "auto", "cpu", "cuda", "cuda:N" or "mps".
    threads : int
        CPU threads for torch; 0 uses every core. On a machine shared with other jobs, 1
        can be several times faster than oversubscribing the cores.
    """

    preset: str = "light"
    window: int = 5
    classes: int = 3
    model_config: dict[str, Any] = field(default_factory=dict)
    edge: str = "reflect"
    drift: bool = False
    background_subtraction: bool = False
    norm_low: float = 1.0
    norm_high: float = 99.8
    scale: float = 1.0
    frames: list[Any] | None = None
    val_frames: list[Any] | None = None
    val_fraction: float = 0.2
    patch_size: int = 64
    fg_fraction: float = 0.8
    augment: str | dict[str, Any] = "temporal"
    aug_rate: int = 1
    loss: str = "ce+dice"
    class_weighting: str = "fixed"
    cell_weight: float = 2.0
    boundary_weight: float = 2.0
    weight_map: bool = False
    w0: float = 10.0
    sigma: float = 5.0
    optimizer: str = "adamw"
    lr: float = 4e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    lr_decay: float = 0.95
    min_lr: float = 0.0
    warmup_epochs: int = 0
    batch_size: int = 16
    epochs: int = 40
    best_metric: str = "seg"
    early_stopping: int = 0
    threshold: float = 0.5
    min_size: int = 30
    calibrate: str = "validation"
    seed: int = 0
    device: str = "auto"
    threads: int = 0

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dictionary of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSegParams:
        """Inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown training parameter(s) {unknown}; valid: {sorted(names)}.")
        return cls(**d)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write ``params.json`` (atomically)."""
        return write_json(path, dict(sorted(self.to_dict().items())))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> TrainSegParams:
        """Read a ``params.json`` written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainSegParams:
        """Training defaults of a named preset, with overrides.

        ``"light"`` is the fast default (light U-Net, 3 classes, CE + Dice, AdamW with a
        cosine schedule). ``"stemnet"`` is the thesis configuration: StemNet's U-Net,
        2 classes, cross-entropy with weight 2 on cells, SGD with momentum 0.2, lr 0.15
        decayed x0.95 per epoch (Table 1), batch 1, temporal-median background subtraction.
        """
        presets: dict[str, dict[str, Any]] = {
            "light": {},
            "stemnet": dict(preset="stemnet", classes=2, loss="ce", class_weighting="fixed", cell_weight=2.0,
                            optimizer="sgd", lr=0.15, momentum=0.2, weight_decay=0.0, scheduler="exponential",
                            lr_decay=0.95, batch_size=1, background_subtraction=True, patch_size=256,
                            best_metric="f1"),
        }
        key = str(name).strip().lower()
        if key not in presets:
            raise ValueError(f"Unknown training preset {name!r}; choose one of {', '.join(presets)}.")
        return cls(**{**presets[key], **overrides})

    # ------------------------------------------------------------------ checks
    def augment_params(self) -> AugmentParams:
        """The :class:`AugmentParams` this run uses."""
        if isinstance(self.augment, str):
            return AugmentParams.preset(self.augment)
        return AugmentParams.from_dict(dict(self.augment))

    def model_config_full(self, in_channels: int) -> dict[str, Any]:
        """The registry config of the network (what the checkpoint stores).

        The preset is expanded into its architecture keywords, so a checkpoint rebuilds
        the same network even if a later version changes what the preset means.
        """
        from napari_cellnet.models.unet import unet_preset

        return {**unet_preset(self.preset), **dict(self.model_config),
                "window": int(self.window), "in_channels": int(in_channels), "classes": int(self.classes)}

    def validate(self) -> None:
        """Check every value; raise one ValueError that says what to change."""
        from napari_cellnet.core.optim import OPTIMIZERS, SCHEDULERS

        pre.check_window(self.window)
        pre.check_edge(self.edge)
        pre.check_scale(self.scale)
        if self.classes not in (2, 3):
            raise ValueError(f"classes must be 2 (background/cell) or 3 (with a boundary class), got {self.classes}.")
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"Unknown class weighting {self.class_weighting!r}; choose one of {', '.join(CLASS_WEIGHTINGS)}.")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"Unknown optimiser {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if self.scheduler.lower() not in SCHEDULERS:
            raise ValueError(f"Unknown learning-rate schedule {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}.")
        if self.best_metric not in BEST_METRICS:
            raise ValueError(f"best_metric must be one of {', '.join(BEST_METRICS)}, got {self.best_metric!r}.")
        for name in ("epochs", "batch_size", "aug_rate"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ValueError(f"The learning rate must be > 0, got {self.lr}.")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = every core), got {self.threads}.")
        if self.early_stopping < 0:
            raise ValueError(f"early_stopping must be >= 0 epochs (0 = off), got {self.early_stopping}.")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}.")
        if self.calibrate not in CALIBRATE_MODES:
            raise ValueError(f"calibrate must be one of {', '.join(CALIBRATE_MODES)}, got {self.calibrate!r}.")
        self.augment_params()


def _tile(text: str) -> int | None:
    """``--tile 0`` (or empty) runs whole frames."""
    n = int(text) if str(text).strip() else 0
    return None if n == 0 else n


@dataclass
class SegmentParams(Params):
    """Every choice of a segmentation run (:func:`napari_cellnet.segmentation.inference.segment`).

    ``None`` means "what the model says" for the post-processing and window settings a
    checkpoint stores (threshold, minimum size, edge policy, drift, input scale).
    """

    JOB: ClassVar[str] = "segment"

    device: str = param("auto", help="auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps",
                        group="run")
    channel: int | None = param(None, low=0, none_means="the movie's only channel",
                                help="use only this channel of a multi-channel movie (e.g. 0 of an RGB movie)",
                                group="input")
    threshold: float | None = param(None, low=0, high=1, low_open=True, high_open=True, step=0.05,
                                    none_means="the model's", help="foreground probability threshold",
                                    group="post-processing")
    min_size: int | None = param(None, low=0, none_means="the model's", help="smallest object in pixels",
                                 group="post-processing")
    split: str = param("auto", choices=("auto", "boundary", "distance", "none"), advanced=True,
                       help="how touching cells are split (auto: the boundary class when the model has one)",
                       group="post-processing")
    min_iou: float = param(0.3, low=0, high=1, step=0.05, advanced=True,
                           help="IoU an object needs with one of the previous frame to keep its ID",
                           group="post-processing")
    edge: str | None = param(None, choices=("reflect", "replicate", "skip"), flag="--window-edge", advanced=True,
                             none_means="the model's", help="what the window uses beyond the movie's first and "
                             "last frames", group="input")
    drift: bool | None = param(None, advanced=True, none_means="the model's",
                               help="register neighbour frames onto the centre frame (a drifting stage)", group="input")
    scale: float | None = param(None, low=0.25, high=8, advanced=True, none_means="the model's",
                                help="input scale factor: resample frames by this much before the network "
                                     "(change it only when your cells are larger or smaller than the model's)",
                                group="input")
    tile: int | None = param(1024, low=32, parse=_tile, advanced=True, none_means="whole frames",
                             help="tile size in pixels (frames up to it run whole; 0 or empty: never tile)",
                             group="run")
    overlap: int | None = param(None, low=0, advanced=True, none_means="covers the receptive field",
                                help="tile overlap in pixels (the default makes tiled == untiled)", group="run")
    batch: int | None = param(None, low=1, advanced=True, none_means="4 on a GPU, 1 on the CPU",
                              help="frames or tiles per forward pass (halved automatically on CUDA out-of-memory)",
                              group="run")
    precision: str = param("auto", choices=("auto", "bf16", "fp16", "fp32"), advanced=True,
                           help="mixed precision on CUDA (auto: bf16 where supported); the CPU always runs fp32",
                           group="run")
    channels_last: bool | None = param(None, advanced=True, none_means="on for CUDA and the CPU",
                                       help="channels-last memory format (faster with oneDNN and cuDNN)", group="run")
    threads: int | None = param(None, low=1, advanced=True, none_means="every core",
                                help="CPU threads for torch", group="run")


@dataclass
class EvaluateParams(Params):
    """Scoring predicted labels against ground truth
    (:func:`napari_cellnet.core.metrics.segmentation_report`)."""

    JOB: ClassVar[str] = "evaluate"

    iou: float = param(0.5, low=0, high=1, low_open=True, step=0.05,
                       help="IoU at which a predicted object matches a true one (AP, instance F1)")
