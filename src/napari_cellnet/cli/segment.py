"""``napari-cellnet segment`` and ``napari-cellnet evaluate``: the segmentation engine from a shell.

``segment`` streams: frames are read from disk one window at a time and labels are
appended to the output TIFF as each frame finishes, so a 2000-frame movie needs no more
memory than a 20-frame one. Outputs go to temporary files in the output folder and are
renamed into place at the end; an error removes them, so ``-o`` never holds a
half-written result. Ctrl-C stops after the current batch and keeps what is done (the
JSON says which frames).

Every setting's flag (``--threshold``, ``--tile``, ``--window-edge``, ``--drift/--no-drift`` …) is
made from :class:`~napari_cellnet.segmentation.params.SegmentParams` (and ``evaluate``'s from
``EvaluateParams``), the objects the widgets show. ``--params`` reads a params.json saved by
a widget, or the ``"settings"`` of an earlier run's ``<movie>_segment.json``; flags typed
after it override it.

``evaluate`` compares predicted and ground-truth label stacks with every metric of
:func:`napari_cellnet.core.metrics.segmentation_report` and prints a table and/or JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellnet.cli.app import command, drain
from napari_cellnet.cli.flags import params_from_args, typed_flags
from napari_cellnet.core.io import TiffFrameWriter, json_default, write_json, write_table
from napari_cellnet.core.params import read_json_dict
from napari_cellnet.segmentation.params import EvaluateParams, SegmentParams

# ---------------------------------------------------------------------------
# segment
# ---------------------------------------------------------------------------


def _add_segment_arguments(p: argparse.ArgumentParser) -> None:
    # Only inputs and outputs are written here; every setting's flag comes from SegmentParams.
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("movie", help="time-lapse movie: TIFF (ImageJ/OME/BigTIFF), image, or folder of frames")
    io.add_argument("--model", "-m", default=None,
                    help="segmentation checkpoint (.pt); default: the demo model shipped with napari-cellnet")
    io.add_argument("--output", "-o", required=True, help="output folder (created if needed)")
    io.add_argument("--axes", default=None, help="axes of the movie, e.g. TYX, TCYX, TYXC (default: from the file)")
    io.add_argument("--probabilities", action="store_true", help="also write the foreground probability stack")
    io.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    io.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def segment_params(args: argparse.Namespace) -> SegmentParams:
    """The :class:`SegmentParams` of a command line: defaults < ``--params`` JSON < flags.

    ``--params`` takes a params.json saved by the Segment widget or a ``<movie>_segment.json``
    of an earlier run (its ``"settings"``).
    """
    path = getattr(args, "params_json", None)
    base = SegmentParams()
    if path:
        d = read_json_dict(path)
        base = SegmentParams.from_dict(d["settings"] if isinstance(d.get("settings"), dict) else d)
    params = base.replace(**typed_flags(SegmentParams, args))
    params.validate()
    return params


class _FileFrames:
    """Frames of a contiguous uncompressed TIFF read with one ``read`` each (not memory-mapped),
    so resident memory does not grow with the frames already seen."""

    def __init__(self, filename: str, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.filename = filename
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.frame_items = int(np.prod(self.shape[1:]))

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        t_key, rest = key[0], key[1:]
        ts = np.arange(self.shape[0])[t_key]
        frames = [self._frame(int(t)) for t in np.atleast_1d(ts)]
        out = np.stack(frames) if frames else np.zeros((0, *self.shape[1:]), self.dtype)
        if np.ndim(ts) == 0:
            out = out[0]
        return out[(slice(None),) * (0 if np.ndim(ts) == 0 else 1) + rest] if rest else out

    def _frame(self, t: int) -> np.ndarray:
        start = self.offset + t * self.frame_items * self.dtype.itemsize
        arr = np.fromfile(self.filename, dtype=self.dtype, count=self.frame_items, offset=start)
        return arr.reshape(self.shape[1:])


def open_movie(path: str | os.PathLike[str], axes: str | None = None) -> tuple[Any, str, Any]:
    """Open a movie for streaming: ``(array-like, axes, pixel_size)``; nothing is read yet."""
    from napari_cellnet.core.io import read_stack

    stack = read_stack(path, axes=axes, lazy=True)
    data = stack.data
    if isinstance(data, np.memmap) and stack.axes[0] == "T" and data.flags.c_contiguous:
        import dask.array as da

        frames = _FileFrames(str(data.filename), int(data.offset), data.shape, data.dtype)
        data = da.from_array(frames, chunks=(1, *data.shape[1:]), asarray=True, fancy=False,
                             name=f"frames-{Path(path).name}-{id(frames)}")
    return data, stack.axes, stack.pixel_size


def _outputs(out_dir: Path, stem: str, probabilities: bool) -> dict[str, Path]:
    names = {
        "labels": out_dir / f"{stem}_labels.tif",
        "tracks": out_dir / f"{stem}_tracks.csv",
        "objects": out_dir / f"{stem}_objects.csv",
        "params": out_dir / f"{stem}_segment.json",
    }
    if probabilities:
        names["probabilities"] = out_dir / f"{stem}_probabilities.tif"
    return names


def _default_model() -> Path:
    from napari_cellnet.datasets import demo_model_path

    try:
        return demo_model_path("segmentation")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} Pass a checkpoint with --model PATH.") from err


@command("segment", _add_segment_arguments, params=SegmentParams)
def cmd_segment(args: argparse.Namespace) -> int:
    """Segment a time-lapse movie with a temporal U-Net checkpoint.

    Writes <movie>_labels.tif (instance labels, IDs kept through time), <movie>_tracks.csv,
    <movie>_objects.csv, optionally <movie>_probabilities.tif, and <movie>_segment.json with
    every parameter used.
    """
    from napari_cellnet.segmentation.inference import segment

    settings = segment_params(args)
    movie_path = Path(args.movie)
    model = Path(args.model) if args.model else _default_model()
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"-o {out_dir} is a file; give a folder for the outputs.")
    stem = movie_path.stem if movie_path.is_file() else movie_path.name
    outputs = _outputs(out_dir, stem, args.probabilities)
    existing = [p for p in outputs.values() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]} already exists; choose another -o folder or pass --overwrite.")

    data, axes, pixel_size = open_movie(movie_path, args.axes)
    created_dir = not out_dir.exists()
    writers: dict[str, TiffFrameWriter] = {}
    created: list[Path] = []

    def on_frame(t: int, prob: np.ndarray, labels: np.ndarray) -> None:
        if not writers:
            out_dir.mkdir(parents=True, exist_ok=True)
            writers["labels"] = TiffFrameWriter(outputs["labels"], np.uint32, pixel_size)
            if args.probabilities:
                writers["probabilities"] = TiffFrameWriter(outputs["probabilities"], np.float32, pixel_size)
        writers["labels"].write(labels)
        if "probabilities" in writers:
            writers["probabilities"].write(prob)

    job = segment(data, model, settings, axes=axes, keep=False, on_frame=on_frame)
    try:
        result = drain(job, quiet=args.quiet)
        if not writers:
            raise ValueError("No frame was segmented (stopped before the first frame); nothing written.")
        for w in writers.values():
            created.append(w.commit())
        write_table(outputs["tracks"], {
            "track_id": result.tracks[:, 0].astype(int), "t": result.tracks[:, 1].astype(int),
            "y": result.tracks[:, 2], "x": result.tracks[:, 3],
        })
        created.append(outputs["tracks"])
        write_table(outputs["objects"], result.features)
        created.append(outputs["objects"])
        params = dict(result.params)
        params.update({
            "movie": str(movie_path), "pixel_size": pixel_size, "graph": {str(k): v for k, v in result.graph.items()},
            "outputs": {k: str(v) for k, v in outputs.items()},
            "frames_written": writers["labels"].frames,
            "settings": settings.to_dict(),  # what --params reads back
        })
        write_json(outputs["params"], params)
    except BaseException:
        for w in writers.values():
            w.abort()
        for path in created:  # all or nothing: no partial set of outputs from this run
            path.unlink(missing_ok=True)
        if created_dir and out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    stopped = " (stopped early: partial result)" if result.stopped else ""
    sys.stderr.write(
        f"Segmented {result.params['frames_done']} of {result.params['frames_total']} frame(s) in "
        f"{result.params['seconds']:.1f} s on {result.params['device']}{stopped}: "
        f"{len(np.unique(result.tracks[:, 0])) if len(result.tracks) else 0} track(s) -> {outputs['labels']}\n"
    )
    return 0


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------


def _add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="predicted labels (TIFF, (T,)Y,X) or a binary mask")
    p.add_argument("gt", help="ground-truth labels (TIFF, same shape)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the full report (with per-frame) to this JSON file")
    p.add_argument("--format", choices=["table", "json"], default="table", help="what to print (default table)")
    p.add_argument("--per-frame", action="store_true", help="print one table row per frame too")


def _read_labels(path: str, what: str) -> tuple[np.ndarray, bool]:
    from skimage.measure import label

    from napari_cellnet.core.io import read_stack

    stack = read_stack(path)
    arr = np.asarray(stack.data)
    if "C" in stack.axes and arr.shape[stack.axes.index("C")] > 1:
        raise ValueError(f"{what} {path} has colour channels (axes {stack.axes}); give a label or mask image.")
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what} {path} must be (Y, X) or (T, Y, X) labels, got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"{what} {path} holds fractional values (a probability map?); threshold it into a mask first.")
        arr = arr.astype(np.int64)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    values = np.unique(arr)
    relabelled = False
    if len(values) <= 2 and (arr > 0).any():  # a binary mask: one object per connected component
        arr = np.stack([label(f > 0) for f in arr]) if arr.ndim == 3 else label(arr > 0)
        relabelled = True
    return arr.astype(np.int64, copy=False), relabelled


_TABLE_KEYS = [
    ("error_rate", "error rate"), ("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
    ("f1", "F1 (pixel)"), ("dice", "Dice"), ("iou", "IoU (pixel)"), ("false_white", "false white (px)"),
    ("wp_accuracy", "WP accuracy"), ("seg", "SEG (CTC)"), ("ap", "AP@IoU"), ("instance_f1", "F1 (objects)"),
    ("instance_precision", "precision (objects)"), ("instance_recall", "recall (objects)"),
    ("instance_tp", "objects matched"), ("instance_fp", "false objects"), ("instance_fn", "missed objects"),
]


def format_report(report: dict[str, Any], per_frame: bool = False) -> str:
    """A plain-text table of :func:`~napari_cellnet.core.metrics.segmentation_report`'s output."""
    lines = [f"{'metric':<22} {'value':>12}", "-" * 35]
    for key, name in _TABLE_KEYS:
        v = report[key]
        lines.append(f"{name:<22} {v:>12.0f}" if key in ("false_white", "instance_tp", "instance_fp", "instance_fn")
                     else f"{name:<22} {v:>12.4f}")
    if per_frame:
        cols = ["f1", "iou", "false_white", "seg", "ap", "instance_f1"]
        lines += ["", "frame " + " ".join(f"{c:>12}" for c in cols)]
        for t, row in enumerate(report["per_frame"]):
            lines.append(f"{t:>5} " + " ".join(f"{row[c]:>12.4f}" for c in cols))
    return "\n".join(lines)


