"""Temporal U-Net: presets, shapes, config errors, receptive field."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_cellnet.models import build_model  # noqa: E402
from napari_cellnet.models.unet import TemporalUNet, unet_preset, unet_presets  # noqa: E402


def test_presets_listed_and_unknown_names_them():
    assert unet_presets() == ["light", "stemnet"]
    with pytest.raises(ValueError, match="light, stemnet"):
        unet_preset("fast")


def test_stemnet_preset_is_the_thesis_configuration():
    cfg = unet_preset("stemnet")
    assert cfg["depth"] == 7 and cfg["kernel_size"] == 5 and cfg["base_width"] == 16
    assert cfg["dropout"] == 0.25 and cfg["skip"] == "concat" and cfg["stem_stride"] == 1
    net = build_model("temporal_unet", window=5, in_channels=1, classes=2, preset="stemnet")
    assert net.widths == [16, 32, 64, 128, 256, 512, 1024]
    assert net.size_divisor == 64
    # 5x5 convolutions, 2x2 stride-2 transposed convolutions, 1x1 head
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {m.kernel_size for m in convs} == {(5, 5), (1, 1)}
    ups = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 6 and all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in ups)
    x = torch.randn(1, 5, 64, 64)
    assert net.eval()(x).shape == (1, 2, 64, 64)


@pytest.mark.parametrize("window,in_channels,classes", [(1, 1, 2), (3, 2, 3), (5, 1, 3)])
def test_light_shapes(window, in_channels, classes):
    net = build_model("temporal_unet", window=window, in_channels=in_channels, classes=classes).eval()
    assert net.size_divisor == 16
    x = torch.randn(2, window * in_channels, 48, 80)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, classes, 48, 80)
    assert torch.isfinite(y).all()


def test_light_is_cheap_at_1024():
    from torch.utils.flop_counter import FlopCounterMode

    net = build_model("temporal_unet", window=5).eval()
    assert sum(p.numel() for p in net.parameters()) < 300_000
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.randn(1, 5, 128, 128))
    # scales with area: x64 for 1024^2; the design budget is < 10 GFLOP per 1024^2 frame
    assert fc.get_total_flops() * 64 < 10e9


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"window": 4}, "odd"),
        ({"classes": 4}, "classes must be 2"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"norm": "layer"}, "norm must be one of"),
        ({"dropout": 1.0}, "dropout"),
        ({"stem_stride": 3}, "stem_stride"),
        ({"wdith": 3}, "Unknown temporal_unet option"),
    ],
)
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model("temporal_unet", **bad)


def test_wrong_input_is_explained():
    net = build_model("temporal_unet", window=5).eval()
    with pytest.raises(ValueError, match="expects 5 input channels"):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.randn(1, 5, 40, 32))


def test_receptive_field_bounds_the_influence_of_a_pixel():
    """A change at one input pixel must not reach outputs farther than rf // 2 away."""
    torch.manual_seed(0)
    net = TemporalUNet(window=1, depth=3, base_width=4, norm="none").eval()
    rf = net.receptive_field
    size = 2 * rf + 32 - (2 * rf + 32) % net.size_divisor
    x = torch.randn(1, 1, size, size)
    x2 = x.clone()
    c = size // 2
    x2[0, 0, c, c] += 100.0
    with torch.no_grad():
        d = (net(x) - net(x2)).abs()[0].amax(0)
    ys, xs = torch.nonzero(d > 1e-6, as_tuple=True)
    reach = int(max((ys - c).abs().max(), (xs - c).abs().max()))
    assert 0 < reach <= rf // 2


def test_fuse_batchnorm_keeps_outputs():
    torch.manual_seed(0)
    net = build_model("temporal_unet", window=3, depth=3, base_width=8).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
        net.fuse_batchnorm()
        out = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert torch.allclose(ref, out, atol=1e-4)
    with pytest.raises(RuntimeError, match="eval"):
        build_model("temporal_unet").fuse_batchnorm()
