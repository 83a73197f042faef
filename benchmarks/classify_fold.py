"""Run ONE fold (or the refit) of train_classifier's 5-fold CV exactly as train_classifier does
(same stratified split, same fit_model seeds cfg.seed + f, same TTA scoring), so folds can run in
parallel processes. Writes <outdir>/fold<f>.npz (te idx, proba) or refit_state.pt.

Usage: python benchmarks/classify_fold.py OUTDIR '{"prep": {"channels": "gray"}, "epochs": 60}' 2
"""
import json
import sys
import time

import numpy as np
import torch

from napari_cellnet import datasets as S
from napari_cellnet.classification.data import Preprocessing, load_class_folders
from napari_cellnet.classification.fit import Where, fit_model, split_validation
from napari_cellnet.classification.inference import predict_proba
from napari_cellnet.classification.params import ClassifierTrainConfig
from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.core.jobs import TrainEvent, run_job
from napari_cellnet.core.splits import stratified_kfold


def config(over):
    over = dict(over)
    prep = Preprocessing(**{"size": 64, "channels": "rgb", "crop_fraction": 0.8, **over.pop("prep", {})})
    aug = over.pop("aug", None)
    kw = dict(arch="small_cnn", epochs=30, folds=5, **ClassifierTrainConfig.flat_preprocessing(prep), aug_rate=3, lr=3e-3, batch_size=32,
              tta=8, seed=0, refit=True, threads=1, val_fraction=0.0)  # last-epoch models, as the demo
    kw.update(over)
    if aug is not None:
        base = AugmentParams.preset(aug.pop("preset", "strong")).to_dict()
        base.update(aug)
        kw["augment"] = AugmentParams.from_dict(base)
    return ClassifierTrainConfig(**kw), prep

if __name__ == "__main__":
    torch.set_num_threads(1)
    outdir, over, which = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    cfg, prep = config(over)
    samples = load_class_folders(S.hushem_dir(), prep)
    dev = torch.device("cpu")
    hist = []
    t0 = time.perf_counter()
    def show(ev):
        if isinstance(ev, TrainEvent) and ev.kind == "epoch" and ev.epoch % 5 == 0:
            print(f"{which} ep {ev.epoch} loss {ev.train_loss:.3f} tacc {ev.val_metrics.get('train_accuracy'):.3f} {time.perf_counter()-t0:.0f}s", flush=True)
    if which == "refit":
        tr, val = split_validation(samples, cfg.val_fraction, cfg.seed)
        net, _, timing = run_job(fit_model(Where("refit"), cfg, tr, val, dev, hist, cfg.seed), show)
        torch.save(net.state_dict(), f"{outdir}/refit_state.pt")
    else:
        f = int(which)
        tr_idx, te = stratified_kfold(samples.labels, cfg.folds, cfg.seed)[f - 1]
        train, val = split_validation(samples.subset(tr_idx), cfg.val_fraction, cfg.seed + f)
        net, _, timing = run_job(fit_model(Where(f"fold{f}", f, cfg.folds), cfg, train, val, dev, hist, cfg.seed + f),
                                 show)
        aligned = samples.preprocessing.align != "none"
        proba = run_job(predict_proba(net, samples.subset(te).images, dev, 256, cfg.tta, aligned))
        acc = float((proba.argmax(1) == samples.labels[te]).mean())
        np.savez(f"{outdir}/fold{f}.npz", te=te, proba=proba, y=samples.labels[te])
        print(f"RESULT fold{f} acc={acc:.3f}", flush=True)
    wall = time.perf_counter() - t0
    json.dump({"which": which, "wall_s": wall, **timing, "history": hist}, open(f"{outdir}/{which}_timing.json", "w"))
    print(f"DONE {which} wall={wall:.0f}s", flush=True)
