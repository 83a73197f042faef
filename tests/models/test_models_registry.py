"""Every registered model runs forward and backward on a tiny input.

Generic on purpose: a model provides ``example_input(batch=2)``; otherwise the input is
chosen by kind (classification: (2, 3, 64, 64)).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_cellnet.models import available_models, build_model, model_kind  # noqa: E402


def _tiny_input(net, kind: str):
    if hasattr(net, "example_input"):
        return net.example_input(batch=2)
    if kind == "classification":
        return torch.randn(2, 3, 64, 64)
    pytest.fail(f"segmentation model {type(net).__name__} has no example_input hook")


def test_registry_is_not_empty_and_unknown_names_are_listed():
    names = available_models()
    assert "temporal_unet" in names
    with pytest.raises(ValueError, match="temporal_unet"):
        build_model("no_such_model")


@pytest.mark.parametrize("name", available_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    kind = model_kind(name)
    net = build_model(name)
    net.train()
    x = _tiny_input(net, kind)
    out = net(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    assert out.shape[0] == 2
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "some parameters got no gradient"
    assert any(float(g.abs().sum()) > 0 for g in grads)
    if kind == "segmentation":
        assert out.shape[-2:] == x.shape[-2:]
