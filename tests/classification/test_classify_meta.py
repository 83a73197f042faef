"""Classifier checkpoint metadata: the shipped model reads and writes back unchanged, the
crop defaults of models that stored none, and a useful error for foreign checkpoints."""

import numpy as np
import pytest

from napari_cellnet import datasets
from napari_cellnet.classification.data import Preprocessing, SampleSet
from napari_cellnet.classification.meta import ClassifierMeta
from napari_cellnet.classification.params import META_VERSION, ClassifierTrainConfig
from napari_cellnet.core.augment import AugmentParams


def test_shipped_demo_meta_round_trips_unchanged():
    from napari_cellnet.classification.inference import load_classifier

    ckpt = load_classifier(datasets.demo_model_path("classification"))
    meta = ClassifierMeta.from_dict(ckpt.meta)
    assert meta.class_names == ["01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous"]
    assert meta.preprocessing == Preprocessing(size=64, channels="rgb", crop_fraction=0.5, align="major_axis",
                                               isolate=True, pad_mode="edge")
    assert meta.selected_by == "refit on all samples" and meta.cv_folds == 5
    assert meta.weights_dtype == "float16" and meta.other == {}
    assert meta.to_dict() == ckpt.meta
    # a gallery-trained model stored no crop settings: crops of its input size, neighbours hidden
    assert meta.crop_options() == {"crop_size": 64, "mask_neighbours": True, "mask_background": False,
                                   "pad_mode": "constant"}
    assert meta.crop_options(crop_size=80, mask_neighbours=False) == {
        "crop_size": 80, "mask_neighbours": False, "mask_background": False, "pad_mode": "constant"}


def test_training_meta_writes_the_keys_it_always_wrote():
    samples = SampleSet(np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1]), ["a", "b"],
                        preprocessing=Preprocessing(size=8, channels="gray"),
                        meta={"source": "objects", "crop_size": 48, "mask_neighbours": False,
                              "mask_background": True, "pad_mode": "edge"})
    cfg = ClassifierTrainConfig(augment=AugmentParams.preset("aligned"))
    meta = ClassifierMeta.for_training(cfg, samples, fold=2, fold_report={"n": 1})
    d = meta.to_dict()
    assert list(d) == ["meta_version", "class_names", "input_size", "in_channels", "preprocessing", "augment",
                       "train_config", "package_version", "source", "crop_size", "mask_neighbours",
                       "mask_background", "pad_mode", "fold", "fold_report"]
    assert d["meta_version"] == META_VERSION and d["input_size"] == 8 and d["in_channels"] == 1
    assert d["augment"] == AugmentParams.preset("aligned").to_dict()
    assert meta.crop_options() == {"crop_size": 48, "mask_neighbours": False, "mask_background": True,
                                   "pad_mode": "edge"}
    assert ClassifierMeta.from_dict(d) == meta


def test_foreign_checkpoint_meta_is_refused_with_advice():
    with pytest.raises(ValueError, match="model.pt lacks 'preprocessing'.*napari-cellnet"):
        ClassifierMeta.from_dict({"class_names": ["a", "b"]}, "model.pt")
