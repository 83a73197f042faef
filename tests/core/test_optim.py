"""Optimisers and schedules by name: exact learning rates after known epochs."""

import math
import warnings

import pytest
import torch

from napari_cellnet.core.optim import (
    OPTIMIZERS,
    build_optimizer,
    build_scheduler,
    current_lr,
    step_scheduler,
)


@pytest.fixture(autouse=True)
def _quiet_scheduler_order_warning():
    # The schedules are stepped without training steps here; torch warns about the order.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        yield


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_takes_a_step(name):
    p = _params()
    opt = build_optimizer(name.upper(), p, lr=0.1, weight_decay=1e-4)
    (p[0] ** 2).sum().backward()
    opt.step()
    assert torch.all(p[0] < 1.0)  # every optimiser moves downhill on x^2
    assert current_lr(opt) == pytest.approx(0.1)


def test_sgd_momentum_is_passed():
    opt = build_optimizer("sgd", _params(), lr=0.15, momentum=0.2)
    assert opt.param_groups[0]["momentum"] == 0.2


def test_exponential_staircase():
    opt = build_optimizer("sgd", _params(), lr=0.15)
    s = build_scheduler("exponential", opt, epochs=10)
    for _ in range(3):
        step_scheduler(s)
    assert current_lr(opt) == pytest.approx(0.15 * 0.95**3)


def test_cosine_reaches_min_and_half_way():
    opt = build_optimizer("adamw", _params(), lr=1.0)
    s = build_scheduler("cosine", opt, epochs=10, min_lr=0.0)
    for _ in range(5):
        step_scheduler(s)
    assert current_lr(opt) == pytest.approx(0.5)
    for _ in range(5):
        step_scheduler(s)
    assert current_lr(opt) == pytest.approx(0.0, abs=1e-12)


def test_cosine_warmup():
    opt = build_optimizer("adamw", _params(), lr=1.0)
    s = build_scheduler("cosine", opt, epochs=12, warmup_epochs=2)
    assert current_lr(opt) == pytest.approx(1 / 3)
    step_scheduler(s)
    step_scheduler(s)
    assert current_lr(opt) == pytest.approx(1.0)
    for _ in range(5):
        step_scheduler(s)
    assert current_lr(opt) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))


def test_plateau_needs_metric_and_halves():
    opt = build_optimizer("adam", _params(), lr=1.0)
    s = build_scheduler("plateau", opt, epochs=10, patience=1, factor=0.5)
    with pytest.raises(ValueError, match="validation loss"):
        step_scheduler(s)
    for loss in (1.0, 1.0, 1.0):
        step_scheduler(s, loss)
    assert current_lr(opt) == pytest.approx(0.5)


def test_none_and_bad_names():
    opt = build_optimizer("adam", _params(), lr=0.01)
    assert build_scheduler("none", opt, epochs=3) is None
    step_scheduler(None)
    with pytest.raises(ValueError, match="choose one of"):
        build_optimizer("lion", _params(), lr=0.1)
    with pytest.raises(ValueError, match="choose one of"):
        build_scheduler("step", opt, epochs=3)
    with pytest.raises(ValueError, match="> 0"):
        build_optimizer("adam", _params(), lr=0)
