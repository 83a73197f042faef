"""Segmentation speed and memory, per 1024 x 1024 frame, in one run on one machine.

What it measures (all in the same process, so ratios are fair):

1. The CPU's peak FP32 FLOP/s, estimated as the best of 3 ``torch.mm`` of two 4096x4096
   float32 matrices (2 * 4096^3 FLOP each). On a GPU the same with bf16 (8192^2).
2. For the ``light`` (default) and ``stemnet`` presets: parameters, FLOPs per 1024^2
   frame counted by ``torch.utils.flop_counter.FlopCounterMode``, and the network time
   per frame of
   - a naive baseline: per-frame loop, batch 1, fp32, ``torch.no_grad``, no tiling;
   - the engine: :func:`napari_cellnet.segmentation.predict.predict_windows` (inference mode,
     batch norm folded into the convolutions as ``segment`` does, batched whole frames),
     in contiguous and ``channels_last`` layout;
   with achieved GFLOP/s and % of peak, and the ratio naive / engine.
3. The whole CLI path for the light model (read frames from a TIFF on disk, normalise,
   windows, network, instances, IDs through time, write labels), per frame, split into
   its parts. A random-weight network gives unrepresentative masks, so post-processing
   is also timed on realistic probabilities (the C2C12 ground truth scaled to 1024^2 and
   blurred into 3-class probabilities).
4. Tiled (512 px tiles) against untiled: time and the largest probability difference.
5. Peak resident memory of ``napari-cellnet segment`` on synthetic 1024^2 movies of
   two lengths (default 20 and 200 frames), in child processes: flat in T means the
   CLI streams.
6. On CUDA (if present): bf16 autocast + channels_last frames/s and % of the bf16 peak.

Run:  python benchmarks/bench_segment.py [--rss-frames 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cellnet.models import build_model
from napari_cellnet.models.checkpoint import save_checkpoint
from napari_cellnet.segmentation.predict import predict_windows

SIZE = 1024


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def peak_fp32_cpu() -> float:
    a = torch.randn(4096, 4096)
    b = torch.randn(4096, 4096)
    torch.mm(a, b)
    best = min(median_time(lambda: torch.mm(a, b), 1) for _ in range(3))
    return 2 * 4096**3 / best


def flops_per_frame(net: torch.nn.Module, window: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, window, SIZE, SIZE)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        net(x)
    return float(fc.get_total_flops())


def bench_network(name: str, window: int, peak: float, reps: int, frames: int) -> dict:
    torch.manual_seed(0)
    net = build_model("temporal_unet", window=window, classes=3, preset=name).eval()
    params = sum(p.numel() for p in net.parameters())
    flops = flops_per_frame(net, window)
    x = np.random.default_rng(0).normal(size=(frames, window, SIZE, SIZE)).astype(np.float32)

    def naive():
        with torch.no_grad():
            for f in x:
                torch.softmax(net(torch.from_numpy(f[None])), 1).numpy()

    naive()  # warm-up (oneDNN primitive creation)
    t_naive = median_time(naive, reps) / frames
    rows = {"model": name, "params": params, "gflop_per_frame": flops / 1e9,
            "naive_s_per_frame": t_naive, "naive_gflops": flops / t_naive / 1e9}
    for cl in (False, True):
        net = build_model("temporal_unet", window=window, classes=3, preset=name).eval().fuse_batchnorm()
        predict_windows(net, x, "cpu", tile=None, batch=frames, channels_last=cl)
        t = median_time(lambda net=net, cl=cl: predict_windows(net, x, "cpu", tile=None, batch=frames,
                                                                 channels_last=cl), reps) / frames
        key = "engine_cl" if cl else "engine"
        rows[f"{key}_s_per_frame"] = t
        rows[f"{key}_gflops"] = flops / t / 1e9
        rows[f"{key}_pct_peak"] = 100 * flops / t / peak
    rows["speedup_vs_naive"] = t_naive / min(rows["engine_s_per_frame"], rows["engine_cl_s_per_frame"])
    return rows


def realistic_probabilities(T: int) -> np.ndarray:
    """3-class probabilities from the C2C12 ground truth scaled to 1024^2, blurred (sigma 2 px)."""
    from scipy import ndimage as ndi
    from skimage.transform import resize

    from napari_cellnet.datasets import c2c12
    from napari_cellnet.segmentation.postprocessing import instance_target

    _, labels = c2c12()
    out = []
    for t in range(T):
        lab = resize(labels[t % len(labels)], (SIZE, SIZE), order=0, preserve_range=True,
                     anti_aliasing=False).astype(np.int32)
        tgt = instance_target(lab)
        onehot = np.stack([(tgt == k).astype(np.float32) for k in range(3)])
        out.append(np.stack([ndi.gaussian_filter(c, 2.0) for c in onehot]))
    return np.stack(out)


def bench_postprocessing(T: int = 5) -> dict:
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels
    from napari_cellnet.segmentation.tracking import TimeMatcher, frame_centroids

    probs = realistic_probabilities(T)
    matcher = TimeMatcher()
    probabilities_to_labels(probs[0])
    t0 = time.perf_counter()
    n = 0
    for p in probs:
        lab = matcher.update(probabilities_to_labels(p, min_size=30))
        frame_centroids(lab)
        n += int(lab.max() > 0) and len(np.unique(lab)) - 1
    return {"post_s_per_frame": (time.perf_counter() - t0) / T, "objects_per_frame": n / T}


def write_movie(path: Path, T: int, seed: int = 0) -> None:
    """A synthetic phase-contrast-like movie: moving bright blobs on a textured background."""
    import tifffile

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    centres = rng.uniform(50, SIZE - 50, size=(60, 2))
    speeds = rng.normal(0, 2, size=(60, 2))
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for t in range(T):
            img = np.full((SIZE, SIZE), 60, np.float32)
            for (cy, cx), (vy, vx) in zip(centres, speeds, strict=True):
                py, px = (cy + vy * t) % SIZE, (cx + vx * t) % SIZE
                y0, y1 = int(max(py - 20, 0)), int(min(py + 21, SIZE))
                x0, x1 = int(max(px - 20, 0)), int(min(px + 21, SIZE))
                img[y0:y1, x0:x1] += 120 * np.exp(-((yy[y0:y1, x0:x1] - py) ** 2 + (xx[y0:y1, x0:x1] - px) ** 2) / 150)
            img += rng.normal(0, 5, size=img.shape).astype(np.float32)
            tw.write(np.clip(img, 0, 255).astype(np.uint8), contiguous=True, metadata={"axes": "TYX"},
                     photometric="minisblack")


def write_c2c12_movie(path: Path, T: int) -> None:
    """The shipped C2C12 movie resized to 1024^2 (bilinear), repeated to T frames: real cells."""
    import tifffile
    from skimage.transform import resize

    from napari_cellnet.datasets import c2c12

    images, _ = c2c12()
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for t in range(T):
            frame = resize(images[t % len(images)], (SIZE, SIZE), order=1, preserve_range=True)
            tw.write(frame.astype(np.uint8), contiguous=True, metadata={"axes": "TYX"}, photometric="minisblack")


def bench_whole_path(ckpt: Path, movie: Path, T: int, threads: int | None) -> dict:
    """Time the CLI's streamed path in this process (read from disk ... write labels)."""
    from napari_cellnet.cli.segment import open_movie
    from napari_cellnet.core.io import TiffFrameWriter
    from napari_cellnet.core.jobs import run_job
    from napari_cellnet.segmentation.inference import segment

    data, axes, px = open_movie(movie)
    with tempfile.TemporaryDirectory() as d:
        writer = TiffFrameWriter(Path(d) / "labels.tif", np.uint32, px)
        t = time.perf_counter()
        res = run_job(segment(data, ckpt, axes=axes, device="cpu", keep=False, threads=threads,
                              on_frame=lambda t_, p, lab: writer.write(lab)))
        wall = time.perf_counter() - t
        writer.commit()
    stages = {f"{k}_s_per_frame": v / T for k, v in res.params["stage_seconds"].items()}
    return {"frames": T, "threads": threads or torch.get_num_threads(), "whole_path_s_per_frame": wall / T,
            "objects_per_frame": len(res.tracks) / T, **stages}


