"""Reproduce the shipped demo segmentation model (``resources/models/segmentation_demo.pt``).

The demo model is the "light" preset trained on the bundled C2C12 sample movie itself
(10 frames, 234x234 px): training targets are frames 0, 2, 4, 6, 8. The odd frames still
feed the temporal windows as neighbours but choose nothing: there is no validation (the
shipped checkpoint is the epoch with the lowest training loss) and the post-processing
threshold and minimum size are calibrated on the training frames, so the scores printed
for the odd frames are held-out scores. It is a demonstration that the README command
works out of the box, not a general C2C12 or phase-contrast model: half of the frames it
segments in the demo were its training targets.

Run from the repository root::

    nice -n 5 python scripts/train_segmentation_demo.py > benchmarks/results/demo_segmentation_output.txt 2>&1

The recipe is :func:`demo_params` (a test checks that the shipped model was trained with
exactly these parameters); with 1 torch thread the run is deterministic, so the same torch
build reproduces the file's weights bit for bit.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_cellnet.segmentation.training import TrainSegParams

ROOT = Path(__file__).resolve().parents[1]

RECIPE = dict(preset="light", window=5, frames=[0, 2, 4, 6, 8], val_frames=[], epochs=80, aug_rate=5,
              patch_size=64, batch_size=16, fg_fraction=0.8, lr=4e-3, calibrate="any", seed=0, threads=1,
              device="cpu")


def demo_params() -> TrainSegParams:
    """The training parameters of the shipped demo model."""
    from napari_cellnet.segmentation.training import TrainSegParams

    return TrainSegParams(**RECIPE)


def main() -> int:
    from napari_cellnet.core.jobs import run_job
    from napari_cellnet.core.metrics import segmentation_report
    from napari_cellnet.datasets import c2c12, c2c12_paths
    from napari_cellnet.segmentation.inference import segment
    from napari_cellnet.segmentation.training import train_segmentation

    images, labels = c2c12()
    params = demo_params()
    out = ROOT / "benchmarks" / "results" / "demo_segmentation"
    t0 = time.perf_counter()

    def show(ev: object) -> None:
        if getattr(ev, "kind", None) == "epoch":
            v = ev.val_metrics or {}  # type: ignore[attr-defined]
            val = f"  val SEG {v['seg']:.3f}  F1 {v['f1']:.3f}" if "seg" in v else ""
            print(f"epoch {ev.epoch:3d}  loss {ev.train_loss:.4f}{val}  "  # type: ignore[attr-defined]
                  f"{time.perf_counter() - t0:6.0f} s", flush=True)

    res = run_job(train_segmentation(images, labels, params, out, overwrite=True,
                                     sources={"images": str(c2c12_paths()[0].name), "labels": str(c2c12_paths()[1].name)}),
                  on_event=show)
    print(f"trained {res.epochs_done} epochs in {res.wall_s / 60:.1f} min; best {res.best}")
    seg = run_job(segment(images, res.best_path, device="cpu", threads=1))
    cal = res.calibration or {}
    print(f"post-processing calibrated on the training frames: threshold {cal.get('threshold')}, min size "
          f"{cal.get('min_size')} (training-frame SEG {cal.get('default_seg', float('nan')):.3f} at 0.5 / 30 -> "
          f"{cal.get('seg', float('nan')):.3f})")
    for name, frames in (("odd (held-out) frames", [1, 3, 5, 7, 9]), ("even (training) frames", params.frames)):
        rep = segmentation_report(seg.labels[frames], labels[frames].astype(np.int32))
        print(f"inference on {name}: SEG {rep['seg']:.3f}, pixel F1 {rep['f1']:.3f}, AP@0.5 {rep['ap']:.3f}")
    dest = ROOT / "src" / "napari_cellnet" / "resources" / "models" / "segmentation_demo.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(res.best_path, tmp)
    tmp.chmod(0o644)
    tmp.replace(dest)
    print(f"demo model written to {dest} ({dest.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
