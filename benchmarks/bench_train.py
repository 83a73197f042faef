"""Segmentation training benchmark: speed of a training step and quality reached on C2C12.

Prints two markdown tables (pasted into ``docs/performance.md``):

1. **Throughput** of the default ("light") preset: optimisation steps/s and patches/s
   (median of ``--repeats`` timed runs of ``--steps`` steps after a warm-up), for the
   network step alone and with patch preparation (crop, augmentation, targets) included,
   on the CPU with 1 thread and with every core, and on CUDA when a GPU is present.
2. **Quality** on the bundled C2C12 movie (10 frames, 234x234, labels on every frame):
   train on frames 0,2,4,6,8; the odd frames 1,3,5,7,9 are never a training target but
   still feed the windows as neighbours. Nothing is chosen on the odd frames: there is no
   validation (``best.pt`` is the epoch with the lowest training loss) and, with
   ``--calibrate any``, the threshold and minimum size are calibrated on the training
   frames. The model is then run through :func:`napari_cellnet.segmentation.inference.segment` on the
   whole movie (with the post-processing stored in it) and scored on the odd frames with
   CTC SEG, pixel F1 and AP@0.5 -- window 1 vs window 5, with the wall time of each
   training run (calibration included).

Run::

    nice -n 5 python benchmarks/bench_train.py --out /tmp/bench_train   # ~15 min on 2 CPU cores
    python benchmarks/bench_train.py --quick                            # smoke run, 1 minute
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_cellnet import __version__
from napari_cellnet.core.device import describe
from napari_cellnet.core.jobs import run_job
from napari_cellnet.core.metrics import segmentation_report
from napari_cellnet.core.optim import build_optimizer
from napari_cellnet.models import build_model
from napari_cellnet.segmentation.data import as_movie_list, extract_windows
from napari_cellnet.segmentation.inference import segment
from napari_cellnet.segmentation.losses import SegmentationLoss
from napari_cellnet.segmentation.patches import PatchSampler
from napari_cellnet.segmentation.training import TrainSegParams, train_segmentation

TRAIN, VAL = [0, 2, 4, 6, 8], [1, 3, 5, 7, 9]


def load_c2c12() -> tuple[np.ndarray, np.ndarray]:
    """The C2C12 movie from the package, or the shared raw copy in a source checkout."""
    try:
        from napari_cellnet.datasets import c2c12

        return c2c12()
    except (ImportError, FileNotFoundError, ValueError):
        import tifffile

        root = Path("/work/shared/data/c2c12_phase_timelapse_small")
        return tifffile.imread(root / "images.tif"), tifffile.imread(root / "labels.tif")


def throughput(device: torch.device, threads: int, steps: int, repeats: int, batch: int, patch: int,
               window: int = 5) -> dict[str, float]:
    """Median steps/s of the light preset: network step only, and with patch preparation."""
    torch.set_num_threads(threads)
    img, lab = load_c2c12()
    imgs, labs = as_movie_list(img, lab)
    samples, _ = extract_windows(imgs, labs, [(0, t) for t in TRAIN], window)
    params = TrainSegParams(window=window, patch_size=patch, batch_size=batch)
    sampler = PatchSampler(samples, patch, 3, params.augment_params(), rate=10)
    torch.manual_seed(0)
    net = build_model("temporal_unet", window=window, in_channels=1, classes=3, preset="light").to(device)
    opt = build_optimizer("adamw", net.parameters(), 2e-3, 1e-4)
    loss_fn = SegmentationLoss("ce+dice", class_weights=[1.0, 2.0, 2.0]).to(device)
    plan = sampler.plan(0, 0)

    def one(i: int, with_data: bool, fixed: tuple) -> None:
        if with_data:
            x, y, _ = sampler.batch(plan[(i * batch) % len(plan):(i * batch) % len(plan) + batch])
        else:
            x, y = fixed
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    x0, y0, _ = sampler.batch(plan[:batch])
    out = {}
    net.train()
    for with_data in (False, True):
        for i in range(3):
            one(i, with_data, (x0, y0))
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(steps):
                one(i, with_data, (x0, y0))
            rates.append(steps / (time.perf_counter() - t0))
        key = "with_data" if with_data else "net_only"
        out[key] = statistics.median(rates)
    return out


def quality(window: int, epochs: int, aug_rate: int, threads: int, out: Path, device: str,
            calibrate: str = "any", seed: int = 0, scale: float = 1.0) -> dict[str, float]:
    """Train on the even frames (no validation), score the model's inference on the odd frames."""
    from napari_cellnet.models.checkpoint import load_checkpoint

    img, lab = load_c2c12()
    params = TrainSegParams(window=window, frames=TRAIN, val_frames=[], epochs=epochs, aug_rate=aug_rate,
                            threads=threads, device=device, calibrate=calibrate, seed=seed, scale=scale)
    t0 = time.perf_counter()
    res = run_job(train_segmentation(img, lab, params, out / f"window{window}_scale{scale:g}_seed{seed}",
                                     overwrite=True))
    wall = time.perf_counter() - t0
    meta = load_checkpoint(res.best_path, task="segmentation").meta
    seg = run_job(segment(img, res.best_path, device=device, threads=threads))
    rep = segmentation_report(seg.labels[VAL], lab[VAL].astype(np.int32))
    train_rep = segmentation_report(seg.labels[TRAIN], lab[TRAIN].astype(np.int32))
    return {"window": window, "scale": scale, "epochs": res.epochs_done, "best_epoch": res.best["epoch"],
            "threshold": meta["threshold"], "min_size": meta["min_size"], "train_seg": train_rep["seg"],
            "seg": rep["seg"], "f1": rep["f1"], "ap": rep["ap"],
            "precision": rep["precision"], "recall": rep["recall"], "wall_s": wall}