@command("evaluate", _add_evaluate_arguments, params=EvaluateParams)
def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare predicted labels with ground truth: pixel metrics (StemNet's, incl. false white and
    WP accuracy), CTC SEG and AP/F1 at an IoU threshold, overall and per frame."""
    from napari_cellnet.core.metrics import segmentation_report

    iou = params_from_args(EvaluateParams, args).iou
    pred, pred_relabelled = _read_labels(args.pred, "Prediction")
    gt, gt_relabelled = _read_labels(args.gt, "Ground truth")
    if pred.shape != gt.shape:
        raise ValueError(
            f"Prediction {args.pred} has shape {pred.shape} but ground truth {args.gt} has {gt.shape}; "
            "compare the same frames at the same size."
        )
    report = segmentation_report(pred, gt, iou_threshold=iou)
    report["iou_threshold"] = iou
    report["pred"], report["gt"] = str(args.pred), str(args.gt)
    report["pred_was_mask"], report["gt_was_mask"] = pred_relabelled, gt_relabelled
    if args.json_path:
        write_json(Path(args.json_path), report)
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2, default=json_default) + "\n")
    else:
        notes = [f"{w} was a binary mask: objects = connected components"
                 for w, flag in (("prediction", pred_relabelled), ("ground truth", gt_relabelled)) if flag]
        head = f"{report['frames']} frame(s), IoU threshold {iou}" + ("; " + "; ".join(notes) if notes else "")
        sys.stdout.write(head + "\n" + format_report(report, args.per_frame) + "\n")
    return 0
