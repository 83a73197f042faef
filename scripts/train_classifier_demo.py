"""Reproduce the shipped HuSHeM demo classifier (``resources/models/classification_demo.pt``).

Recipe (the defaults of ``napari-cellnet train-cls`` plus ``--crop 0.5 --tta 4 --ensemble 3``):
every head aligned upright and isolated (``align="major_axis", isolate=True``), the central
50 % of each 131 px image as 64 px RGB input, the ``aligned`` augmentation at 3x, small_cnn,
AdamW lr 3e-3 + cosine with 2 warm-up epochs, label smoothing 0.1, batch 32, 30 epochs, an
ensemble of 3 networks (seeds ``seed``, ``seed + 7919``, ``seed + 2 * 7919``), scored with the
4 axis-keeping test-time views, seed 0, one torch thread per process.

The stratified 5-fold CV and the refit on all 216 images are six independent jobs; this
script runs them as separate processes (``benchmarks/classify_fold.py``, which calls the same
``_fit_model`` with the same split and seeds as :func:`train_classifier`), ``--jobs`` at a
time, then assembles the CV report exactly as :func:`train_classifier` does (same
:func:`classification_report`, summary and output files) and writes the refit model, with
the CV summary in its metadata, into the package::

    nice -n 5 python scripts/train_classifier_demo.py --jobs 2 > benchmarks/results/demo_small_cnn_output.txt 2>&1

Finished jobs are kept in ``--work`` and not run again for the same recipe (delete the folder
to start over). About 35 min on 2 idle CPU cores; bit-for-bit equality with the shipped file
needs the same torch build.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import classify_fold  # noqa: E402

RECIPE = {"prep": {"crop_fraction": 0.5, "align": "major_axis", "isolate": True}, "aug": {"preset": "aligned"},
          "tta": 4, "ensemble": 3}
FOLDS = 5


def _run(work: Path, task: str) -> str:
    done = work / ("refit_state.pt" if task == "refit" else f"fold{task}.npz")
    if done.is_file():
        return f"{task}: already done"
    with open(work / f"{task}.log", "w") as log:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "classify_fold.py"), str(work),
                        json.dumps(RECIPE), task], stdout=log, stderr=subprocess.STDOUT, check=True)
    return f"{task}: done"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (one torch thread each)")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "demo_small_cnn"))
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    recipe_file = work / "recipe.json"
    if recipe_file.is_file() and json.loads(recipe_file.read_text()) != RECIPE:
        print(f"{work} holds jobs of another recipe; delete it or choose another --work.")
        return 2
    recipe_file.write_text(json.dumps(RECIPE, indent=1))
    tasks = ["refit"] + [str(f) for f in range(1, FOLDS + 1)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for message in pool.map(lambda t: _run(work, t), tasks):
            print(message, flush=True)

    from napari_cellnet import samples as sample_data
    from napari_cellnet.classify_data import load_class_folders
    from napari_cellnet.classify_training import (
        ClassifierTrainResult,
        _meta,
        _net_config,
        _summary,
        _write_outputs,
        cv_table,
    )
    from napari_cellnet.metrics import classification_report
    from napari_cellnet.models import build_model
    from napari_cellnet.models.checkpoint import save_checkpoint

    cfg, prep = classify_fold.config(RECIPE)
    samples = load_class_folders(sample_data.hushem_dir(), prep)
    names, k = list(samples.class_names), len(samples.class_names)
    reports, idx, fold_of, probas, history = [], [], [], [], []
    train_s = train_images = 0.0
    for f in range(1, FOLDS + 1):
        d = np.load(work / f"fold{f}.npz")
        rep = classification_report(d["y"], d["proba"].argmax(1), d["proba"], names)
        rep["fold"] = f
        reports.append(rep)
        idx.append(d["te"])
        fold_of.append(np.full(len(d["te"]), f))
        probas.append(d["proba"])
    for task in tasks:
        timing = json.loads((work / f"{task}_timing.json").read_text())
        train_s += timing["train_seconds"]
        train_images += timing["train_images"]
        history += timing["history"]
    index, proba = np.concatenate(idx), np.concatenate(probas)
    y = samples.labels[index]
    pooled = classification_report(y, proba.argmax(1), proba, names)
    summary = _summary(reports)
    summary.update({"train_seconds": train_s, "train_images_per_s": train_images / train_s, "device": "cpu",
                    "n_samples": len(samples), "class_counts": samples.counts()})
    oof = {"index": index, "fold": np.concatenate(fold_of), "y_true": y, "y_pred": proba.argmax(1), "proba": proba}
    extra = {"cv_summary": {key: v for key, v in summary.items() if key != "class_counts"},
             "cv_folds": FOLDS, "selected_by": "refit on all samples"}
    n_ch = samples.preprocessing.n_channels
    name, config = cfg.arch, _net_config(cfg, n_ch, k)
    if cfg.ensemble > 1:  # the layout train_classifier saves for an ensemble
        name, config = "ensemble", {**config, "arch": cfg.arch, "members": cfg.ensemble}
    net = build_model(name, **config)
    net.load_state_dict(torch.load(work / "refit_state.pt", map_location="cpu", weights_only=True))
    model = save_checkpoint(work / "model.pt", net, name, config, "classification", _meta(cfg, samples, extra))
    _write_outputs(work, cfg, samples, history, reports, pooled, summary, oof)
    result = ClassifierTrainResult(model, [], history, reports, pooled, summary, oof, False, names, cfg.to_dict())
    print(cv_table(result))
    acc = summary["accuracy"]
    print(f"\nsmall_cnn x{cfg.ensemble}: accuracy {acc['mean']:.3f} +- {acc['sd']:.3f} over {FOLDS} folds; "
          f"training {train_images / train_s:.0f} img/s over {train_s / 60:.1f} min of training")
    dest = ROOT / "src" / "napari_cellnet" / "resources" / "models" / "classification_demo.pt"
    shutil.copyfile(model, dest)
    print(f"demo model written to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