def memory(out: Path, T: int = 100, size: int = 1024, annotated: tuple[int, ...] = (10, 40, 70, 95),
           window: int = 5) -> dict[str, float]:
    """Bytes kept and peak allocation when preparing a large lazily-read movie."""
    import tracemalloc

    import tifffile

    from napari_cellnet.core.io import read_stack
    from napari_cellnet.segmentation.data import split_frames

    out.mkdir(parents=True, exist_ok=True)
    img_path, lab_path = out / "big_movie.tif", out / "big_labels.tif"
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(img_path, bigtiff=True) as tw:
        for _ in range(T):
            tw.write(rng.integers(0, 255, (size, size), dtype=np.uint8), contiguous=True)
    lab = np.zeros((T, size, size), np.uint16)
    for t in annotated:
        lab[t, 100:140, 100:150] = 1
    tifffile.imwrite(lab_path, lab, bigtiff=True)
    del lab
    images = read_stack(img_path, axes="TYX", lazy=True).data
    labels = read_stack(lab_path, axes="TYX", lazy=True).data
    tracemalloc.start()
    imgs, labs = as_movie_list(images, labels)
    refs, _, _ = split_frames(labs, val_frames=[])
    samples, _ = extract_windows(imgs, labs, refs, window)
    kept = sum(s.window.nbytes + s.labels.nbytes for s in samples)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"movie_mb": T * size * size / 1e6, "movie_f32_mb": T * size * size * 4 / 1e6, "kept_mb": kept / 1e6,
            "peak_mb": peak / 1e6, "frames": len(refs)}


