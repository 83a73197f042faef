"""GUI path vs CLI path on the same segmentation job, and how responsive napari stays meanwhile.

The CLI path drains :func:`napari_cellnet.segmentation.inference.segment` in the main thread
(``jobs.run_job``, exactly what ``napari-cellnet segment`` does). The GUI path clicks Run in
the Segment widget of a real (hidden) napari viewer: the same job in a napari thread
worker, plus putting Labels/probability/Tracks layers into the viewer. Runs alternate
(CLI, GUI, GUI without the thread fix, CLI, ...) so that load from other work on the
machine hits every path alike; the table reports medians.

"GUI without thread fix" starts the worker without ``torch.set_num_threads`` in the worker
thread (OpenMP's thread count is per thread, so a QThread can start with another value).

While the GUI job runs, a 20 ms QTimer measures the event loop: the longest gap between
two ticks is how long napari was frozen at worst.

Run under a display (``xvfb-run -a python benchmarks/bench_gui.py``); options: ``--runs``,
``--frames``, ``--model`` (default: the bundled demo model, else a seeded untrained light
U-Net, same cost per frame), ``--json`` to save the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _model(path: str | None) -> tuple[Path, str]:
    from napari_cellnet import datasets

    if path:
        return Path(path), Path(path).name
    try:
        return datasets.demo_model_path("segmentation"), "bundled demo model"
    except FileNotFoundError:
        import torch

        from napari_cellnet.models import build_model
        from napari_cellnet.models.checkpoint import save_checkpoint

        torch.manual_seed(0)
        config = {"window": 5, "in_channels": 1, "classes": 3, "preset": "light"}
        out = Path(tempfile.mkdtemp()) / "light_w5_untrained.pt"
        meta = {"window": 5, "in_channels": 1, "edge": "reflect", "classes": 3,
                "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
                "background_subtraction": False, "drift": False, "threshold": 0.5, "min_size": 30}
        save_checkpoint(out, build_model("temporal_unet", **config), "temporal_unet", config, "segmentation", meta)
        return out, "untrained light U-Net, window 5 (demo model missing)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, default=234,
                    help="Frame side: the C2C12 frames are tiled (mirrored) up to this size (default 234 = as is).")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None, help="Write the measurements to this JSON file.")
    args = ap.parse_args(argv)

    import napari
    import numpy as np
    import torch
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_cellnet import datasets
    from napari_cellnet.core.jobs import run_job
    from napari_cellnet.segmentation.inference import segment
    from napari_cellnet.widgets import MODEL_FILE, SegmentWidget

    model, model_name = _model(args.model)
    images = datasets.c2c12()[0][: args.frames]
    if args.size != images.shape[1]:
        reps = -(-args.size // images.shape[1])
        images = np.pad(images, [(0, 0), (0, reps * 234 - 234), (0, reps * 234 - 234)], mode="symmetric")
        images = np.ascontiguousarray(images[:, : args.size, : args.size])
    viewer = napari.Viewer(show=False)
    layer = viewer.add_image(images, name="C2C12")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    app = QApplication.instance()

    def pump_until(cond, timeout=600.0):
        t0 = time.perf_counter()
        while not cond():
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("benchmark step timed out")

    pump_until(lambda: not widget.busy)
    widget.image.value = layer
    widget.model.value = MODEL_FILE
    widget.checkpoint.value = str(model)
    widget.form.controls["device"].value = "cpu"
    pump_until(lambda: not widget.busy)
    args_job = widget.job_arguments()

    def cli_run() -> float:
        t0 = time.perf_counter()
        run_job(segment(images, str(model), args_job["params"], axes="TYX", device="cpu"))
        return time.perf_counter() - t0

    gaps: list[float] = []
    job_s: dict[bool, list[float]] = {}

    def gui_run(fix: bool) -> float:
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(20)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        loop = QEventLoop()
        t0 = time.perf_counter()
        if fix:
            worker = widget.run()
        else:
            widget._source = layer
            widget._args = args_job
            worker = widget.runner.start(lambda: widget.make_job(args_job), threads=None)
        # wait in a real Qt event loop (as napari does), not a Python polling loop that
        # would compete with the worker for the GIL
        worker.finished.connect(loop.quit)
        if widget.runner.running:
            loop.exec_()
        pump_until(lambda: not widget.busy)  # the result layers are in the viewer
        dt = time.perf_counter() - t0
        job_s.setdefault(fix, []).append(widget.runner.elapsed_s)
        timer.stop()
        if len(ticks) > 1:
            gaps.append(max(np.diff(ticks)))
        return dt

    import tifffile

    from napari_cellnet.cli.app import main as cli_main

    movie_path = Path(tempfile.mkdtemp()) / "movie.tif"
    tifffile.imwrite(movie_path, images, imagej=True, metadata={"axes": "TYX"})
    cli_out = movie_path.parent / "out"

    def cli_command() -> float:
        t0 = time.perf_counter()
        rc = cli_main(["segment", str(movie_path), "-m", str(model), "-o", str(cli_out), "--device", "cpu",
                       "--probabilities", "--overwrite", "-q"])
        if rc:
            raise RuntimeError(f"napari-cellnet segment failed with exit code {rc}")
        return time.perf_counter() - t0

    # warm-up (imports, first allocation, first layers) on every path; not counted
    cli_run()
    cli_command()
    gui_run(True)
    gaps.clear()
    job_s.clear()
    times: dict[str, list[float]] = {"CLI (main thread, run_job)": [], "GUI (Segment widget, worker)": [],
                                     "GUI without thread fix": [],
                                     "CLI command `napari-cellnet segment` (reads TIFF, writes outputs)": []}
    for _ in range(args.runs):
        times["CLI (main thread, run_job)"].append(cli_run())
        times["CLI command `napari-cellnet segment` (reads TIFF, writes outputs)"].append(cli_command())
        times["GUI (Segment widget, worker)"].append(gui_run(True))
        times["GUI without thread fix"].append(gui_run(False))
    viewer.close()

    base = statistics.median(times["CLI (main thread, run_job)"])
    print(f"Segmentation of {args.frames} C2C12 frames ({images.shape[1]} x {images.shape[2]}), {model_name}, "
          f"device cpu, tile {args_job['params'].tile}")
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads in the main thread), "
          f"median of {args.runs} alternating runs")
    print()
    print("| path | median s | min s | max s | ratio to CLI |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {min(ts):.2f} | {max(ts):.2f} | {med / base:.2f} |")
    print()
    print(f"Longest event-loop stall during GUI runs (20 ms timer): {max(gaps) * 1000:.0f} ms "
          f"(median over runs {statistics.median(gaps) * 1000:.0f} ms)")
    print()
    print("The job alone (worker start to its result, before the layers are added):")
    print()
    print("| path | median s | ratio to CLI |")
    print("| --- | ---: | ---: |")
    for fix, name in ((True, "GUI worker job"), (False, "GUI worker job without thread fix")):
        med = statistics.median(job_s[fix])
        print(f"| {name} | {med:.2f} | {med / base:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "job_s": {str(k): v for k, v in job_s.items()},
                                               "stalls_s": gaps, "frames": args.frames,
                                               "model": model_name}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