def bench_tiling(ckpt_net: torch.nn.Module) -> dict:
    x = np.random.default_rng(1).normal(size=(2, ckpt_net.window, SIZE, SIZE)).astype(np.float32)
    whole = predict_windows(ckpt_net, x, "cpu", tile=None, batch=2)
    t_whole = median_time(lambda: predict_windows(ckpt_net, x, "cpu", tile=None, batch=2), 2) / 2
    tiled = predict_windows(ckpt_net, x, "cpu", tile=512, batch=4)
    t_tiled = median_time(lambda: predict_windows(ckpt_net, x, "cpu", tile=512, batch=4), 2) / 2
    return {"untiled_s_per_frame": t_whole, "tiled512_s_per_frame": t_tiled,
            "max_abs_diff": float(np.abs(whole - tiled).max())}


def bench_rss(ckpt: Path, folder: Path, lengths: list[int], threads: int | None) -> list[dict]:
    rows = []
    for T in lengths:
        movie = folder / f"movie_{T}.tif"
        write_movie(movie, T)
        out = folder / f"out_{T}"
        # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report this (forked) parent's RSS
        code = (
            "import re, sys, time; from napari_cellnet.cli.app import main; t=time.perf_counter(); "
            f"rc = main(['segment', {str(movie)!r}, '-m', {str(ckpt)!r}, '-o', {str(out)!r}, '-q'"
            + (f", '--threads', '{threads}'" if threads else "")
            + "]); hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "print(rc, time.perf_counter()-t, hwm)"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rc, secs, maxrss_kb = proc.stdout.split()[-3:]
        if rc != "0":
            raise RuntimeError(proc.stderr)
        rows.append({"frames": T, "movie_mb": movie.stat().st_size / 2**20, "peak_rss_mb": int(maxrss_kb) / 1024,
                     "seconds": float(secs), "s_per_frame": float(secs) / T})
        movie.unlink()
    return rows


def bench_cuda(window: int) -> list[dict]:
    if not torch.cuda.is_available():
        return []
    dev = torch.device("cuda")
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    torch.mm(a, a)
    torch.cuda.synchronize()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, a)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    peak = 2 * 8192**3 / best
    rows = []
    for name in ("light", "stemnet"):
        net = build_model("temporal_unet", window=window, classes=3, preset=name).eval()
        flops = flops_per_frame(net, window)
        net = net.to(dev)
        batch = 16 if name == "light" else 4
        x = np.random.default_rng(0).normal(size=(batch, window, SIZE, SIZE)).astype(np.float32)
        predict_windows(net, x, dev, tile=None, batch=batch, amp="bf16")
        torch.cuda.synchronize()
        t = median_time(lambda net=net, x=x, batch=batch: predict_windows(net, x, dev, tile=None, batch=batch,
                                                                            amp="bf16"), 5) / batch
        xt = torch.from_numpy(x).to(dev).contiguous(memory_format=torch.channels_last)

        def net_only(net=net, xt=xt):
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                net(xt)
            torch.cuda.synchronize()

        net_only()
        t_net = median_time(net_only, 5) / batch
        rows.append({"model": name, "gpu": torch.cuda.get_device_name(dev), "bf16_peak_tflops": peak / 1e12,
                     "frames_per_s_incl_transfer": 1 / t, "frames_per_s_network": 1 / t_net,
                     "network_tflops": flops / t_net / 1e12, "pct_bf16_peak": 100 * flops / t_net / peak})
    return rows


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(format(r[c[0]], c[2]) if c[0] in r else "" for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rss-frames", type=int, nargs="+", default=[20, 200])
    ap.add_argument("--path-frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--skip-stemnet", action="store_true")
    ap.add_argument("--parts", nargs="+", default=["networks", "tiling", "post", "path", "rss", "cuda"],
                    choices=["networks", "tiling", "post", "path", "rss", "cuda"])
    ap.add_argument("--model", default=None,
                    help="a trained segmentation checkpoint for the whole-path part (run on C2C12 scaled to 1024^2)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "load_avg_start": os.getloadavg()},
    }
    peak = peak_fp32_cpu()
    report["peak_fp32_gflops"] = peak / 1e9
    print(f"CPU: {report['machine']}  peak FP32 (best of 3 torch.mm 4096^2): {peak / 1e9:.1f} GFLOP/s", flush=True)

    parts = set(args.parts)
    nets: list[dict] = []
    if "networks" in parts:
        nets.append(bench_network("light", args.window, peak, args.reps, frames=4))
        print(nets[-1], flush=True)
        if not args.skip_stemnet:
            nets.append(bench_network("stemnet", args.window, peak, 1, frames=2))
            print(nets[-1], flush=True)
    report["networks"] = nets

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        torch.manual_seed(0)
        cfg = {"window": args.window, "in_channels": 1, "classes": 3, "preset": "light"}
        net = build_model("temporal_unet", **cfg).eval()
        ckpt = save_checkpoint(folder / "light.pt", net, "temporal_unet", cfg, "segmentation", meta={
            "window": args.window, "in_channels": 1, "edge": "reflect", "classes": 3,
            "normalization": {"method": "percentile", "low": 1.0, "high": 99.8},
            "class_names": ["background", "cell", "boundary"], "threshold": 0.5, "min_size": 30})
        if "tiling" in parts:
            report["tiling"] = bench_tiling(net)
            print(report["tiling"], flush=True)
        if "post" in parts or "path" in parts:
            report["post"] = bench_postprocessing()
            print(report["post"], flush=True)
        if "path" in parts:
            movie = folder / "path.tif"
            if args.model:
                write_c2c12_movie(movie, args.path_frames)
            else:
                write_movie(movie, args.path_frames, seed=1)
            report["whole_path"] = bench_whole_path(Path(args.model) if args.model else ckpt, movie,
                                                    args.path_frames, args.threads)
            report["whole_path"]["model"] = args.model or "light, random weights"
            print(report["whole_path"], flush=True)
        if "rss" in parts:
            report["rss"] = bench_rss(ckpt, folder, args.rss_frames, args.threads)
            print(report["rss"], flush=True)
    report["cuda"] = bench_cuda(args.window) if "cuda" in parts else []
    report["machine"]["load_avg_end"] = os.getloadavg()

    if nets:
        print(f"\n## Networks, CPU fp32, per 1024x1024 frame (window {args.window})\n")
        print(table(nets, [("model", "model", "s"), ("params", "params", ",d"),
                           ("gflop_per_frame", "GFLOP/frame", ".1f"),
                           ("naive_s_per_frame", "naive s/frame", ".3f"),
                           ("engine_s_per_frame", "engine s/frame", ".3f"),
                           ("engine_cl_s_per_frame", "engine channels_last s/frame", ".3f"),
                           ("engine_cl_gflops", "engine (channels_last) GFLOP/s", ".1f"),
                           ("engine_cl_pct_peak", "% of peak", ".0f"),
                           ("speedup_vs_naive", "speed-up vs naive", ".2f")]))
    if "whole_path" in report:
        w, post = report["whole_path"], report["post"]
        print(f"\n## Whole CLI path ({w['model']})\n")
        w["realistic_s_per_frame"] = (w["whole_path_s_per_frame"] - w["postprocess_s_per_frame"]
                                      + post["post_s_per_frame"])
        print(table([w], [("frames", "frames", "d"), ("threads", "threads", "d"),
                          ("read_prepare_s_per_frame", "read+preprocess", ".3f"),
                          ("network_s_per_frame", "network", ".3f"),
                          ("postprocess_s_per_frame", "instances+IDs", ".3f"),
                          ("write_s_per_frame", "write", ".3f"),
                          ("whole_path_s_per_frame", "whole path s/frame", ".3f"),
                          ("objects_per_frame", "objects/frame", ".0f"),
                          ("realistic_s_per_frame", "whole path with realistic instances", ".3f")]))
    if "post" in report:
        post = report["post"]
        print(f"\nPost-processing on realistic 3-class probabilities: {post['post_s_per_frame']:.3f} s/frame "
              f"({post['objects_per_frame']:.0f} objects/frame)")
    if "tiling" in report:
        tl = report["tiling"]
        print(f"Tiling 512 px vs untiled: {tl['tiled512_s_per_frame']:.3f} vs {tl['untiled_s_per_frame']:.3f} "
              f"s/frame, max |diff| {tl['max_abs_diff']:.2e}")
    if "rss" in report:
        print("\n## Peak RSS of `napari-cellnet segment` (streamed)\n")
        print(table(report["rss"], [("frames", "frames (1024^2 uint8)", "d"), ("movie_mb", "movie MB", ".0f"),
                                    ("peak_rss_mb", "peak RSS MB", ".0f"), ("s_per_frame", "s/frame", ".3f")]))
    if report["cuda"]:
        print("\n## CUDA bf16\n")
        print(table(report["cuda"], [("model", "model", "s"), ("gpu", "GPU", "s"),
                                     ("frames_per_s_network", "frames/s (network)", ".1f"),
                                     ("frames_per_s_incl_transfer", "frames/s (incl. transfer, softmax)", ".1f"),
                                     ("network_tflops", "TFLOP/s", ".1f"), ("pct_bf16_peak", "% bf16 peak", ".0f")]))
    elif "cuda" in parts:
        print("\nNo CUDA GPU in this run: GPU rows not measured.")
    print(f"\nload average at start {report['machine']['load_avg_start']}, at end {report['machine']['load_avg_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
