"""Reproduce the shipped HuSHeM demo classifier (``resources/models/classification_demo.pt``).

Recipe (the defaults of ``napari-cellnet train-cls`` plus ``--val-fraction 0 --crop 0.5 --tta 4 --members
small_cnn*3,mobilenet_v2,resnet18:width=32``): every head aligned upright and isolated
(``align="major_axis", isolate=True``), the central 50 % of each 131 px image as 64 px RGB
input, the ``aligned`` augmentation at 3x, AdamW lr 3e-3 + cosine with 2 warm-up epochs, label
smoothing 0.1, batch 32, 30 epochs, seed 0, one torch thread per process; a mixed ensemble of
five networks (three small_cnn from seeds ``seed``, ``seed + 7919``, ``seed + 2 * 7919``, one
mobilenet_v2 and one resnet18 of width 32 from ``seed``) whose class probabilities are
averaged, scored with the 4 axis-keeping test-time views. The weights are stored as float16.

:func:`train_classifier` with ``members=MEMBERS`` trains exactly this (same split, same seeds
per network, same TTA), one network after another. Here the networks of each architecture
(a *group*) and each of the six jobs (5 CV folds + the refit on all 216 images) run as
separate processes (``benchmarks/classify_fold.py``), ``--jobs`` at a time; since the model
averages probabilities, a fold's ensemble probabilities are the member-weighted mean of its
groups' probabilities. The script then assembles the CV report with the steps
:func:`train_classifier` ends with (:mod:`napari_cellnet.classification.report`: same fold
and pooled reports, summary and output files) and writes the refit model, with the CV summary
in its metadata, into the package (:func:`~napari_cellnet.classification.training.save_classifier`)::

    nice -n 5 python scripts/train_classifier_demo.py --jobs 2 > benchmarks/results/demo_mixed/output.txt 2>&1

Finished jobs are kept in ``--work/<group>`` and not run again for the same recipe (delete a
group's folder to rerun it). 88 min of one-core training in all (small_cnn x3 50 min,
mobilenet_v2 25, resnet18 13), so about 45 min with ``--jobs 2`` on 2 idle cores; bit-for-bit equality
with the shipped file needs the same torch build.
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

from napari_cellnet.classification.params import DEMO_MEMBERS  # noqa: E402
from napari_cellnet.models.classifier import parse_members  # noqa: E402

BASE = {"prep": {"crop_fraction": 0.5, "align": "major_axis", "isolate": True}, "aug": {"preset": "aligned"},
        "tta": 4}

MEMBERS = parse_members(DEMO_MEMBERS)  # [small_cnn x3, mobilenet_v2, resnet18 width 32]
RECIPE = {**BASE, "members": MEMBERS}
FOLDS = 5
TASKS = ["refit"] + [str(f) for f in range(1, FOLDS + 1)]


def groups(members: list[dict]) -> list[tuple[str, int, dict]]:
    """(folder name, member count, classify_fold recipe) per run of identical member specs."""
    out: list[tuple[str, int, dict]] = []
    for spec in members:
        if out and out[-1][2]["_spec"] == spec:
            name, n, recipe = out[-1]
            out[-1] = (name, n + 1, recipe)
            continue
        if any(recipe["_spec"] == spec for _, _, recipe in out):
            raise ValueError("List identical members next to each other (their seeds follow their order).")
        options = {k: v for k, v in spec.items() if k != "arch"}
        name = spec["arch"] + "".join(f"_{k}{v}" for k, v in sorted(options.items()))
        out.append((name, 1, {**BASE, "arch": spec["arch"], "model_config": options, "_spec": spec}))
    result = []
    for name, n, recipe in out:
        recipe = {k: v for k, v in recipe.items() if k != "_spec" and not (k == "model_config" and not v)}
        if n > 1:
            recipe["ensemble"] = n
            name = f"{name}_x{n}"
        result.append((name, n, recipe))
    return result


def _run(work: Path, recipe: dict, task: str) -> str:
    done = work / ("refit_state.pt" if task == "refit" else f"fold{task}.npz")
    if done.is_file():
        return f"{work.name} {task}: already done"
    with open(work / f"{task}.log", "w") as log:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "classify_fold.py"), str(work),
                        json.dumps(recipe), task], stdout=log, stderr=subprocess.STDOUT, check=True)
    return f"{work.name} {task}: done"


def _group_timing(work: Path) -> dict:
    """Training seconds, images and history of a group's six jobs (kept in group_timing.json)."""
    path = work / "group_timing.json"
    if not path.is_file():
        total = {"train_seconds": 0.0, "train_images": 0.0, "history": []}
        for task in TASKS:
            timing = json.loads((work / f"{task}_timing.json").read_text())
            total["train_seconds"] += timing["train_seconds"]
            total["train_images"] += timing["train_images"]
            total["history"] += timing["history"]
        path.write_text(json.dumps(total))
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (one torch thread each)")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "demo_mixed"))
    args = p.parse_args(argv)
    work = Path(args.work)
    plan = groups(MEMBERS)
    jobs = []
    for name, _, recipe in plan:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        recipe_file = folder / "recipe.json"
        if recipe_file.is_file() and json.loads(recipe_file.read_text()) != recipe:
            print(f"{folder} holds jobs of another recipe; delete it or choose another --work.")
            return 2
        recipe_file.write_text(json.dumps(recipe, indent=1))
        jobs += [(folder, recipe, task) for task in TASKS]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for message in pool.map(lambda job: _run(*job), jobs):
            print(message, flush=True)

    from napari_cellnet import datasets as sample_data
    from napari_cellnet.classification.data import load_class_folders
    from napari_cellnet.classification.fit import model_recipe, network_config
    from napari_cellnet.classification.report import (
        ClassifierTrainResult,
        cv_outcome,
        cv_table,
        fold_report,
        pool_out_of_fold,
        summarise_folds,
        write_outputs,
    )
    from napari_cellnet.classification.training import save_classifier
    from napari_cellnet.models import build_model
    from napari_cellnet.models.classifier import Ensemble

    cfg, prep = classify_fold.config(RECIPE)
    samples = load_class_folders(sample_data.hushem_dir(), prep)
    names, k, n_ch = list(samples.class_names), len(samples.class_names), samples.preprocessing.n_channels
    reports, idx, fold_of, probas, history = [], [], [], [], []
    train_s = train_images = 0.0
    for f in range(1, FOLDS + 1):
        te, proba = None, 0.0
        for name, n, _ in plan:
            d = np.load(work / name / f"fold{f}.npz")
            if te is not None and not np.array_equal(te, d["te"]):
                raise RuntimeError(f"{name} fold {f} tested other images than the first group")
            te, proba = d["te"], proba + n * d["proba"].astype(np.float64)
        proba = proba / len(MEMBERS)
        reports.append(fold_report(samples.labels[te], proba, names, f))
        idx.append(te)
        fold_of.append(np.full(len(te), f))
        probas.append(proba)
    members: list[torch.nn.Module] = []
    for name, n, recipe in plan:
        timing = _group_timing(work / name)
        train_s += timing["train_seconds"]
        train_images += timing["train_images"]
        history += timing["history"]
        group_cfg, _ = classify_fold.config(recipe)
        nets = [build_model(spec["arch"], **network_config(group_cfg, n_ch, k, spec))
                for spec in group_cfg.member_specs()]
        group = Ensemble(nets) if n > 1 else nets[0]  # the layout classify_fold.py saved
        group.load_state_dict(torch.load(work / name / "refit_state.pt", map_location="cpu", weights_only=True))
        members += nets
    pooled, oof = pool_out_of_fold(samples, idx, fold_of, probas)
    summary = summarise_folds(reports)
    summary.update({"train_seconds": train_s, "train_images_per_s": train_images / train_s, "device": "cpu",
                    "n_samples": len(samples), "class_counts": samples.counts()})
    mixed = Ensemble(members)
    name, config = model_recipe(cfg, n_ch, k, mixed)
    net = build_model(name, **config)  # the layout train_classifier saves; loading checks it
    net.load_state_dict(mixed.state_dict())
    model = save_classifier(work / "model.pt", net, cfg, samples, half=True,
                            **cv_outcome(summary, FOLDS, "refit on all samples"))
    write_outputs(work, cfg, samples, history, reports, pooled, summary, oof)
    result = ClassifierTrainResult(model, [], history, reports, pooled, summary, oof, False, names, cfg.to_dict())
    print(cv_table(result))
    acc = summary["accuracy"]
    print(f"\n{' + '.join(g for g, _, _ in plan)}: accuracy {acc['mean']:.3f} +- {acc['sd']:.3f} over "
          f"{FOLDS} folds; training {train_images / train_s:.0f} img/s over {train_s / 60:.1f} min of training")
    dest = ROOT / "src" / "napari_cellnet" / "resources" / "models" / "classification_demo.pt"
    shutil.copyfile(model, dest)
    print(f"demo model written to {dest} ({dest.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
