"""The demo's GUI part: open the C2C12 sample in a napari viewer, run the Segment widget on
it with the bundled demo model and, headless, write labels, tracks, metrics and a
screenshot. ``napari-cellnet demo`` (:mod:`napari_cellnet.cli.demo`) calls this; it lives
in ``widgets/`` because it drives Qt's event loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def _pump(ms: int = 20) -> None:
    """Run the Qt event loop for ``ms`` milliseconds (no Python polling loop competing with
    the worker thread for the GIL)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()


def _wait(runner: Any, timeout: float, widget: Any = None) -> bool:
    """Run the event loop until the widget's job (and its result layers) are done; False on timeout."""
    t0 = time.perf_counter()
    while runner.running or (widget is not None and widget.busy):
        _pump(20)
        if time.perf_counter() - t0 > timeout:
            return False
    _pump(1)
    return True


def build_demo(model: str | None = None, frames: int | None = None, show: bool = True) -> tuple[Any, Any, Any]:
    """A viewer with the C2C12 sample and a docked Segment widget set up for the demo.

    Returns
    -------
    viewer : napari.Viewer
    widget : SegmentWidget
    ground_truth : ndarray, shape (T, Y, X)
        The sample's own labels (for the metrics).
    """
    import napari

    from napari_cellnet import datasets
    from napari_cellnet.widgets import SegmentWidget
    from napari_cellnet.widgets import _common as common

    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"Model file not found: {model}. Give an existing .pt checkpoint or leave --model out.")
    if model is None:
        datasets.demo_model_path("segmentation")  # a missing demo model fails here, with its path
    images, labels = datasets.c2c12()
    if frames is not None:
        if frames < 1:
            raise ValueError(f"--frames must be at least 1, got {frames}.")
        images, labels = images[:frames], labels[:frames]
    viewer = napari.Viewer(title="napari-cellnet demo: C2C12 time-lapse", show=show)
    meta = {"source": "napari-cellnet sample data", "attribution": datasets.C2C12_ATTRIBUTION}
    viewer.add_labels(labels, name="C2C12 ground truth", metadata=meta, visible=False, opacity=0.5)
    image = viewer.add_image(images, name="C2C12 phase contrast", metadata=meta)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment (napari-cellnet)", area="right")
    widget.image.value = image
    if model is not None:
        widget.model.value = common.FILE
        widget.checkpoint.value = str(model)
    else:
        widget.model.value = common.DEMO
    return viewer, widget, labels


def wait_probe(widget: Any, device: str = "auto", timeout: float = 120.0) -> None:
    """Wait until the widget has detected the devices and read the model, then pick ``device``."""
    t0 = time.perf_counter()
    while (widget._probe_worker is not None) and time.perf_counter() - t0 < timeout:
        _pump(20)
    _pump(1)
    choices = list(widget.form.controls["device"].choices)
    if device not in choices:
        raise ValueError(f"Device {device!r} is not available here; choose one of {', '.join(choices)}.")
    widget.form.controls["device"].value = device


def run_headless(out_dir: str | Path, model: str | None = None, device: str = "auto", frames: int | None = None,
                 timeout: float = 600.0) -> dict[str, Any]:
    """The headless demo; returns what was written (paths, metrics, seconds)."""
    import numpy as np

    from napari_cellnet.core import io, metrics

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer, widget, gt = build_demo(model, frames, show=False)
    try:
        wait_probe(widget, device)
        t0 = time.perf_counter()
        worker = widget.run()
        if worker is None:
            raise ValueError(f"The Segment widget refused to run: {widget.status.value}")
        if not _wait(widget.runner, timeout, widget):
            widget.runner.stop()
            _wait(widget.runner, 60)
            raise TimeoutError(f"The demo did not finish within {timeout:.0f} s.")
        seconds = time.perf_counter() - t0
        if widget.runner.last_error is not None or widget.result is None:
            raise ValueError(f"Segmentation failed: {widget.runner.last_error}")
        result = widget.result
        labels = np.asarray(widget.outputs["labels"].data)
        io.write_labels(out / "labels.tif", labels, axes="TYX")
        tracks = np.asarray(result.tracks)
        io.write_table(out / "tracks.csv", {
            "track_id": tracks[:, 0].astype(int).tolist() if len(tracks) else [],
            "t": tracks[:, 1].astype(int).tolist() if len(tracks) else [],
            "y": tracks[:, 2].round(3).tolist() if len(tracks) else [],
            "x": tracks[:, 3].round(3).tolist() if len(tracks) else [],
        })
        report = metrics.segmentation_report(labels, np.asarray(gt))
        params = {k: v for k, v in result.params.items() if k != "config"}
        summary = {
            "data": "C2C12 sample (napari_cellnet.datasets.c2c12), compared with its own instance labels",
            "frames": int(labels.shape[0]),
            "frames_done": list(result.frames_done),
            "objects_per_frame": [int(len(np.unique(f)) - 1) for f in labels],
            "seconds_gui_job": round(seconds, 3),
            "parameters": params,
            "metrics": report,
        }
        io.write_json(out / "metrics.json", summary)
        viewer.layers["C2C12 ground truth"].visible = False
        viewer.dims.set_current_step(0, 0)
        _screenshot(viewer, out / "screenshot.png")
        return {"out_dir": str(out), "metrics": report, "seconds": seconds,
                "files": sorted(p.name for p in out.iterdir())}
    finally:
        viewer.close()


def _screenshot(viewer: Any, path: Path) -> None:
    viewer.window.resize(1400, 900)
    _pump(100)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
