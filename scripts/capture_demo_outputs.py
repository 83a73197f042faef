"""Capture the demo models' outputs (usage: python scripts/capture_demo_outputs.py tests/data/golden/demo_outputs.npz; run once on the tree before the issue-14 restructure;
kept to show how the reference of tests/models/test_demo_outputs.py was made)."""
import sys

import numpy as np
import torch

torch.set_num_threads(1)
from napari_cellnet import datasets  # noqa: E402
from napari_cellnet.classification.inference import classify  # noqa: E402
from napari_cellnet.core.jobs import run_job  # noqa: E402
from napari_cellnet.segmentation.inference import segment  # noqa: E402

img, lab = datasets.c2c12()
res = run_job(segment(img, datasets.demo_model_path("segmentation"), axes="TYX", device="cpu", threads=1))
seg_probs = res.probabilities
out = run_job(classify(datasets.demo_model_path("classification"), folder=datasets.hushem_dir(), device="cpu"))
print({k: (np.asarray(v).shape, np.asarray(v).dtype) for k, v in out.items()})  # noqa: T201
probs_cols = sorted(k for k in out if k.startswith("p_") or k.startswith("prob"))
print(probs_cols)  # noqa: T201
np.savez_compressed(sys.argv[1], seg_labels=res.labels, seg_probabilities=seg_probs, seg_tracks=res.tracks,
                    **{f"cls_{k}": np.asarray(v).astype(str) if np.asarray(v).dtype == object else np.asarray(v) for k, v in out.items() if k != "_seconds"})
