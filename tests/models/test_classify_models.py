"""Classification models: every registered one runs forward and backward; pretrained loading."""

import pytest
import torch

from napari_cellnet.models import available_models, build_model, model_kind
from napari_cellnet.models.classifier import ACTIVATIONS, load_pretrained

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_has_three_classifiers():
    names = available_models("classification")
    assert {"small_cnn", "resnet18", "mobilenet_v2"} <= set(names)
    assert all(model_kind(n) == "classification" for n in names)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("channels,size", [(1, 32), (3, 48)])
def test_forward_backward(name, channels, size):
    torch.manual_seed(0)
    cfg = {"width": 8} if name != "mobilenet_v2" else {"width_mult": 0.25}
    net = build_model(name, in_channels=channels, n_classes=5, **cfg)
    x = torch.randn(2, channels, size, size)
    out = net(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activations(act):
    net = build_model("small_cnn", in_channels=1, n_classes=2, width=4, blocks=2, activation=act)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 2)


def test_bad_config():
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_model("small_cnn", n_classes=1)
    with pytest.raises(ValueError, match="activation"):
        build_model("small_cnn", activation="swish2")
    with pytest.raises(ValueError, match="stem"):
        build_model("resnet18", stem="huge")


def test_pretrained_copies_matching_weights_and_skips_head(tmp_path):
    src = build_model("small_cnn", in_channels=3, n_classes=4, width=8)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    dst = build_model("small_cnn", in_channels=3, n_classes=2, width=8, pretrained=str(path))
    w_src = src.state_dict()
    w_dst = dst.state_dict()
    assert torch.equal(w_dst["features.0.0.weight"], w_src["features.0.0.weight"])
    report = load_pretrained(build_model("small_cnn", in_channels=3, n_classes=2, width=8), path)
    assert report["skipped"] == ["head.fc.bias", "head.fc.weight"]
    with pytest.raises(ValueError, match="No weight"):
        load_pretrained(build_model("resnet18", width=8), path)
    with pytest.raises(FileNotFoundError):
        load_pretrained(dst, tmp_path / "missing.pt")


def test_parse_members_and_mixed_ensemble_layout():
    from napari_cellnet.models.classifier import Ensemble, parse_members

    specs = parse_members("small_cnn*2, mobilenet_v2:width_mult=0.25,resnet18:width=8:stem=small")
    assert specs == [{"arch": "small_cnn"}, {"arch": "small_cnn"}, {"arch": "mobilenet_v2", "width_mult": 0.25},
                     {"arch": "resnet18", "width": 8, "stem": "small"}]
    net = build_model("ensemble", in_channels=1, n_classes=3, members=specs[1:])
    assert isinstance(net, Ensemble) and [type(m).__name__ for m in net.members] == ["SmallCNN", "MobileNetV2",
                                                                                      "ResNet18"]
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert len(build_model("ensemble", arch="small_cnn", members=2, width=4).members) == 2  # count form
    for bad, match in [("small_cnn*0", "count must be >= 1"), ("small_cnn*x", "Cannot read the count"),
                       ("resnet18:width", "key=value"), ("vgg16", "Unknown ensemble member 'vgg16'"),
                       ("ensemble", "cannot be ensembles"), (" , ", "No networks")]:
        with pytest.raises(ValueError, match=match):
            parse_members(bad)


def test_half_precision_checkpoint_loads_into_float32(tmp_path):
    from napari_cellnet.models.checkpoint import load_checkpoint, save_checkpoint

    cfg = {"in_channels": 1, "n_classes": 2, "width": 16, "blocks": 3}
    net = build_model("small_cnn", **cfg).eval()
    full = save_checkpoint(tmp_path / "full.pt", net, "small_cnn", cfg, "classification")
    half = save_checkpoint(tmp_path / "half.pt", net, "small_cnn", cfg, "classification", {"x": 1}, half=True)
    ck = load_checkpoint(half)
    assert ck.meta == {"x": 1, "weights_dtype": "float16"}
    assert {v.dtype for v in ck.state_dict.values()} == {torch.float16, torch.int64}  # BN counters stay ints
    assert half.stat().st_size < 0.7 * full.stat().st_size
    rebuilt = ck.build()
    assert {p.dtype for p in rebuilt.parameters()} == {torch.float32}
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x), atol=2e-2, rtol=1e-2)