def memory_and_speed(args: argparse.Namespace, out: Path, cores: int) -> None:
    """Print the memory and throughput tables."""
    m = memory(out / "memory")
    print(f"\n### Memory: {m['frames']} annotated frames of a lazily read 100 x 1024 x 1024 uint8 movie, window 5\n")
    print("| movie on disk | movie as float32 | kept (windows + labels) | peak allocation while preparing |")
    print("|---|---|---|---|")
    print(f"| {m['movie_mb']:.0f} MB | {m['movie_f32_mb']:.0f} MB | {m['kept_mb']:.0f} MB | {m['peak_mb']:.0f} MB |",
          flush=True)
    if args.memory_only:
        return

    batch, patch = TrainSegParams().batch_size, TrainSegParams().patch_size
    print(f"\n### Training throughput, light preset, window 5, batch {batch} x {patch}x{patch} patches "
          f"(median of {args.repeats} x {args.steps} steps)\n")
    print("| device | threads | steps/s (network) | patches/s (network) | steps/s (with patch prep.) "
          "| patches/s (with patch prep.) |")
    print("|---|---|---|---|---|---|")
    configs = [(torch.device("cpu"), 1)] + ([(torch.device("cpu"), cores)] if cores > 1 else [])
    if torch.cuda.is_available():
        configs.append((torch.device("cuda"), cores))
    for dev, thr in configs:
        r = throughput(dev, thr, args.steps, args.repeats, batch, patch)
        print(f"| {dev.type} | {thr} | {r['net_only']:.2f} | {r['net_only'] * batch:.1f} | {r['with_data']:.2f} "
              f"| {r['with_data'] * batch:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_train", help="folder for the trained checkpoints")
    ap.add_argument("--epochs", default="80",
                    help="epochs of the quality runs: one number, or one per --scales entry (e.g. 80,20: "
                         "scale 2 has 4x the pixels per epoch, so 20 epochs cost what 80 cost at scale 1)")
    ap.add_argument("--scales", default="1", help="comma-separated input scale factors of the quality runs")
    ap.add_argument("--aug-rate", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for the quality runs (1 is fastest when the cores are shared)")
    ap.add_argument("--calibrate", choices=["any", "none"], default="any",
                    help="calibrate threshold and min size on the training frames (any) or keep 0.5 / 30 (none)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the quality runs (one row each)")
    ap.add_argument("--windows", default="1,5", help="comma-separated windows of the quality runs")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="3 epochs, 3 steps: a smoke run")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--memory-only", action="store_true", help="only the large-movie memory check")
    ap.add_argument("--quality-only", action="store_true", help="only the C2C12 quality runs")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.steps, args.repeats = "3", 3, 1
    scales = [float(x) for x in args.scales.split(",")]
    epochs = [int(x) for x in args.epochs.split(",")]
    if len(epochs) == 1:
        epochs = epochs * len(scales)
    if len(epochs) != len(scales):
        ap.error(f"--epochs has {len(epochs)} entries but --scales has {len(scales)}; give one or one per scale.")
    out = Path(args.out)
    cores = len(__import__("os").sched_getaffinity(0))
    print(f"napari-cellnet {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{cores} CPU core(s); {describe('cpu').description}")
    if torch.cuda.is_available():
        print(f"GPU: {describe('cuda').description}")

    if not args.quality_only:
        memory_and_speed(args, out, cores)
    if args.memory_only:
        return
    if args.skip_quality:
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"\n### C2C12: train on frames {TRAIN}, score on {VAL} (aug rate {args.aug_rate}x, {args.threads} "
          f"thread(s), {device}, calibration: {args.calibrate})\n")
    print("| scale | window | seed | epochs | threshold / min size | SEG (odd frames) | pixel F1 | AP@0.5 "
          "| pixel precision | pixel recall | SEG (training frames) | training wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows: dict[tuple[float, int], list[float]] = {}
    for scale, n_epochs in zip(scales, epochs, strict=True):
        for window in (int(w) for w in args.windows.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                q = quality(window, n_epochs, args.aug_rate, args.threads, out, device, args.calibrate, seed, scale)
                rows.setdefault((scale, window), []).append(q["seg"])
                print(f"| {scale:g} | {window} | {seed} | {q['epochs']} | {q['threshold']:.2f} / {q['min_size']} "
                      f"| {q['seg']:.3f} | {q['f1']:.3f} | {q['ap']:.3f} | {q['precision']:.3f} | {q['recall']:.3f} "
                      f"| {q['train_seg']:.3f} | {q['wall_s'] / 60:.1f} min |", flush=True)
    if any(len(v) > 1 for v in rows.values()):
        print("\n| scale | window | seeds | SEG (odd frames), mean ± sd |")
        print("|---|---|---|---|")
        for (scale, window), v in rows.items():
            print(f"| {scale:g} | {window} | {len(v)} | {np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f} |")


if __name__ == "__main__":
    main()
