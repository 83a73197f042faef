"""CLI round trips: train-cls -> classify (folder and Labels movie) -> evaluate-cls; bad input."""

import json

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_cellnet.cli.app import main
from napari_cellnet.core.io import read_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _disk_or_ring(rng, ring, size=24):
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size / 2 + rng.uniform(-1.5, 1.5, 2)
    r = np.hypot(yy - cy, xx - cx)
    img = ((r > 4) & (r < 7)) if ring else (r < 6)
    return np.clip(img * 200 + rng.normal(20, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    for cls, ring in (("blob", False), ("ring", True)):
        (root / cls).mkdir()
        for i in range(12):
            imsave(root / cls / f"{cls}_{i:02d}.png", _disk_or_ring(rng, ring), check_contrast=False)
    return root


TRAIN = ["--arch", "small_cnn", "--model-config", '{"width": 8, "blocks": 2}', "--size", "24",
         "--epochs", "8", "--batch-size", "8", "--lr", "0.01", "--aug", "none", "--aug-rate", "3",
         "--scheduler", "none", "--label-smoothing", "0", "--dropout", "0", "--device", "cpu", "-q",
         "--threads", "1"]


@pytest.fixture(scope="module")
def trained(gallery, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    assert main(["train-cls", str(gallery), "--folds", "0", "-o", str(out), *TRAIN]) == 0
    return out


def test_train_writes_model_and_report(trained):
    assert (trained / "model.pt").is_file()
    report = json.loads((trained / "report.json").read_text())
    assert report["class_names"] == ["blob", "ring"]
    assert report["folds"] == [] and report["summary"]["n_samples"] == 24
    history = read_table(trained / "history.csv")
    assert history["epoch"] == list(range(1, 9)) and set(history["run"]) == {"refit"}
    from napari_cellnet.classification.inference import load_classifier

    prep = load_classifier(trained / "model.pt").meta["preprocessing"]
    assert (prep["align"], prep["isolate"]) == ("major_axis", True)  # the CLI's default recipe


def test_align_none_defaults_to_any_angle_augmentation(gallery, tmp_path):
    from napari_cellnet.classification.inference import load_classifier

    out = tmp_path / "plain"
    i = TRAIN.index("--aug")
    args = TRAIN[:i] + TRAIN[i + 2:]  # no --aug: the default for unaligned cells
    assert main(["train-cls", str(gallery), "--folds", "0", "--align", "none", "-o", str(out), *args,
                 "--epochs", "1"]) == 0
    meta = load_classifier(out / "model.pt").meta
    assert (meta["preprocessing"]["align"], meta["preprocessing"]["isolate"]) == ("none", False)
    assert meta["augment"]["rotation_range"] == 180  # "strong": cells at any angle


def test_train_cv_table_and_out_of_fold_predictions(gallery, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["train-cls", str(gallery), "--folds", "2", "--no-refit", "-o", str(out), *TRAIN,
                 "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "pooled   24" in text and "confusion matrix" in text
    assert (out / "fold1.pt").is_file() and (out / "fold2.pt").is_file() and (out / "model.pt").is_file()
    oof = read_table(out / "oof_predictions.csv")
    assert sorted(oof["path"]) == sorted(f"{c}/{c}_{i:02d}.png" for c in ("blob", "ring") for i in range(12))
    assert sorted(oof["fold"]) == [1] * 12 + [2] * 12


def test_train_mixed_ensemble_from_members(gallery, tmp_path, capsys):
    from napari_cellnet.classification.inference import load_classifier

    out = tmp_path / "mixed"
    args = TRAIN[4:]  # no --arch / --model-config: --members names the networks
    assert main(["train-cls", str(gallery), "--folds", "0", "-o", str(out), *args, "--epochs", "1",
                 "--members", "small_cnn:width=8:blocks=2*2,resnet18:width=8"]) == 0
    ck = load_classifier(out / "model.pt")
    assert ck.model == "ensemble"
    assert ck.config["members"] == [{"arch": "small_cnn", "width": 8, "blocks": 2}] * 2 + [{"arch": "resnet18",
                                                                                          "width": 8}]
    assert main(["train-cls", str(gallery), "-o", str(out), *TRAIN, "--members", "small_cnn"]) == 2
    assert "not in model_config" in capsys.readouterr().err


def test_classify_folder_round_trip(trained, gallery, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["classify", str(gallery), "--model", str(trained / "model.pt"), "-o", str(out), "-q",
                 "--device", "cpu"]) == 0
    t = read_table(out)
    assert len(t["path"]) == 24
    assert set(t) >= {"path", "class", "class_index", "confidence", "p_blob", "p_ring", "true_class"}
    np.testing.assert_allclose(np.add(t["p_blob"], t["p_ring"]), 1, atol=1e-5)
    acc = np.mean(np.asarray(t["class"]) == np.asarray(t["true_class"]))
    assert acc >= 0.9  # trained on these very images
    assert "24 images classified" in capsys.readouterr().out


def test_evaluate_round_trip(trained, gallery, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate-cls", str(gallery), "--model", str(trained / "model.pt"), "-o", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "confusion matrix" in text and "specif." in text
    rep = json.loads(out.read_text())
    assert np.sum(rep["confusion_matrix"]) == 24


def test_classify_labels_movie(trained, tmp_path):
    rng = np.random.default_rng(1)
    movie = np.zeros((2, 64, 64), np.uint8)
    labels = np.zeros((2, 64, 64), np.uint16)
    for t in range(2):
        movie[t, 4:28, 4:28] = _disk_or_ring(rng, False)
        movie[t, 34:58, 34:58] = _disk_or_ring(rng, True)
        labels[t, 6:26, 6:26] = 1
        labels[t, 36:56, 36:56] = 2
    tifffile.imwrite(tmp_path / "movie.tif", movie)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    out = tmp_path / "objects.csv"
    assert main(["classify", "--image", str(tmp_path / "movie.tif"), "--labels", str(tmp_path / "labels.tif"),
                 "--model", str(trained / "model.pt"), "--crop-size", "24", "-o", str(out), "-q"]) == 0
    t = read_table(out)
    assert t["frame"] == [0, 0, 1, 1] and t["label"] == [1, 2, 1, 2]
    assert "track_class" in t and "centroid_y" in t


def test_train_on_objects_with_class_table(tmp_path, capsys):
    rng = np.random.default_rng(2)
    movie = np.zeros((6, 64, 64), np.uint8)
    labels = np.zeros((6, 64, 64), np.uint16)
    rows = {"frame": [], "label": [], "class": []}
    for t in range(6):
        movie[t, 4:28, 4:28] = _disk_or_ring(rng, False)
        movie[t, 34:58, 34:58] = _disk_or_ring(rng, True)
        labels[t, 6:26, 6:26] = 1
        labels[t, 36:56, 36:56] = 2
        rows["frame"] += [t, t]
        rows["label"] += [1, 2]
        rows["class"] += ["blob", "ring"]
    tifffile.imwrite(tmp_path / "m.tif", movie)
    tifffile.imwrite(tmp_path / "l.tif", labels)
    from napari_cellnet.core.io import write_table

    write_table(tmp_path / "classes.csv", rows)
    assert main(["train-cls", "--image", str(tmp_path / "m.tif"), "--labels", str(tmp_path / "l.tif"),
                 "--classes", str(tmp_path / "classes.csv"), "--crop-size", "24", "--folds", "2",
                 "--no-refit", "-o", str(tmp_path / "om"), *TRAIN, "--epochs", "2"]) == 0
    assert "pooled   12" in capsys.readouterr().out
    from napari_cellnet.classification.inference import load_classifier

    meta = load_classifier(tmp_path / "om" / "model.pt").meta
    assert meta["crop_size"] == 24 and meta["mask_neighbours"] is True and meta["source"] == "objects"
    rows["label"][0] = 7
    write_table(tmp_path / "bad.csv", rows)
    assert main(["train-cls", "--image", str(tmp_path / "m.tif"), "--labels", str(tmp_path / "l.tif"),
                 "--classes", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "x"), *TRAIN]) == 2
    assert "(frame 0, label 7)" in capsys.readouterr().err


def test_bad_input_messages(gallery, trained, tmp_path, capsys):
    only = tmp_path / "one"
    (only / "a").mkdir(parents=True)
    imsave(only / "a" / "x.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    assert main(["train-cls", str(only), "-o", str(tmp_path / "m"), *TRAIN]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
    assert main(["train-cls", str(tmp_path / "missing"), "-o", str(tmp_path / "m"), *TRAIN]) == 2
    assert "No such dataset folder" in capsys.readouterr().err
    other = tmp_path / "other"
    for c in ("blob", "triangle"):
        (other / c).mkdir(parents=True)
        imsave(other / c / "x.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    assert main(["evaluate-cls", str(other), "--model", str(trained / "model.pt"), "-q"]) == 2
    assert "unknown: ['triangle']" in capsys.readouterr().err
    assert main(["classify", "--model", str(trained / "model.pt"), "-o", str(tmp_path / "p.csv")]) == 2
    assert "Give a FOLDER" in capsys.readouterr().err
    assert main(["classify", str(gallery), "--model", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "p.csv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_train_on_image_stack_with_class_csv(tmp_path, capsys):
    from napari_cellnet.core.io import write_table

    rng = np.random.default_rng(3)
    stack = np.stack([_disk_or_ring(rng, i % 2 == 1) for i in range(8)])
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    write_table(tmp_path / "cls.csv", {"class": ["blob", "ring"] * 4})
    assert main(["train-cls", str(tmp_path / "stack.tif"), "--classes", str(tmp_path / "cls.csv"),
                 "--folds", "0", "-o", str(tmp_path / "sm"), *TRAIN, "--epochs", "1"]) == 0
    from napari_cellnet.classification.inference import load_classifier

    assert load_classifier(tmp_path / "sm" / "model.pt").meta["class_names"] == ["blob", "ring"]
    assert main(["train-cls", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "x"), *TRAIN]) == 2
    assert "give --classes" in capsys.readouterr().err


def _train_args(argv):
    from napari_cellnet.cli import build_parser

    return build_parser().parse_args(["train-cls", *argv])


def test_train_flags_are_the_parameter_object():
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.cli.flags import params_from_args

    assert params_from_args(ClassifierTrainConfig, _train_args(["g", "-o", "m"])) == ClassifierTrainConfig()
    # the command lines of before the parameter object still mean what they meant
    cfg = params_from_args(ClassifierTrainConfig, _train_args(
        ["g", "-o", "m", "--crop", "0.5", "--size", "48", "--keep-surroundings", "--aug", "strong", "--fill-mode",
         "constant", "--no-refit", "--no-mask-neighbours", "--crop-size", "40", "--members", "small_cnn*2,resnet18",
         "--model-config", "{}", "--balance", "sampler", "--activation", "elu", "--val-fraction", "0"]))
    prep = cfg.preprocessing
    assert (prep.size, prep.crop_fraction, prep.align, prep.isolate) == (48, 0.5, "major_axis", False)
    assert cfg.augment.rotation_range == 180 and cfg.augment.fill_mode == "constant"
    assert (cfg.refit, cfg.mask_neighbours, cfg.crop_size, cfg.balance, cfg.activation) == (False, False, 40,
                                                                                            "sampler", "elu")
    assert [m["arch"] for m in cfg.member_specs()] == ["small_cnn", "small_cnn", "resnet18"]
    assert cfg.val_fraction == 0.0


def test_train_params_json_layers_under_the_flags(tmp_path):
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.cli.flags import params_from_args

    saved = ClassifierTrainConfig(epochs=7, crop_fraction=0.5, members=[{"arch": "small_cnn", "width": 8}] * 2)
    path = saved.to_json(tmp_path / "params.json")
    assert params_from_args(ClassifierTrainConfig, _train_args(["g", "-o", "m", "--params", str(path)])) == saved
    cfg = params_from_args(ClassifierTrainConfig, _train_args(["g", "-o", "m", "--params", str(path), "--epochs", "3"]))
    assert (cfg.epochs, cfg.crop_fraction) == (3, 0.5)
    assert json.loads(path.read_text())["members"] == [{"arch": "small_cnn", "width": 8}] * 2


def test_configs_stored_in_checkpoints_read_back():
    from napari_cellnet.classification.inference import load_classifier
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.datasets import demo_model_path

    stored = load_classifier(demo_model_path("classification")).meta["train_config"]
    assert "size" not in stored  # written before the flat input fields existed
    cfg = ClassifierTrainConfig.from_dict(stored)
    assert cfg.to_dict()["preprocessing"] == stored["preprocessing"]
    assert cfg.to_dict()["augment"] == stored["augment"]
    assert (cfg.crop_fraction, cfg.tta, cfg.val_fraction, cfg.aug) == (0.5, 4, 0.0, None)
    assert {k: v for k, v in cfg.to_dict().items() if k in stored} == stored


def test_spelled_out_choices_are_the_registered_ones():
    from napari_cellnet.classification import params
    from napari_cellnet.core.augment import AugmentParams
    from napari_cellnet.core.optim import OPTIMIZERS, SCHEDULERS
    from napari_cellnet.models import available_models
    from napari_cellnet.models.classifier import ACTIVATIONS

    assert set(params.CLASSIFIERS) == set(available_models("classification")) - {"ensemble"}
    assert params.ACTIVATIONS == ACTIVATIONS
    assert set(params.OPTIMIZERS) == set(OPTIMIZERS) and set(params.SCHEDULERS) == set(SCHEDULERS)
    for name in params.AUG_PRESETS:
        AugmentParams.preset(name)


def test_object_crop_options_are_refused_for_a_gallery(trained, gallery, tmp_path, capsys):
    model = str(trained / "model.pt")
    assert main(["classify", str(gallery), "--model", model, "-o", str(tmp_path / "p.csv"), "--crop-size", "32"]) == 2
    assert "--crop-size set how objects of a Labels movie are cropped" in capsys.readouterr().err
    assert main(["evaluate-cls", str(gallery), "--model", model, "--no-mask-neighbours", "-q"]) == 2
    assert "--mask-neighbours" in capsys.readouterr().err
    assert main(["evaluate-cls", str(gallery), "--model", model, "--batch", "0", "-q"]) == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err
