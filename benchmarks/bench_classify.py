"""Stratified k-fold CV of the classifiers on HuSHeM: accuracy, macro F1, time, images/s.

Run one architecture at a time (CPU time is precious)::

    nice -n 5 python benchmarks/bench_classify.py --arch small_cnn --epochs 40 --folds 5 \
        > benchmarks/results/small_cnn.log 2>&1

``--members "small_cnn*3,mobilenet_v2,resnet18:width=32"`` runs one mixed ensemble (the
shipped demo's networks; ``scripts/train_classifier_demo.py`` runs the same recipe as
parallel one-thread jobs) instead of the ``--arch`` list.

It prints the CV table of each fold, then one summary row per architecture:
mean +- sd accuracy over folds (each fold scored once on its held-out images with the
last-epoch model; folds are never ensembled), pooled macro F1 and AUC, wall time per fold,
training images/s (augmented images through forward+backward) and inference crops/s
(median of 5 timed passes over 512 prepared crops, batch 256, no TTA).
A JSON file with every number goes to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hushem_sperm_heads"


def inference_speed(arch: str, model_config: dict, channels: int, size: int, n: int = 512,
                    repeats: int = 5) -> float:
    """Median crops/s of the eval-mode network on random prepared crops."""
    from napari_cellnet.classification.inference import predict_proba
    from napari_cellnet.core.jobs import run_job
    from napari_cellnet.models import build_model

    net = build_model(arch, in_channels=channels, n_classes=4, **model_config).eval()
    x = np.random.default_rng(0).random((n, channels, size, size), dtype=np.float32)
    run_job(predict_proba(net, x[:256], "cpu", 256))  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_job(predict_proba(net, x, "cpu", 256))
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def naive_speed(arch: str, model_config: dict, channels: int, size: int, n: int = 128, repeats: int = 3) -> float:
    """Baseline crops/s: one crop at a time through the plain network (no batching, contiguous)."""
    from napari_cellnet.models import build_model

    net = build_model(arch, in_channels=channels, n_classes=4, **model_config).eval()
    x = torch.from_numpy(np.random.default_rng(0).random((n, channels, size, size), dtype=np.float32))
    times = []
    with torch.no_grad():
        net(x[:1])
        for _ in range(repeats):
            t = time.perf_counter()
            for i in range(n):
                torch.softmax(net(x[i:i + 1]), 1)
            times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def inference_table(archs: list[str], model_config: dict, channels: int, size: int) -> None:
    """Inference speed only: the engine (``predict_proba``, batch 256) against a batch-1 baseline."""
    print(f"# inference only: {size}x{size} px, {channels} channel(s), {torch.get_num_threads()} torch threads, "
          f"load average at start {os.getloadavg()}")
    print("| arch | baseline crops/s (batch 1) | engine crops/s (batch 256, median of 5) | speed-up |")
    print("|---|---|---|---|")
    for arch in archs:
        base = naive_speed(arch, model_config, channels, size)
        fast = inference_speed(arch, model_config, channels, size)
        print(f"| {arch} | {base:.0f} | {fast:.0f} | {fast / base:.1f} |", flush=True)
    print(f"load average at end {os.getloadavg()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="class-folder dataset (default: shared HuSHeM)")
    p.add_argument("--arch", action="append", help="architecture(s) to run (repeat); default small_cnn")
    p.add_argument("--model-config", default="{}", help='JSON builder options, e.g. \'{"width": 32}\'')
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--max-folds", type=int, default=None, help="run only the first N folds of the k-fold split")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--crop", type=float, default=0.8, help="central fraction kept before resizing")
    p.add_argument("--channels", default="rgb")
    p.add_argument("--aug-rate", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tta", type=int, default=1)
    p.add_argument("--align", choices=["none", "major_axis"], default="none",
                   help="put every head upright before classifying (orientation.py)")
    p.add_argument("--isolate", action="store_true", help="with --align: blank everything beyond the cell")
    p.add_argument("--aug", default="strong", help="augmentation preset (strong, aligned, light, none)")
    p.add_argument("--mixup", type=float, default=0.0)
    p.add_argument("--ensemble", type=int, default=1, help="networks per model (seeded, probabilities averaged)")
    p.add_argument("--members", default=None,
                   help="one mixed ensemble instead of --arch, e.g. small_cnn*3,mobilenet_v2,resnet18:width=32")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write checkpoints/reports here (refit model.pt included)")
    p.add_argument("--refit", action="store_true", help="also train the final model on all images")
    p.add_argument("--json", default=None, help="write all numbers to this JSON file")
    p.add_argument("--inference-only", action="store_true",
                   help="only time inference (engine vs a batch-1 baseline) for each --arch; no training")
    args = p.parse_args(argv)

    from napari_cellnet.classification.data import Preprocessing, load_class_folders
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.classification.report import cv_table
    from napari_cellnet.classification.training import train_classifier
    from napari_cellnet.core import device as devices
    from napari_cellnet.core.augment import AugmentParams
    from napari_cellnet.core.jobs import TrainEvent

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.inference_only:
        channels = 1 if args.channels in ("gray", "grey", "grayscale") else 3
        inference_table(args.arch or ["small_cnn"], json.loads(args.model_config), channels, args.size)
        return 0
    prep = Preprocessing(size=args.size, channels=args.channels, crop_fraction=args.crop, align=args.align,
                         isolate=args.isolate)
    samples = load_class_folders(args.data, prep)
    mc = json.loads(args.model_config)
    rows = []
    print(f"# {len(samples)} images {samples.counts()}, input {args.size}px {prep.channels}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {devices.describe('auto').description}")
    from napari_cellnet.models.classifier import parse_members

    if args.members:  # one row: the mixed ensemble (its networks' options are in the member specs)
        specs = parse_members(args.members)
        runs = [(args.members, "ensemble", {"members": specs}, {"members": specs})]
    else:
        runs = [(arch, arch, mc, {"model_config": mc}) for arch in args.arch or ["small_cnn"]]
    for label, arch, net_config, model_kw in runs:
        cfg = ClassifierTrainConfig(arch="small_cnn" if args.members else arch, **model_kw, epochs=args.epochs,
                                    folds=args.folds,
                                    **ClassifierTrainConfig.flat_preprocessing(prep), aug_rate=args.aug_rate, lr=args.lr,
                                    batch_size=args.batch_size, tta=args.tta, seed=args.seed,
                                    refit=args.refit, threads=args.threads,
                                    augment=AugmentParams.preset(args.aug), mixup=args.mixup,
                                    ensemble=args.ensemble, val_fraction=0.0)  # last-epoch models
        t0 = time.perf_counter()

        def show(ev: object, t0: float = t0) -> None:
            if isinstance(ev, TrainEvent) and ev.kind == "epoch" and (ev.epoch % 5 == 0 or ev.epoch == ev.epochs):
                print(f"  {ev.message} epoch {ev.epoch}/{ev.epochs} loss {ev.train_loss:.3f} "
                      f"train acc {ev.val_metrics.get('train_accuracy', float('nan')):.3f} "
                      f"{time.perf_counter() - t0:.0f}s", flush=True)

        job = train_classifier(samples, cfg, args.out)
        if args.max_folds:
            job = limit_folds(job, args.max_folds)
        result = drain(job, show)
        wall = time.perf_counter() - t0
        print(cv_table(result), flush=True)
        speed = inference_speed(arch, net_config, prep.n_channels, args.size)
        n_params = sum(p.numel() for p in __import__("napari_cellnet.models", fromlist=["build_model"])
                       .build_model(arch, in_channels=prep.n_channels, n_classes=4, **net_config).parameters())
        s = result.summary
        n_folds = len(result.folds)
        row = {
            "arch": label, "params_M": n_params / 1e6, "folds": n_folds, "epochs": args.epochs,
            "acc_mean": s["accuracy"]["mean"], "acc_sd": s["accuracy"]["sd"],
            "bal_acc_mean": s["balanced_accuracy"]["mean"], "macro_f1_mean": s["macro_f1"]["mean"],
            "pooled_macro_f1": result.pooled["macro"]["f1"], "pooled_macro_auc": result.pooled["macro"]["auc"],
            "wall_s": wall, "wall_s_per_fold": wall / max(n_folds + (1 if args.refit else 0), 1),
            "train_img_s": s["train_images_per_s"], "infer_img_s": speed,
            "fold_acc": [r["accuracy"] for r in result.folds],
        }
        rows.append(row)
        print(f"\n{label}: accuracy {row['acc_mean']:.3f} +- {row['acc_sd']:.3f} over {n_folds} folds, "
              f"macro F1 {row['pooled_macro_f1']:.3f}, {row['wall_s_per_fold']:.0f} s/fold, "
              f"train {row['train_img_s']:.0f} img/s, inference {speed:.0f} crops/s\n", flush=True)
    print("| arch | params (M) | folds x epochs | accuracy (mean ± sd) | balanced acc | macro F1 (pooled) "
          "| macro AUC (pooled) | wall s / fold | train img/s | inference crops/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['params_M']:.2f} | {r['folds']} x {r['epochs']} | {r['acc_mean']:.3f} ± "
              f"{r['acc_sd']:.3f} | {r['bal_acc_mean']:.3f} | {r['pooled_macro_f1']:.3f} | "
              f"{r['pooled_macro_auc']:.3f} | {r['wall_s_per_fold']:.0f} | {r['train_img_s']:.0f} | "
              f"{r['infer_img_s']:.0f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


def drain(job, on_event):
    """Run a job; Ctrl-C (SIGINT) sends STOP once, so finished folds are still reported."""
    import signal

    from napari_cellnet.core.jobs import run_job

    asked = {"stop": False}

    def on_sigint(signum, frame):
        if asked["stop"]:
            raise KeyboardInterrupt
        asked["stop"] = True
        print("\nstopping after the current step (Ctrl-C again to abort)", flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return run_job(job, on_event, lambda: asked["stop"])
    finally:
        signal.signal(signal.SIGINT, previous)


def limit_folds(job, n):
    """Forward a training job's events and send STOP once fold ``n`` is finished."""
    from napari_cellnet.core.jobs import STOP, TrainEvent

    reply = None
    try:
        while True:
            ev = job.send(reply)
            yield ev
            reply = None
            if isinstance(ev, TrainEvent) and ev.kind == "epoch" and ev.fold == n and ev.epoch == ev.epochs:
                reply = STOP
    except StopIteration as done:
        return done.value


if __name__ == "__main__":
    sys.exit(main())
