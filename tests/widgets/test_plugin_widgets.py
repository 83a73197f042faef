"""The widgets as napari sees them: manifest contributions, menus, lazy torch, plugin dock, demo command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.gui

WIDGETS = {
    "Segment time-lapse": "SegmentWidget",
    "Train segmentation": "TrainSegmentationWidget",
    "Classify cells": "ClassifyWidget",
    "Train classifier": "TrainClassifierWidget",
    "Evaluate": "EvaluateWidget",
}


def test_manifest_contributes_every_widget_under_the_layer_menus():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-cellnet")
    names = {w.display_name for w in manifest.contributions.widgets}
    assert names == set(WIDGETS)
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    for w in manifest.contributions.widgets:
        module, attr = commands[w.command].split(":")
        assert attr == WIDGETS[w.display_name] and module == "napari_cellnet.widgets"
    menus = manifest.contributions.menus
    segment = {m.command for m in menus["napari/layers/segment"]}
    classify = {m.command for m in menus["napari/layers/classify"]}
    assert {"napari-cellnet.segment_widget", "napari-cellnet.train_segmentation_widget"} <= segment
    assert {"napari-cellnet.classify_widget", "napari-cellnet.train_classifier_widget"} <= classify
    # the reader, writer and sample data are still there
    assert manifest.contributions.readers and manifest.contributions.writers
    assert len(manifest.contributions.sample_data) == 2


def test_importing_the_widgets_does_not_import_torch():
    code = (
        "import sys\n"
        "import napari_cellnet.widgets as w\n"
        "for name in w.__all__:\n"
        "    getattr(w, name)\n"
        "from napari_cellnet import cli\n"
        "cli.build_parser()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


@pytest.mark.parametrize("display_name", list(WIDGETS))
def test_each_widget_opens_from_the_plugins_menu(make_napari_viewer, qtbot, display_name):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.uint8), name="movie")
    viewer.add_labels(np.zeros((3, 32, 32), np.int32), name="cells")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cellnet", display_name)
    assert type(widget).__name__ == WIDGETS[display_name]
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    if hasattr(widget, "image"):
        assert widget.image.value is viewer.layers["movie"]  # the layer pickers follow the viewer


def test_headless_demo_writes_labels_tracks_metrics_and_screenshot(seg_checkpoint, tmp_path):
    from napari_cellnet.core import io

    out = tmp_path / "demo"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from napari_cellnet.cli.app import main; sys.exit(main(sys.argv[1:]))",
         "demo", "--headless", "-o", str(out), "--model", str(seg_checkpoint), "--frames", "4", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["labels.tif", "metrics.json", "screenshot.png", "tracks.csv"]
    labels = io.read_stack(out / "labels.tif").data
    assert labels.shape == (4, 234, 234)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames"] == 4 and summary["frames_done"] == [0, 1, 2, 3]
    assert summary["metrics"]["frames"] == 4 and len(summary["metrics"]["per_frame"]) == 4
    assert 0.0 <= summary["metrics"]["seg"] <= 1.0
    assert summary["parameters"]["checkpoint"] == str(seg_checkpoint)
    tracks = io.read_table(out / "tracks.csv")
    assert list(tracks) == ["track_id", "t", "y", "x"]
    assert len(tracks["t"]) == sum(summary["objects_per_frame"])
    from skimage.io import imread

    shot = imread(out / "screenshot.png")
    assert shot.ndim == 3 and shot.shape[0] > 400 and shot.shape[1] > 600 and shot.std() > 5
    assert "SEG" in proc.stdout


def test_demo_with_a_missing_model_fails_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from napari_cellnet.cli.app import main; sys.exit(main(sys.argv[1:]))",
         "demo", "--headless", "-o", str(tmp_path / "o"), "--model", str(tmp_path / "missing.pt")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Model file not found" in proc.stderr and "Traceback" not in proc.stderr
