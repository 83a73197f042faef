"""One short tuning trial of the HuSHeM classifier: the first N folds of the 5-fold CV split.

Used to compare recipe changes one at a time on fold 1 only (so the remaining folds stay
untouched for the final, unbiased CV of a recipe that wins here)::

    nice -n 5 python benchmarks/classify_trial.py crop06 '{"prep": {"crop_fraction": 0.6}}' 1

The JSON overrides fields of :class:`ClassifierTrainConfig`; ``"prep"`` overrides the
:class:`Preprocessing` fields and ``"aug"`` the fields of the ``strong`` augmentation preset
(or ``{"preset": "light", ...}``). The base recipe is the session-1 demo's (small_cnn, 64 px RGB
from the central 80 %, strong augmentation at 3x, AdamW 3e-3 + cosine, label smoothing 0.1,
batch 32, 30 epochs, TTA 8, seed 0, 1 torch thread). Prints a ``RESULT`` line with the
accuracy of every fold run and the wall time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_classify  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__)
        return 2
    from napari_cellnet import datasets as sample_data
    from napari_cellnet.classification.data import Preprocessing, load_class_folders
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.classification.training import train_classifier
    from napari_cellnet.core.augment import AugmentParams
    from napari_cellnet.core.jobs import TrainEvent

    name, over = argv[0], json.loads(argv[1])
    n_folds = int(argv[2]) if len(argv) > 2 else 1
    torch.set_num_threads(1)
    prep = Preprocessing(**{"size": 64, "channels": "rgb", "crop_fraction": 0.8, **over.pop("prep", {})})
    aug = over.pop("aug", None)
    kw = {"arch": "small_cnn", "epochs": 30, "folds": 5, "preprocessing": prep, "aug_rate": 3, "lr": 3e-3,
          "batch_size": 32, "tta": 8, "seed": 0, "refit": False, "threads": 1, "val_fraction": 0.0, **over}
    if aug is not None:
        base = AugmentParams.preset(aug.pop("preset", "strong")).to_dict()
        base.update(aug)
        kw["augment"] = AugmentParams.from_dict(base)
    samples = load_class_folders(sample_data.hushem_dir(), prep)
    cfg = ClassifierTrainConfig(**kw)
    t0 = time.perf_counter()

    def show(ev: object) -> None:
        if isinstance(ev, TrainEvent) and ev.kind == "epoch" and (ev.epoch % 5 == 0 or ev.epoch == ev.epochs):
            print(f"{name} {ev.message} ep {ev.epoch}/{ev.epochs} loss {ev.train_loss:.3f} "
                  f"train acc {ev.val_metrics.get('train_accuracy', float('nan')):.3f} "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)

    result = bench_classify.drain(bench_classify.limit_folds(train_classifier(samples, cfg, None), n_folds), show)
    accs = [round(float(r["accuracy"]), 3) for r in result.folds]
    print(f"RESULT {name} folds={len(accs)} acc={accs} wall={time.perf_counter() - t0:.0f}s "
          f"overrides={argv[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
