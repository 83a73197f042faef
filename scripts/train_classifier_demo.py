"""Reproduce the shipped HuSHeM demo classifier (``resources/models/classification_demo.pt``).

The recipe is the benchmark's: small_cnn, 64 px RGB input from the central 80 % of each
image, strong rotation/flip/intensity augmentation at 3x, AdamW + cosine, label smoothing
0.1, 30 epochs, batch 32, seed 0. The script runs the stratified 5-fold CV (printing the
table quoted in docs/classification.md), then trains the shipped model on all 216 images
with the same recipe and copies it into the package::

    nice -n 5 python scripts/train_classifier_demo.py > benchmarks/results/demo_small_cnn.log 2>&1

About 25 min on 2 idle CPU cores with 1 torch thread, and much longer on a busy machine; bit-for-bit equality with the
shipped file needs the same torch build and thread count.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_classify  # noqa: E402

RECIPE = ["--arch", "small_cnn", "--epochs", "30", "--folds", "5", "--size", "64", "--crop", "0.8",
          "--channels", "rgb", "--aug-rate", "3", "--lr", "3e-3", "--batch-size", "32", "--tta", "8",
          "--seed", "0", "--threads", "1", "--refit"]


def main() -> int:
    out = ROOT / "benchmarks" / "results" / "demo_small_cnn"
    rc = bench_classify.main([*RECIPE, "--out", str(out), "--json", str(out / "bench.json")])
    if rc:
        return rc
    dest = ROOT / "src" / "napari_cellnet" / "resources" / "models" / "classification_demo.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "model.pt", dest)
    print(f"demo model written to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
