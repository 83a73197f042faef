"""Classifier training: the loss falls, k-fold bookkeeping, checkpoints, STOP, prediction."""

import numpy as np
import pytest
import torch

from napari_cellnet.classification.data import Preprocessing, SampleSet, load_image_stack
from napari_cellnet.classification.fit import classification_loss, start_fit
from napari_cellnet.classification.inference import classify, load_classifier, majority_per_track
from napari_cellnet.classification.params import ClassifierTrainConfig
from napari_cellnet.classification.report import cv_table
from napari_cellnet.classification.sampling import iterate_batches
from napari_cellnet.classification.training import train_classifier
from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.core.jobs import STOP, TrainEvent, run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(n=20, size=16, seed=0):
    """Class 'blob': filled disk; class 'ring': hollow ring; random centre shifts and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, classes = [], []
    for i in range(2 * n):
        cy, cx = size / 2 + rng.uniform(-1.5, 1.5, 2)
        r = np.hypot(yy - cy, xx - cx)
        ring = i % 2 == 1
        img = ((r > 3) & (r < 5.5)).astype(float) if ring else (r < 4.5).astype(float)
        imgs.append(img + rng.normal(0, 0.15, img.shape))
        classes.append("ring" if ring else "blob")
    return load_image_stack(np.stack(imgs).astype(np.float32), classes, ["blob", "ring"],
                            Preprocessing(size=size, normalisation="none"))


def _cfg(**kw):
    base = dict(arch="small_cnn", model_config={"width": 8, "blocks": 2}, epochs=6, batch_size=8, lr=0.01,
                augment=AugmentParams(), aug_rate=3, scheduler="none", warmup_epochs=0, folds=2, val_fraction=0.0,
                refit=False, device="cpu", dropout=0.0,
                label_smoothing=0.0, threads=1)
    base.update(kw)
    return ClassifierTrainConfig(**base)


def test_loss_falls_and_kfold_bookkeeping(tmp_path):
    samples = _toy()
    events = []
    result = run_job(train_classifier(samples, _cfg(), tmp_path), events.append)
    runs = [h for h in result.history if h["run"] == "fold1"]
    assert len(runs) == 6
    assert runs[-1]["train_loss"] < 0.7 * runs[0]["train_loss"]
    # every sample is scored exactly once, by the fold that did not train on it
    assert sorted(result.oof["index"].tolist()) == list(range(len(samples)))
    assert len(result.folds) == 2 and result.pooled["n"] == 40
    # stratified: each test fold holds 10 of each class
    for f in (1, 2):
        counts = np.bincount(result.oof["y_true"][result.oof["fold"] == f], minlength=2)
        assert counts.tolist() == [10, 10]
    assert result.summary["accuracy"]["mean"] >= 0.9  # the toy problem is easy
    assert sum(isinstance(e, TrainEvent) and e.kind == "epoch" for e in events) == 12
    for name in ("fold1.pt", "fold2.pt", "model.pt", "report.json", "history.csv", "oof_predictions.csv"):
        assert (tmp_path / name).is_file(), name
    ck = load_classifier(tmp_path / "model.pt")
    assert ck.meta["class_names"] == ["blob", "ring"]
    assert ck.meta["input_size"] == 16 and ck.meta["in_channels"] == 1
    assert ck.meta["preprocessing"]["normalisation"] == "none"
    # the table's fold rows carry each fold's accuracy, recomputed here from the out-of-fold predictions
    rows = {line.split()[0]: line.split() for line in cv_table(result).splitlines()[1:4]}
    for f in (1, 2):
        in_fold = result.oof["fold"] == f
        acc = np.mean(result.oof["y_pred"][in_fold] == result.oof["y_true"][in_fold])
        assert rows[str(f)][1:3] == ["20", f"{acc:.3f}"]
    assert rows["mean"][1] == f"{np.mean([np.mean(result.oof['y_pred'][result.oof['fold'] == f] == result.oof['y_true'][result.oof['fold'] == f]) for f in (1, 2)]):.3f}"


def test_stop_keeps_model_and_skips_folds(tmp_path):
    samples = _toy(n=10)
    job = train_classifier(samples, _cfg(epochs=5, refit=True), tmp_path)
    reply = None
    try:
        while True:
            ev = job.send(reply)
            reply = STOP if isinstance(ev, TrainEvent) and ev.kind == "epoch" and ev.epoch == 2 else None
    except StopIteration as done:
        result = done.value
    assert result.stopped
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert len(result.folds) == 1  # the stopped fold is still scored
    assert result.checkpoint is not None and result.checkpoint.is_file()


def test_holdout_with_validation_selects_best_epoch(tmp_path):
    samples = _toy(n=15)
    result = run_job(train_classifier(samples, _cfg(folds=1, val_fraction=0.25, epochs=4), None))
    assert len(result.folds) == 1
    assert all("val_loss" in h for h in result.history)
    assert result.checkpoint is None  # nothing written without out_dir


def test_refit_trains_on_every_sample_with_the_recipes_epochs(tmp_path):
    samples = _toy(n=12)
    result = run_job(train_classifier(samples, _cfg(folds=2, val_fraction=0.25, epochs=5, refit=True), tmp_path))
    assert all("val_loss" in h for h in result.history if h["run"] in ("fold1", "fold2"))
    refit_rows = [h for h in result.history if h["run"] == "refit"]
    assert [h["epoch"] for h in refit_rows] == [1, 2, 3, 4, 5]
    assert all("val_loss" not in h for h in refit_rows)  # no held-out split: every sample trains the model


def test_focal_loss_equals_hand_computed_value():
    import math

    import torch
    import torch.nn.functional as F

    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    p0 = math.exp(2) / (math.exp(2) + 1)  # probability of the true class of row 0; row 1: 0.5
    want = (-(1 - p0) ** 2 * math.log(p0) - 0.5**2 * math.log(0.5)) / 2
    assert float(classification_loss(logits, y, "focal", focal_gamma=2.0)) == pytest.approx(want, rel=1e-6)
    # smoothed targets (0.95, 0.05) and class weights (1, 3) enter every term
    s, w = 0.1, torch.tensor([1.0, 3.0])
    row0 = -(0.95 * (1 - p0) ** 2 * math.log(p0) + 3 * 0.05 * p0**2 * math.log(1 - p0))
    row1 = -(0.05 * 0.25 * math.log(0.5) + 3 * 0.95 * 0.25 * math.log(0.5))
    got = classification_loss(logits, y, "focal", label_smoothing=s, focal_gamma=2.0, weights=w)
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # gamma 0 is cross-entropy with the same label smoothing
    torch.testing.assert_close(classification_loss(logits, y, "focal", label_smoothing=s, focal_gamma=0.0),
                               F.cross_entropy(logits, y, label_smoothing=s))
    # a well-classified sample weighs less than under cross-entropy
    easy = torch.tensor([[6.0, 0.0]])
    assert classification_loss(easy, y[:1], "focal") < 1e-3 * classification_loss(easy, y[:1], "ce")


def test_balanced_sampler_draws_classes_equally_and_weights_are_inverse_frequency():
    labels = np.array([0] * 30 + [1] * 6)
    images = np.zeros((36, 1, 8, 8), np.float32)
    rng = np.random.default_rng(0)
    drawn = np.concatenate([yb for _ in range(40) for _, yb in iterate_batches(rng, images, labels, 12, rate=2,
                                                                              balance="sampler")])
    assert drawn.size == 40 * 72
    assert abs(np.mean(drawn == 1) - 0.5) < 0.03  # 1 in 6 without the sampler
    plain = np.concatenate([yb for _, yb in iterate_batches(rng, images, labels, 12, rate=2)])
    assert np.mean(plain == 1) == pytest.approx(6 / 36)
    # balance="weights" (and loss="weighted_ce") weight the loss by N / (K n_c)
    samples = SampleSet(images, labels, ["a", "b"], preprocessing=Preprocessing(size=8, channels="gray"))
    state = start_fit(_cfg(balance="weights"), samples, torch.device("cpu"), {"arch": "small_cnn", "width": 8,
                                                                              "blocks": 2})
    np.testing.assert_allclose(state.weights.numpy(), [36 / 60, 36 / 12])
    assert start_fit(_cfg(), samples, torch.device("cpu"), {"arch": "small_cnn"}).weights is None


def test_focal_loss_and_sampler_train_the_toy_problem():
    samples = _toy()
    cfg = _cfg(loss="focal", balance="sampler", epochs=8, folds=2, label_smoothing=0.1, scheduler="cosine")
    result = run_job(train_classifier(samples, cfg, None))
    losses = [h["train_loss"] for h in result.history if h["run"] == "fold1"]
    assert losses[-1] < 0.6 * losses[0]  # 0.37-0.42 over seeds 0-2
    assert len(result.folds) == 2 and result.summary["accuracy"]["mean"] >= 0.9  # 1.0 over seeds 0-2


def test_bad_config_and_data():
    with pytest.raises(ValueError, match="Unknown classifier"):
        ClassifierTrainConfig(arch="vgg99")
    with pytest.raises(ValueError, match="Unknown loss"):
        ClassifierTrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="val_fraction"):
        ClassifierTrainConfig(patience=3, val_fraction=0)
    one = SampleSet(np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64), ["a", "b"])
    with pytest.raises(ValueError, match="at least 2 classes"):
        run_job(train_classifier(one, _cfg()))
    few = _toy(n=2)
    with pytest.raises(ValueError, match="fewer than the 5 folds"):
        run_job(train_classifier(few, _cfg(folds=5)))


def test_predict_objects_features_and_tracks(tmp_path):
    samples = _toy()
    run_job(train_classifier(samples, _cfg(folds=0, refit=True, epochs=8), tmp_path))
    # a 3-frame movie: label 1 is a blob in every frame, label 2 a ring
    yy, xx = np.mgrid[:40, :40]
    movie = np.zeros((3, 40, 40), np.float32)
    labels = np.zeros((3, 40, 40), np.uint16)
    for t in range(3):
        r1 = np.hypot(yy - 10, xx - 10 - t)
        r2 = np.hypot(yy - 28, xx - 28)
        movie[t] = (r1 < 4.5) + ((r2 > 3) & (r2 < 5.5))
        labels[t][r1 < 6] = 1
        labels[t][r2 < 6.5] = 2
    table = run_job(classify(tmp_path / "model.pt", image=movie, labels=labels, device="cpu",
                             mask_neighbours=True))
    assert table["frame"].tolist() == [0, 0, 1, 1, 2, 2]
    assert table["label"].tolist() == [1, 2, 1, 2, 1, 2]
    np.testing.assert_allclose(table["p_blob"] + table["p_ring"], 1, atol=1e-5)
    assert table["class"].tolist() == ["blob", "ring"] * 3
    assert table["track_class"].tolist() == ["blob", "ring"] * 3
    empty = run_job(classify(tmp_path / "model.pt", image=movie, labels=np.zeros_like(labels)))
    assert len(empty["class"]) == 0


def test_majority_per_track():
    tc, agree = majority_per_track(np.array([1, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 0]))
    assert tc.tolist() == [1, 1, 1, 0, 0]  # tie -> lowest class index
    np.testing.assert_allclose(agree, [2 / 3, 2 / 3, 2 / 3, 0.5, 0.5])


def test_mixup_blends_targets_and_still_learns():
    samples = _toy()
    plain = run_job(train_classifier(samples, _cfg(folds=2, epochs=15)))
    mixed = run_job(train_classifier(samples, _cfg(folds=2, epochs=15, mixup=0.4)))
    # blended targets cannot be fitted to zero loss: the mixup run ends with a clearly higher training loss
    last = {r: [h for h in res.history if h["run"] == "fold1"][-1]["train_loss"] for r, res in
            (("plain", plain), ("mixed", mixed))}
    assert last["mixed"] > last["plain"] + 0.1
    assert mixed.summary["accuracy"]["mean"] >= 0.9  # still learns the toy problem
    with pytest.raises(ValueError, match="mixup"):
        ClassifierTrainConfig(mixup=-0.1)


def test_default_augmentation_follows_the_samples_alignment(tmp_path):
    samples = _toy(n=4)  # prepared without alignment
    run_job(train_classifier(samples, _cfg(augment=None, epochs=1, folds=0, refit=True), tmp_path / "a"))
    assert load_classifier(tmp_path / "a" / "model.pt").meta["augment"]["rotation_range"] == 180  # "strong"
    aligned = load_image_stack(np.moveaxis(samples.images, 1, -1)[..., 0], [samples.class_names[i] for i in samples.labels],
                               samples.class_names, Preprocessing(size=16, normalisation="none", align="major_axis"))
    run_job(train_classifier(aligned, _cfg(augment=None, epochs=1, folds=0, refit=True), tmp_path / "b"))
    meta = load_classifier(tmp_path / "b" / "model.pt").meta
    assert meta["augment"]["rotation_range"] == 20 and meta["preprocessing"]["align"] == "major_axis"
    assert ClassifierTrainConfig().preprocessing.align == "major_axis"  # the recipe default


def test_ensemble_of_seeded_networks_averages_probabilities(tmp_path):
    import torch

    samples = _toy(n=6)
    result = run_job(train_classifier(samples, _cfg(ensemble=2, epochs=2, folds=2, refit=True), tmp_path))
    runs = [h["run"] for h in result.history]
    assert sorted(set(runs)) == ["fold1 net 1/2", "fold1 net 2/2", "fold2 net 1/2", "fold2 net 2/2",
                                 "refit net 1/2", "refit net 2/2"]
    ck = load_classifier(tmp_path / "model.pt")
    assert ck.model == "ensemble" and ck.config["members"] == 2 and ck.config["arch"] == "small_cnn"
    net = ck.build("cpu")
    x = torch.from_numpy(samples.images[:5])
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in net.members]).mean(0)
        np.testing.assert_allclose(torch.softmax(net(x), 1).numpy(), mean.numpy(), atol=1e-6)
        a, b = (torch.softmax(m(x), 1) for m in net.members)
    assert not torch.allclose(a, b)  # the members were trained from different seeds
    assert load_classifier(tmp_path / "fold1.pt").model == "ensemble"
    with pytest.raises(ValueError, match="ensemble=N"):
        ClassifierTrainConfig(arch="ensemble")
    with pytest.raises(ValueError, match="ensemble must be"):
        ClassifierTrainConfig(ensemble=0)


def test_mixed_ensemble_trains_each_architecture_and_reloads(tmp_path):
    import torch

    samples = _toy(n=6)
    members = [{"arch": "small_cnn", "width": 8, "blocks": 2}] * 2 + [{"arch": "resnet18", "width": 8}]
    cfg = _cfg(members=members, model_config={}, epochs=1, folds=0, refit=True)
    assert cfg.arch == "small_cnn" and cfg.member_specs() == members
    result = run_job(train_classifier(samples, cfg, tmp_path / "mixed"))
    assert [h["run"] for h in result.history] == ["refit net 1/3 (small_cnn)", "refit net 2/3 (small_cnn)",
                                                  "refit net 3/3 (resnet18)"]
    ck = load_classifier(tmp_path / "mixed" / "model.pt")
    assert ck.model == "ensemble" and ck.config["members"] == members
    net = ck.build("cpu")
    assert [type(m).__name__ for m in net.members] == ["SmallCNN", "SmallCNN", "ResNet18"]
    # seeds: the k-th network of an architecture starts from seed + 7919 k, so the first small_cnn
    # is the network a single small_cnn run trains, and the resnet18 one a single resnet18 run
    run_job(train_classifier(samples, _cfg(epochs=1, folds=0, refit=True), tmp_path / "single"))
    single = load_classifier(tmp_path / "single" / "model.pt").build("cpu")
    x = torch.from_numpy(samples.images[:4])
    with torch.no_grad():
        torch.testing.assert_close(net.members[0](x), single(x))
        assert not torch.allclose(net.members[1](x), single(x))
    assert load_classifier(tmp_path / "mixed" / "model.pt").meta["train_config"]["members"] == members
    with pytest.raises(ValueError, match="not both"):
        ClassifierTrainConfig(members=members, ensemble=2)
    with pytest.raises(ValueError, match="pretrained"):
        ClassifierTrainConfig(members=members, pretrained="w.pt")
    with pytest.raises(ValueError, match="Unknown ensemble member"):
        ClassifierTrainConfig(members=[{"arch": "vgg"}])


def test_stop_during_a_later_ensemble_member_keeps_the_finished_one(tmp_path):
    samples = _toy(n=6)
    seen: list = []
    stop = lambda: any(isinstance(e, TrainEvent) and e.message == "refit net 2/2" for e in seen)  # noqa: E731
    result = run_job(train_classifier(samples, _cfg(ensemble=2, epochs=3, folds=0, refit=True), tmp_path),
                     seen.append, stop)
    assert result.stopped
    ck = load_classifier(tmp_path / "model.pt")
    assert ck.model == "small_cnn"  # the half-trained second network was dropped
    assert [h["run"] for h in result.history if h["run"] == "refit net 1/2"] == ["refit net 1/2"] * 3
