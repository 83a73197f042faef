"""Fixtures for the widget tests: isolated persisted settings, tiny real checkpoints, helpers.

Widget tests run the real engines on small crops of the packaged sample data. The
segmentation checkpoint here is a freshly initialised light U-Net (seeded): its labels are
not meant to be good, only real output of the real job, so shapes, dtypes, geometry,
metadata, Stop and errors can be checked exactly; GUI-vs-engine equality is checked
against the same job run without the GUI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    # magicgui persist=True writes to the user cache dir; keep tests off the user's settings
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _no_session_models():
    # models trained by one test must not become the next widget's default model
    from napari_cellnet.widgets import _common as common

    saved = {k: list(v) for k, v in common.MODELS.paths.items()}
    for v in common.MODELS.paths.values():
        v.clear()
    yield
    common.MODELS.paths.update(saved)


@pytest.fixture(scope="session")
def seg_checkpoint(tmp_path_factory) -> Path:
    """A window-3, 3-class light temporal U-Net checkpoint with seeded random weights."""
    import torch

    from napari_cellnet.models import build_model
    from napari_cellnet.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = {"window": 3, "in_channels": 1, "classes": 3, "preset": "light"}
    net = build_model("temporal_unet", **config)
    meta = {"window": 3, "in_channels": 1, "edge": "reflect",
            "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
            "background_subtraction": False, "drift": False, "class_names": ["background", "cell", "boundary"],
            "classes": 3, "threshold": 0.5, "min_size": 10, "preset": "light"}
    path = tmp_path_factory.mktemp("models") / "seg_w3.pt"
    save_checkpoint(path, net, "temporal_unet", config, "segmentation", meta)
    return path


@pytest.fixture(scope="session")
def c2c12_crop() -> tuple[np.ndarray, np.ndarray]:
    """The first 4 frames of the C2C12 sample, cropped to 96 x 96 (images uint8, labels uint16)."""
    from napari_cellnet import datasets

    images, labels = datasets.c2c12()
    return images[:4, 40:136, 40:136].copy(), labels[:4, 40:136, 40:136].copy()


@pytest.fixture
def notifications():
    """Every napari notification dispatched during the test (list of Notification)."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(widget)``: wait until the widget's job and helper workers have finished."""

    def wait(widget, timeout: int = 60000) -> None:
        qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)

    return wait


def error_messages(seen) -> list[str]:
    """The messages of the error notifications among ``seen``."""
    return [str(n.message) for n in seen if str(getattr(n.severity, "value", n.severity)).lower() == "error"]


@pytest.fixture
def errors(notifications):
    """``errors()``: messages of the error notifications shown so far in this test."""
    return lambda: error_messages(notifications)


def _classifier(path: Path, channels: str, class_names: list[str]) -> Path:
    import torch

    from napari_cellnet.classification.data import Preprocessing
    from napari_cellnet.models import build_model
    from napari_cellnet.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    n_ch = 3 if channels == "rgb" else 1
    config = {"in_channels": n_ch, "n_classes": len(class_names), "width": 8, "blocks": 2}
    net = build_model("small_cnn", **config)
    prep = Preprocessing(size=32, channels=channels)
    meta = {"class_names": class_names, "input_size": 32, "in_channels": n_ch, "preprocessing": prep.to_dict(),
            "crop_size": 32, "mask_neighbours": True}
    save_checkpoint(path, net, "small_cnn", config, "classification", meta)
    return path


@pytest.fixture(scope="session")
def gray_classifier(tmp_path_factory) -> Path:
    """A grayscale 2-class small CNN (seeded random weights) for objects of the C2C12 movie."""
    return _classifier(tmp_path_factory.mktemp("cls") / "gray.pt", "gray", ["round", "elongated"])


@pytest.fixture(scope="session")
def rgb_classifier(tmp_path_factory) -> Path:
    """An RGB 4-class small CNN (seeded random weights) with the HuSHeM class names."""
    return _classifier(tmp_path_factory.mktemp("cls") / "rgb.pt", "rgb",
                       ["01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous"])
