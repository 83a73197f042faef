"""The parameter objects of the segmentation jobs: train segmentation, segment, evaluate.

Each is a :class:`~napari_cellnet.core.params.Params` dataclass whose fields carry their
default, range or choices, help text and basic/advanced flag; the widgets, the command
line and ``params.json`` are made from them, so a default lives here and nowhere else.
No torch and no Qt: the widgets import this module while napari starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.core.device import DEVICE_HELP
from napari_cellnet.core.optim import OPTIMIZERS, SCHEDULERS
from napari_cellnet.core.params import Params, param
from napari_cellnet.segmentation.preprocessing import EDGE_POLICIES, SCALE_RANGE

MODEL_NAME = "temporal_unet"
CALIBRATE_MODES = ("none", "validation", "any")
BEST_METRICS = {"seg": "max", "f1": "max", "ap": "max", "instance_f1": "max", "val_loss": "min"}
CLASS_NAMES = {2: ["background", "cell"], 3: ["background", "cell", "boundary"]}
#: Loss functions and cross-entropy class weightings of :mod:`napari_cellnet.segmentation.losses`
#: (named here so that choosing one needs no torch).
LOSSES = ("ce", "dice", "ce+dice")
CLASS_WEIGHTINGS = ("none", "fixed", "median_frequency")
AUGMENT_PRESETS = ("temporal", "light", "strong", "aligned", "none")
TRAINING_PRESETS = ("light", "stemnet")
# Parameters that change the network or the data stream: a resumed run must keep them.
_STRUCTURAL = ("preset", "window", "classes", "model_config", "edge", "drift", "background_subtraction", "scale",
               "norm_low", "norm_high", "frames", "val_frames", "val_fraction", "patch_size", "fg_fraction",
               "augment", "aug_rate", "loss", "class_weighting", "cell_weight", "boundary_weight",
               "weight_map", "w0", "sigma", "optimizer", "lr", "weight_decay", "momentum", "scheduler",
               "lr_decay", "min_lr", "warmup_epochs", "batch_size", "seed")
# What each training preset sets (a preset sets all of these keys: "light" back to the defaults).
_PRESETS: dict[str, dict[str, Any]] = {
    "light": {},
    "stemnet": dict(preset="stemnet", classes=2, loss="ce", class_weighting="fixed", cell_weight=2.0,
                    optimizer="sgd", lr=0.15, momentum=0.2, weight_decay=0.0, scheduler="exponential",
                    lr_decay=0.95, batch_size=1, background_subtraction=True, patch_size=256, best_metric="f1"),
}


# --------------------------------------------------------------------------- frame lists

_FRAMES_HELP = ("use numbers separated by commas (0,2,4), ranges (0-8 or 0-8:2 for every second frame), "
                "'auto' or 'none'; several movies take one list each, separated by ';' (0,2;1). Frames count from 0")


def parse_frames(text: str | None, n_movies: int | None = None) -> Any:
    """Read a frame list: ``"0,2,4"``, ranges ``"0-8:2"``, ``"none"``, ``"auto"``; ``;`` between movies.

    Parameters
    ----------
    text : str or None
    n_movies : int, optional
        How many lists to expect; default one per ``;``-separated part.

    Returns
    -------
    None for "auto" (or no text), ``[]`` for "none", a list of ints (one movie) or a list of
    lists (several movies).

    Raises
    ------
    ValueError
        For text that is not a list of frame numbers, or the wrong number of lists.
    """
    t = "" if text is None else str(text).strip()
    if t.lower() in ("", "auto"):
        return None
    per_movie = t.split(";")
    n = len(per_movie) if n_movies is None else int(n_movies)
    if t.lower() == "none":
        return [] if n == 1 else [[] for _ in range(n)]
    if len(per_movie) != n:
        raise ValueError(f"Frames {text!r} give {len(per_movie)} list(s) for {n} movie(s); separate one list per "
                         "movie with ';' (e.g. --frames '0,2;1,3').")
    out = [_parse_frame_list(part, t) for part in per_movie]
    return out[0] if n == 1 else out


def _parse_frame_list(part: str, whole: str) -> list[int]:
    frames: list[int] = []
    if part.strip().lower() == "none":
        return frames
    for item in filter(None, (s.strip() for s in part.split(","))):
        try:
            if "-" in item:
                span, _, step = item.partition(":")
                a, b = (int(x) for x in span.split("-"))
                frames += list(range(a, b + 1, int(step) if step else 1))
            else:
                frames.append(int(item))
        except ValueError:
            raise ValueError(f"Cannot read frame list {whole!r}: {_FRAMES_HELP}.") from None
    return frames


def format_frames(frames: Any) -> str:
    """Inverse of :func:`parse_frames`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``, ``[]`` -> ``"none"``."""
    if frames is None:
        return "auto"
    frames = list(frames)
    if frames and not isinstance(frames[0], (int,)) and hasattr(frames[0], "__iter__"):
        return ";".join(_format_frame_list(list(f)) for f in frames)
    return _format_frame_list(frames)


def _format_frame_list(frames: list[int]) -> str:
    if not frames:
        return "none"
    runs: list[list[int]] = []
    for f in (int(x) for x in frames):
        if runs and f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _parse_config(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(text)
    return value


def _parse_augment(text: str) -> str | dict[str, Any]:
    """An augmentation preset name, or a JSON dictionary of AugmentParams fields."""
    t = text.strip()
    if t.startswith("{"):
        return _parse_config(t)
    return t.lower()


def _format_augment(value: str | dict[str, Any]) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _check_threshold(value: float | None) -> None:
    if value is not None and not 0 < value < 1:
        raise ValueError(f"threshold must be between 0 and 1 (a foreground probability), got {value}.")


# --------------------------------------------------------------------------- train segmentation


@dataclass
class TrainSegParams(Params):
    """Everything that defines a segmentation training run (the CLI and the widget build this).

    JSON-serialisable with :meth:`to_dict` / :meth:`from_dict`; saved as ``params.json``
    beside the model and inside every checkpoint. Each field's help says what it does;
    :meth:`from_preset` gives the settings of a named preset ("light", "stemnet").
    """

    JOB: ClassVar[str] = "train-seg"

    # model
    preset: str = param("light", choices=TRAINING_PRESETS, group="model",
                        help="light (fast default: light U-Net, 3 classes, CE + Dice, AdamW) or stemnet (the thesis "
                             "network and Table 1 training settings); choosing a preset fills in its settings")
    window: int = param(5, low=1, step=2, group="model",
                        help="odd number of frames the network sees (1 = single frames, 5 = StemNet's Network5)")
    classes: int = param(3, choices=(2, 3), group="model",
                         help="2 = background/cell (StemNet), 3 = background/cell/boundary (separates touching cells)")
    model_config: dict[str, Any] = param(default_factory=dict, parse=_parse_config, advanced=True, group="model",
                                         help='overrides of the preset\'s architecture as JSON, e.g. {"base_width": 32}')
    edge: str = param("reflect", choices=EDGE_POLICIES, group="model", label="edge policy",
                      help="what the window uses beyond the movie's first and last frames (stored in the model)")
    drift: bool = param(False, advanced=True, group="model",
                        help="register neighbour frames onto the centre frame (a drifting stage)")
    background_subtraction: bool = param(False, group="model",
                                         help="subtract the per-pixel temporal median (StemNet)")
    norm_low: float = param(1.0, low=0, high=100, advanced=True, group="model",
                            help="per-movie intensity percentile mapped to 0")
    norm_high: float = param(99.8, low=0, high=100, advanced=True, group="model",
                             help="per-movie intensity percentile mapped to 1")
    scale: float = param(1.0, low=SCALE_RANGE[0], high=SCALE_RANGE[1], step=0.25, group="model", label="input scale",
                         help="input scale factor: frames and labels are enlarged by this much before the network "
                              "(stored in the model, so segmenting applies it too); 2 suits cells ~10 px across")
    # data
    frames: list[Any] | None = param(None, parse=parse_frames, format=format_frames, group="data",
                                     none_means="every annotated frame not validated",
                                     help="training frames, e.g. 0,2,4 or 0-8:2 ('auto' or empty: automatic); "
                                          "';' between the lists of several movies")
    val_frames: list[Any] | None = param(None, parse=parse_frames, format=format_frames, group="data",
                                         label="validation frames",
                                         none_means="the annotated frames left out of frames, else 20% of them",
                                         help="validation frames, e.g. 1,3 or 0-8:4; 'none' for no validation; "
                                              "'auto' or empty: automatic; ';' between the lists of several movies")
    val_fraction: float = param(0.2, low=0, high=1, high_open=True, step=0.05, advanced=True, group="data",
                                help="share of annotated frames held back when validation frames are automatic")
    patch_size: int = param(64, low=16, step=16, group="data", label="patch size (px)",
                            help="side of the square training patches, a multiple of 16 (frames smaller than a "
                                 "patch are padded)")
    fg_fraction: float = param(0.8, low=0, high=1, step=0.05, advanced=True, group="data",
                               help="share of patches centred on a labelled pixel")
    augment: str | dict[str, Any] = param("temporal", parse=_parse_augment, format=_format_augment, group="data",
                                          label="augmentation",
                                          help="augmentation preset (" + ", ".join(AUGMENT_PRESETS) + ") or a JSON "
                                               "dictionary of AugmentParams fields")
    aug_rate: int = param(1, low=1, group="data", label="augmentation rate (x)",
                          help="patches per epoch as a multiple of what covers the training frames once (1, 5, 10)")
    # training
    epochs: int = param(40, low=1, group="training", help="training epochs")
    batch_size: int = param(16, low=1, group="training", label="batch size", help="patches per step")
    lr: float = param(4e-3, low=0, low_open=True, group="training", label="learning rate",
                      help="learning rate (stemnet: 0.15)")
    optimizer: str = param("adamw", choices=OPTIMIZERS, group="training", help="optimiser (stemnet: sgd)")
    loss: str = param("ce+dice", choices=LOSSES, group="training", help="loss: cross-entropy, Dice or both")
    weight_decay: float = param(1e-4, low=0, advanced=True, group="training", help="weight decay")
    momentum: float = param(0.9, low=0, high=1, high_open=True, advanced=True, group="training",
                            help="momentum of SGD and RMSprop (stemnet: 0.2)")
    scheduler: str = param("cosine", choices=SCHEDULERS, advanced=True, group="training",
                           help="learning-rate schedule per epoch (stemnet: exponential)")
    lr_decay: float = param(0.95, low=0, high=1, low_open=True, advanced=True, group="training",
                            help="factor per epoch of the exponential schedule")
    min_lr: float = param(0.0, low=0, advanced=True, group="training", help="floor of the learning rate")
    warmup_epochs: int = param(0, low=0, advanced=True, group="training",
                               help="linear warm-up epochs before the cosine schedule")
    class_weighting: str = param("fixed", choices=CLASS_WEIGHTINGS, advanced=True, group="training",
                                 help="cross-entropy class weights: fixed (cell_weight, boundary_weight), "
                                      "median_frequency (computed on the training frames) or none")
    cell_weight: float = param(2.0, low=0, low_open=True, advanced=True, group="training",
                               help="fixed weight of the cell class (background 1)")
    boundary_weight: float = param(2.0, low=0, low_open=True, advanced=True, group="training",
                                   help="fixed weight of the boundary class (background 1)")
    weight_map: bool = param(False, advanced=True, group="training",
                             help="U-Net border weight map between touching cells in the cross-entropy")
    w0: float = param(10.0, low=0, advanced=True, group="training", help="weight map: border weight w0")
    sigma: float = param(5.0, low=0, low_open=True, advanced=True, group="training",
                         help="weight map: border width sigma in pixels")
    best_metric: str = param("seg", choices=tuple(BEST_METRICS), advanced=True, group="training",
                             help="what makes best.pt best (CTC SEG; stemnet: pixel f1)")
    early_stopping: int = param(0, low=0, advanced=True, group="training",
                                help="stop after this many epochs without a better best metric (0 = never)")
    # post-processing
    threshold: float = param(0.5, low=0, high=1, low_open=True, high_open=True, step=0.05, advanced=True,
                             group="post-processing",
                             help="foreground threshold used for validation and stored in the model")
    min_size: int = param(30, low=0, advanced=True, group="post-processing",
                          help="smallest cell in pixels, used for validation and stored in the model")
    calibrate: str = param("validation", choices=CALIBRATE_MODES, advanced=True, group="post-processing",
                           help="after training, choose threshold and min size by SEG on the validation frames "
                                "(validation), also on the training frames without validation (any), or keep "
                                "them (none)")
    # run
    seed: int = param(0, low=0, advanced=True, group="run", help="seed of the weights, patches and augmentation")
    device: str = param("auto", group="run", help=DEVICE_HELP)
    threads: int = param(0, low=0, advanced=True, group="run",
                         help="CPU threads for torch; 0 uses every core (1 can be faster on a shared machine)")

    # ------------------------------------------------------------------ presets
    @staticmethod
    def preset_values(name: str) -> dict[str, Any]:
        """The fields a training preset sets: every key any preset sets (so "light" undoes "stemnet")."""
        key = str(name).strip().lower()
        if key not in _PRESETS:
            raise ValueError(f"Unknown training preset {name!r}; choose one of {', '.join(_PRESETS)}.")
        defaults = TrainSegParams()
        keys = {k for values in _PRESETS.values() for k in values} | {"preset"}
        return {k: _PRESETS[key].get(k, key if k == "preset" else getattr(defaults, k)) for k in sorted(keys)}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainSegParams:
        """Training defaults of a named preset, with overrides.

        ``"light"`` is the fast default (light U-Net, 3 classes, CE + Dice, AdamW with a
        cosine schedule). ``"stemnet"`` is the thesis configuration: StemNet's U-Net,
        2 classes, cross-entropy with weight 2 on cells, SGD with momentum 0.2, lr 0.15
        decayed x0.95 per epoch (Table 1), batch 1, temporal-median background subtraction.
        """
        return cls(**{**cls.preset_values(name), **overrides})

    def with_preset(self, name: str) -> TrainSegParams:
        """These settings with a preset's applied on top (the other fields kept)."""
        return self.replace(**self.preset_values(name))

    # ------------------------------------------------------------------ derived
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

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every value; raise one ValueError that says what to change."""
        from napari_cellnet.segmentation import preprocessing as pre

        _check_threshold(self.threshold)
        super().validate()
        pre.check_window(self.window)
        pre.check_edge(self.edge)
        pre.check_scale(self.scale)
        if self.norm_low >= self.norm_high:
            raise ValueError(f"norm_low ({self.norm_low}) must be below norm_high ({self.norm_high}); they are the "
                             "percentiles mapped to 0 and 1.")
        if not isinstance(self.model_config, dict):
            raise ValueError(f"model_config must be a dictionary of architecture keywords, got {self.model_config!r}.")
        try:
            self.augment_params()
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"augment: {err} Use one of {', '.join(AUGMENT_PRESETS)} or a dictionary of "
                             "AugmentParams fields.") from None


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

    device: str = param("auto", help=DEVICE_HELP, group="run")
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
    edge: str | None = param(None, choices=EDGE_POLICIES, flag="--window-edge", advanced=True,
                             none_means="the model's", help="what the window uses beyond the movie's first and "
                             "last frames", group="input")
    drift: bool | None = param(None, advanced=True, none_means="the model's",
                               help="register neighbour frames onto the centre frame (a drifting stage)", group="input")
    scale: float | None = param(None, low=SCALE_RANGE[0], high=SCALE_RANGE[1], advanced=True, none_means="the model's",
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

    def validate(self) -> None:
        """Check every value; raise one ValueError that says what to change."""
        from napari_cellnet.segmentation import preprocessing as pre

        _check_threshold(self.threshold)
        if self.scale is not None:
            pre.check_scale(self.scale)
        super().validate()


@dataclass
class EvaluateParams(Params):
    """Scoring predicted labels against ground truth
    (:func:`napari_cellnet.core.metrics.segmentation_report`)."""

    JOB: ClassVar[str] = "evaluate"

    iou: float = param(0.5, low=0, high=1, low_open=True, step=0.05,
                       help="IoU at which a predicted object matches a true one (AP, instance F1)")
