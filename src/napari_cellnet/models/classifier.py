"""CNN classifiers for single-cell images, written in plain torch (no torchvision, no download).

Three families cover what the source projects used, from small to large:

``small_cnn``
    Stacked conv-BN-activation blocks with max-pooling, global average pooling and a
    dropout + linear head: the kind of 4-5 block network the HeLa and blast-cell projects
    trained from scratch. Fast (the default for galleries of a few hundred cells).
``resnet18``
    The ResNet-18 layout (BasicBlocks [2, 2, 2, 2]) with a configurable width and a stem
    that suits small crops.
``mobilenet_v2``
    The MobileNetV2 inverted-residual layout with a width multiplier; the sperm GUI's best
    HuSHeM model was a MobileNetV2.

All take ``in_channels`` (1 for grayscale, 3 for RGB), ``n_classes``, ``activation``
(:data:`ACTIVATIONS`) and ``dropout``; all end with global average pooling, so any input
size works. ``pretrained=path`` copies matching weights from a file the user points to
(a napari-cellnet checkpoint or a plain ``state_dict``, read with ``weights_only=True``);
nothing is ever fetched from the internet.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from napari_cellnet.models import register

ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus", "tanh")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    key = name.strip().lower()
    table: dict[str, Any] = {
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
        "elu": lambda: nn.ELU(inplace=True),
        "selu": lambda: nn.SELU(inplace=True),
        "gelu": nn.GELU,
        "silu": lambda: nn.SiLU(inplace=True),
        "mish": lambda: nn.Mish(inplace=True),
        "softplus": nn.Softplus,
        "tanh": nn.Tanh,
    }
    if key not in table:
        raise ValueError(f"Unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}.")
    return table[key]()


def _check(in_channels: int, n_classes: int, dropout: float) -> None:
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
    if n_classes < 2:
        raise ValueError(
            f"A classifier needs at least 2 classes, got n_classes={n_classes}. "
            "Add images of a second class to the dataset."
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")


def _init(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _conv_bn(cin: int, cout: int, act: str, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        make_activation(act),
    )


class _Head(nn.Module):
    def __init__(self, features: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class SmallCNN(nn.Module):
    """``blocks`` x (conv-BN-act [x2 after the first block], 2x2 max-pool), widths doubling
    from ``width``; about 0.3 M parameters and 45 M multiply-adds on a 64x64 RGB input with
    the defaults.

    Input ``(B, in_channels, Y, X)``; output logits ``(B, n_classes)``.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width: int = 16, blocks: int = 4,
                 activation: str = "relu", dropout: float = 0.3) -> None:
        super().__init__()
        _check(in_channels, n_classes, dropout)
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(blocks):
            cout = width * 2**i
            # one convolution at full resolution (cheap), two per block after the first pooling
            convs = [_conv_bn(cin, cout, activation)]
            if i > 0:
                convs.append(_conv_bn(cout, cout, activation))
            layers += [*convs, nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = _Head(cin, n_classes, dropout)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = make_activation(act)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = make_activation(act)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlocks [2, 2, 2, 2], widths ``width`` x 1, 2, 4, 8).

    ``stem="imagenet"`` is the 7x7/2 convolution + 3x3/2 max-pool of the original (input
    /4, cheap on 96-224 px crops); ``stem="small"`` is one 3x3/1 convolution for crops of
    32-64 px (more accurate, ~16x the compute).
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width: int = 64,
                 stem: str = "imagenet", activation: str = "relu", dropout: float = 0.2) -> None:
        super().__init__()
        _check(in_channels, n_classes, dropout)
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                make_activation(activation), nn.MaxPool2d(3, 2, 1))
        elif stem == "small":
            self.stem = _conv_bn(in_channels, width, activation)
        else:
            raise ValueError(f"Unknown ResNet stem {stem!r}; choose 'imagenet' or 'small'.")
        layers: list[nn.Module] = []
        cin = width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers += [_BasicBlock(cin, cout, stride, activation), _BasicBlock(cout, cout, 1, activation)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = _Head(cin, n_classes, dropout)
        _init(self)
        for m in self.modules():  # zero-init the last BN of each block: starts as identity
            if isinstance(m, _BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: str) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, act, k=1))
        layers += [
            _conv_bn(hidden, hidden, act, k=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


def _divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with width multiplier ``width_mult``.

    The default activation is ReLU (the original uses ReLU6; any of :data:`ACTIVATIONS`).
    ``first_stride=1`` keeps more resolution on small crops.
    """

    # expansion t, channels c, repeats n, stride s (Table 2 of the paper)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width_mult: float = 1.0,
                 first_stride: int = 2, activation: str = "relu", dropout: float = 0.2) -> None:
        super().__init__()
        _check(in_channels, n_classes, dropout)
        cin = _divisible(32 * width_mult)
        last = _divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(in_channels, cin, activation, stride=first_stride)]
        for t, c, n, s in self.SETTINGS:
            cout = _divisible(c * width_mult)
            for i in range(n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t, activation))
                cin = cout
        layers.append(_conv_bn(cin, last, activation, k=1))
        self.features = nn.Sequential(*layers)
        self.head = _Head(last, n_classes, dropout)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_pretrained(net: nn.Module, path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Copy the weights of ``path`` whose names and shapes match into ``net``.

    Parameters
    ----------
    net : torch.nn.Module
    path : path-like
        A napari-cellnet checkpoint (its ``state_dict``) or a file holding a plain
        ``state_dict`` (``.pt``/``.pth``), read with ``weights_only=True``. The classifier
        head is skipped when the number of classes differs, so a model trained on another
        dataset is a valid starting point.

    Returns
    -------
    dict
        ``{"loaded": [...], "skipped": [...]}`` parameter names.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, unreadable file, or no parameter in common (wrong architecture).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Pretrained weights file not found: {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"Cannot read pretrained weights {path} ({type(err).__name__}); "
                         "give a .pt/.pth file holding a state_dict or a napari-cellnet checkpoint.") from err
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state_dict of weights.")
    own = net.state_dict()
    loaded = [k for k, v in state.items() if k in own and hasattr(v, "shape") and v.shape == own[k].shape]
    if not loaded:
        raise ValueError(
            f"No weight in {path} matches this network ({type(net).__name__}); "
            "choose weights saved from the same architecture."
        )
    own.update({k: state[k] for k in loaded})
    net.load_state_dict(own)
    return {"loaded": loaded, "skipped": sorted(set(own) - set(loaded))}


def _maybe_pretrained(net: nn.Module, pretrained: str | None) -> nn.Module:
    if pretrained:
        load_pretrained(net, pretrained)
    return net


@register("small_cnn", "classification")
def small_cnn(in_channels: int = 3, n_classes: int = 2, width: int = 16, blocks: int = 4,
              activation: str = "relu", dropout: float = 0.3, pretrained: str | None = None) -> nn.Module:
    """Build :class:`SmallCNN` (see its docstring for the options)."""
    return _maybe_pretrained(SmallCNN(in_channels, n_classes, width, blocks, activation, dropout), pretrained)


@register("resnet18", "classification")
def resnet18(in_channels: int = 3, n_classes: int = 2, width: int = 64, stem: str = "imagenet",
             activation: str = "relu", dropout: float = 0.2, pretrained: str | None = None) -> nn.Module:
    """Build :class:`ResNet18`."""
    return _maybe_pretrained(ResNet18(in_channels, n_classes, width, stem, activation, dropout), pretrained)


@register("mobilenet_v2", "classification")
def mobilenet_v2(in_channels: int = 3, n_classes: int = 2, width_mult: float = 1.0,
                 first_stride: int = 2, activation: str = "relu", dropout: float = 0.2,
                 pretrained: str | None = None) -> nn.Module:
    """Build :class:`MobileNetV2`."""
    return _maybe_pretrained(
        MobileNetV2(in_channels, n_classes, width_mult, first_stride, activation, dropout), pretrained)


class Ensemble(nn.Module):
    """Several classifiers trained apart (different seeds), answering together.

    The forward pass returns the log of the members' *averaged* class probabilities, so a
    softmax of the output (what prediction applies) gives exactly that average. Averaging
    a few independently trained small networks is the cheapest way to lower the variance
    of a classifier trained on a few hundred images.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("An ensemble needs at least one member network.")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))


