"""Temporal U-Net: frames t-k..t+k stacked as input channels predict the mask of frame t.

This is StemNet's idea (Network_1 sees one frame, Network_5 five) in one configurable
module, so the thesis network and a fast everyday network are the same code with two
configs (:func:`unet_preset`):

``"stemnet"``
    The thesis configuration: 7 levels (1024 -> 16 px), one 5x5 convolution + ReLU per
    level, 16 features doubling per level, 2x2 max-pool, 2x2 stride-2 transposed
    convolutions, skip concatenation, dropout 0.25, 1x1 head. Faithful, but most of its
    cost sits in the 5x5 convolutions at full resolution (see ``docs/performance.md``).

``"light"`` (the default)
    Designed for FLOPs, not for parameter count: a stride-2 3x3 stem so that no
    convolution runs at full resolution, one 3x3 convolution per level with batch norm,
    widths 16-32-64-128 over 4 levels (512 -> 64 px for a 1024 frame), skips added
    instead of concatenated (halves the decoder), and a 1x1 head whose logits are
    bilinearly upsampled x2 back to the input size. About 3.3 GMAC per 1024x1024 frame
    against StemNet's ~115 GMAC (both measured with ``FlopCounterMode`` in
    ``benchmarks/bench_segment.py``).

Input ``(B, window * in_channels, H, W)`` float32 with ``H`` and ``W`` multiples of the
module's ``size_divisor`` (inference pads); output logits ``(B, classes, H, W)``.
``classes=2`` is background/cell, ``classes=3`` background/cell/boundary.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_cellnet.models import register

_PRESETS: dict[str, dict[str, Any]] = {
    "light": {
        "depth": 4,
        "base_width": 16,
        "kernel_size": 3,
        "convs_per_level": 1,
        "dropout": 0.0,
        "norm": "batch",
        "stem_stride": 2,
        "skip": "add",
        "upsample": "transpose",
        "max_width": 256,
    },
    "stemnet": {
        "depth": 7,
        "base_width": 16,
        "kernel_size": 5,
        "convs_per_level": 1,
        "dropout": 0.25,
        "norm": "none",
        "stem_stride": 1,
        "skip": "concat",
        "upsample": "transpose",
        "max_width": 1024,
    },
}

_NORMS = ("batch", "group", "instance", "none")


def unet_preset(name: str) -> dict[str, Any]:
    """The config of a named preset, to pass as ``temporal_unet(window=..., **preset)``.

    Parameters
    ----------
    name : str
        ``"light"`` (fast default) or ``"stemnet"`` (thesis configuration).

    Returns
    -------
    dict
        A fresh copy of the architecture keywords (window, in_channels and classes are
        not included: they depend on the data).

    Raises
    ------
    ValueError
        For an unknown preset, listing the valid names.
    """
    key = str(name).strip().lower()
    if key not in _PRESETS:
        raise ValueError(f"Unknown U-Net preset {name!r}. Valid presets: {', '.join(sorted(_PRESETS))}")
    return dict(_PRESETS[key])


def unet_presets() -> list[str]:
    """Names of the presets :func:`unet_preset` knows."""
    return sorted(_PRESETS)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class _ConvBlock(nn.Sequential):
    """``n`` times (conv k x k, norm, ReLU), then dropout (StemNet applied it on the convolutions)."""

    def __init__(self, cin: int, cout: int, k: int, n: int, norm: str, dropout: float, stride: int = 1):
        layers: list[nn.Module] = []
        for i in range(n):
            s = stride if i == 0 else 1
            layers.append(nn.Conv2d(cin if i == 0 else cout, cout, k, stride=s, padding=k // 2, bias=norm == "none"))
            layers.append(_norm(norm, cout))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class TemporalUNet(nn.Module):
    """A U-Net over a temporal window of frames stacked as channels.

    Parameters
    ----------
    window : int
        Odd number of frames in the input window (1 = StemNet's Network_1, 5 = Network_5).
    in_channels : int
        Channels per frame (1 for phase contrast / bright field).
    classes : int
        2 (background, cell) or 3 (background, cell, boundary).
    depth : int
        Number of resolution levels (the thesis used 7: 1024 -> 16).
    base_width : int
        Features at the first level; they double per level up to ``max_width``.
    kernel_size : int
        Odd convolution size (3 or 5).
    convs_per_level : int
        Convolutions per level in each direction.
    dropout : float
        Spatial dropout after each level's convolutions (0 to disable).
    norm : {"batch", "group", "instance", "none"}
        Normalisation after each convolution.
    stem_stride : {1, 2, 4}
        Stride of the first convolution; the logits are upsampled bilinearly by the same
        factor. 2 keeps every convolution off the full-resolution grid.
    skip : {"concat", "add"}
        How the decoder merges the encoder's features of the same level.
    upsample : {"transpose", "bilinear"}
        2x2 stride-2 transposed convolution (StemNet) or bilinear + 1x1 convolution.
    max_width : int
        Cap on the number of features per level.
    """

    def __init__(
        self,
        window: int = 5,
        in_channels: int = 1,
        classes: int = 3,
        depth: int = 4,
        base_width: int = 16,
        kernel_size: int = 3,
        convs_per_level: int = 1,
        dropout: float = 0.0,
        norm: str = "batch",
        stem_stride: int = 2,
        skip: str = "add",
        upsample: str = "transpose",
        max_width: int = 256,
    ) -> None:
        super().__init__()
        _check_config(window, in_channels, classes, depth, base_width, kernel_size, convs_per_level,
                      dropout, norm, stem_stride, skip, upsample, max_width)
        self.window = int(window)
        self.in_channels = int(in_channels)
        self.classes = int(classes)
        self.stem_stride = int(stem_stride)
        self.skip_mode = skip
        widths = [min(base_width * 2**i, max_width) for i in range(depth)]
        self.widths = widths
        self.size_divisor = int(stem_stride * 2 ** (depth - 1))
        k, n = kernel_size, convs_per_level
        cin = window * in_channels
        self.down = nn.ModuleList()
        for i, w in enumerate(widths):
            stride = stem_stride if i == 0 else 1
            self.down.append(_ConvBlock(cin, w, k, n, norm, dropout, stride=stride))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(depth - 1, 0, -1):
            wi, wo = widths[i], widths[i - 1]
            if upsample == "transpose":
                self.up.append(nn.ConvTranspose2d(wi, wo, 2, stride=2))
            else:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                             nn.Conv2d(wi, wo, 1)))
            merged = 2 * wo if skip == "concat" else wo
            self.merge.append(_ConvBlock(merged, wo, k, n, norm, dropout))
        self.head = nn.Conv2d(widths[0], classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                # He initialisation: StemNet's std sqrt(2 / N) for ReLU networks.
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for the centre frame.

        Parameters
        ----------
        x : Tensor, shape (B, window * in_channels, H, W)
            ``H`` and ``W`` multiples of :attr:`size_divisor`.

        Returns
        -------
        Tensor, shape (B, classes, H, W)
        """
        h, w = x.shape[-2:]
        if x.shape[1] != self.window * self.in_channels:
            raise ValueError(
                f"The network expects {self.window * self.in_channels} input channels "
                f"(window {self.window} x {self.in_channels} channel(s) per frame), got {x.shape[1]}."
            )
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"Input size {h}x{w} is not a multiple of {self.size_divisor}; pad it "
                "(napari_cellnet.segmentation.inference pads automatically)."
            )
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = up(x)
            x = torch.cat([x, skip], dim=1) if self.skip_mode == "concat" else x + skip
            x = merge(x)
        x = self.head(x)
        if self.stem_stride > 1:
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x

    @property
    def receptive_field(self) -> int:
        """Theoretical receptive field in input pixels (odd).

        An output pixel farther than ``receptive_field // 2`` from a tile's edge does not
        see that edge's padding; tiled inference uses this as its blending margin, which
        is what makes tiled output equal untiled output.
        """
        rf, jump = 1, 1
        first = self.down[0]
        assert isinstance(first, nn.Sequential)
        conv0 = first[0]
        assert isinstance(conv0, nn.Conv2d)
        k = int(conv0.kernel_size[0])
        convs = sum(isinstance(m, nn.Conv2d) for m in first)
        for i in range(len(self.down)):
            if i > 0:  # 2x2 max-pool
                rf += jump
                jump *= 2
            for c in range(convs):
                rf += (k - 1) * jump
                if i == 0 and c == 0:
                    jump *= self.stem_stride
        for _ in range(len(self.up)):
            jump //= 2
            rf += jump  # 2x2 transposed conv (or bilinear) at the finer grid
            rf += convs * (k - 1) * jump
        if self.stem_stride > 1:
            rf += 2 * self.stem_stride  # bilinear upsampling of the logits
        return int(rf) | 1

    def fuse_batchnorm(self) -> TemporalUNet:
        """Fold every eval-mode BatchNorm into the convolution before it (in place; inference only).

        Same outputs up to float rounding, one pass less over each feature map: faster
        and less peak memory on the CPU. Call on a network in eval mode.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if self.training:
            raise RuntimeError("fuse_batchnorm() is for inference: call net.eval() first.")
        for block in [*self.down, *self.merge]:
            assert isinstance(block, nn.Sequential)
            layers = list(block)
            for i in range(len(layers) - 1):
                conv, bn = layers[i], layers[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    block[i] = fuse_conv_bn_eval(conv, bn)
                    block[i + 1] = nn.Identity()
        return self

    def example_input(self, batch: int = 2, size: int | None = None) -> torch.Tensor:
        """A small random input of the right shape (used by the registry test)."""
        s = size or self.size_divisor * 2
        return torch.randn(batch, self.window * self.in_channels, s, s)


def _check_config(window: int, in_channels: int, classes: int, depth: int, base_width: int,
                  kernel_size: int, convs_per_level: int, dropout: float, norm: str,
                  stem_stride: int, skip: str, upsample: str, max_width: int) -> None:
    if int(window) < 1 or int(window) % 2 == 0:
        raise ValueError(f"window must be an odd number of frames (1, 3, 5, ...), got {window}.")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
    if int(classes) not in (2, 3):
        raise ValueError(f"classes must be 2 (background/cell) or 3 (background/cell/boundary), got {classes}.")
    if not 1 <= int(depth) <= 9:
        raise ValueError(f"depth must be between 1 and 9 levels, got {depth}.")
    if int(base_width) < 1 or int(max_width) < int(base_width):
        raise ValueError(f"base_width must be >= 1 and <= max_width, got {base_width} and {max_width}.")
    if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
        raise ValueError(f"kernel_size must be odd (3 or 5), got {kernel_size}.")
    if int(convs_per_level) < 1:
        raise ValueError(f"convs_per_level must be >= 1, got {convs_per_level}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}.")
    if int(stem_stride) not in (1, 2, 4):
        raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}.")
    if skip not in ("concat", "add"):
        raise ValueError(f"skip must be 'concat' or 'add', got {skip!r}.")
    if upsample not in ("transpose", "bilinear"):
        raise ValueError(f"upsample must be 'transpose' or 'bilinear', got {upsample!r}.")


@register("temporal_unet", "segmentation")
def temporal_unet(
    window: int = 5,
    in_channels: int = 1,
    classes: int = 3,
    preset: str | None = None,
    **config: Any,
) -> TemporalUNet:
    """Build a :class:`TemporalUNet`; ``preset`` fills in the architecture, ``config`` overrides.

    Without ``preset`` the ``"light"`` preset's values are the defaults. Store the full
    config (``net_config(net)`` or the dict you passed) in checkpoints so they rebuild.
    """
    arch = unet_preset(preset or "light")
    unknown = set(config) - set(arch)
    if unknown:
        raise ValueError(
            f"Unknown temporal_unet option(s) {sorted(unknown)}. Valid: window, in_channels, classes, preset, "
            f"{', '.join(sorted(arch))}."
        )
    arch.update(config)
    return TemporalUNet(window=window, in_channels=in_channels, classes=classes, **arch)