@register("ensemble", "classification")
def ensemble(in_channels: int = 3, n_classes: int = 2, arch: str = "small_cnn",
             members: int | list[dict[str, Any]] = 3, activation: str = "relu", dropout: float = 0.3,
             pretrained: str | None = None, **member_config: Any) -> nn.Module:
    """Build an :class:`Ensemble` of untrained networks (the layout a checkpoint of an
    ensemble is loaded into; training fits each member on its own).

    ``members`` is either a count (that many ``arch`` networks built with ``member_config``)
    or a list of member specs, one per network, each ``{"arch": name, **builder options}``
    (a mixed ensemble, e.g. ``[{"arch": "small_cnn"}, {"arch": "resnet18", "width": 32}]``).
    """
    from napari_cellnet.models import build_model

    common = {"in_channels": in_channels, "n_classes": n_classes, "activation": activation,
              "dropout": dropout, "pretrained": pretrained}
    specs = member_specs(arch, members, member_config)
    return Ensemble([build_model(spec["arch"], **common, **{k: v for k, v in spec.items() if k != "arch"})
                     for spec in specs])


def member_specs(arch: str, members: int | list[dict[str, Any]],
                 member_config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The member specs of an ensemble (``{"arch": name, **options}`` per network), checked."""
    from napari_cellnet.models import available_models

    if isinstance(members, int):
        if members < 1:
            raise ValueError(f"An ensemble needs at least 1 member, got {members}.")
        specs = [{"arch": arch, **(member_config or {})} for _ in range(members)]
    else:
        specs = [dict(spec) for spec in members]
        if not specs:
            raise ValueError("An ensemble needs at least one member network.")
    known = available_models("classification")
    for spec in specs:
        name = spec.get("arch")
        if name == "ensemble":
            raise ValueError("An ensemble's members cannot be ensembles.")
        if name not in known:
            raise ValueError(f"Unknown ensemble member {name!r}; choose from "
                             f"{', '.join(n for n in known if n != 'ensemble')}.")
    return specs


def parse_members(text: str) -> list[dict[str, Any]]:
    """Member specs from the command-line form ``"small_cnn*3,mobilenet_v2,resnet18:width=32"``.

    Comma-separated networks; ``name:key=value:key=value`` sets builder options (values read
    as JSON when they parse, else as text); ``*N`` repeats a network N times.
    """
    specs: list[dict[str, Any]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        item, _, count = item.partition("*")
        name, *options = item.split(":")
        spec: dict[str, Any] = {"arch": name.strip()}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"Cannot read {option!r} in {text!r}: write options as name:key=value "
                                 "(e.g. resnet18:width=32).")
            try:
                spec[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                spec[key.strip()] = value.strip()
        try:
            n = int(count) if count else 1
        except ValueError:
            raise ValueError(f"Cannot read the count {count!r} in {text!r}: write name*N (e.g. small_cnn*3).") from None
        if n < 1:
            raise ValueError(f"A member count must be >= 1, got {n} in {text!r}.")
        specs += [dict(spec) for _ in range(n)]
    if not specs:
        raise ValueError(f"No networks in {text!r}; e.g. small_cnn*3,mobilenet_v2,resnet18:width=32.")
    return member_specs("", specs)
