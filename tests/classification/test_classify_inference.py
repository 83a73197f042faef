"""Prediction: TTA, class-name matching in evaluate, tables for layer.features, bad models."""

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_cellnet.classification.data import Preprocessing, SampleSet
from napari_cellnet.classification.inference import (
    evaluate,
    load_classifier,
    predict_proba,
    result_table,
)
from napari_cellnet.core.jobs import run_job
from napari_cellnet.models import build_model
from napari_cellnet.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(tmp_path, names=("a", "b", "c"), channels=1, size=16):
    torch.manual_seed(0)
    cfg = {"in_channels": channels, "n_classes": len(names), "width": 4, "blocks": 2}
    net = build_model("small_cnn", **cfg)
    meta = {"class_names": list(names), "input_size": size,
            "preprocessing": Preprocessing(size=size, channels="gray" if channels == 1 else "rgb").to_dict()}
    return save_checkpoint(tmp_path / "m.pt", net, "small_cnn", cfg, "classification", meta), net


def test_tta_is_invariant_for_symmetric_images_and_rows_sum_to_one(tmp_path):
    _, net = _model(tmp_path)
    net.eval()
    x = np.zeros((3, 1, 16, 16), np.float32)
    x[:, :, 4:12, 4:12] = 1.0  # symmetric under the 8 flips/rotations
    p1 = run_job(predict_proba(net, x, "cpu", 2, tta=1))
    p8 = run_job(predict_proba(net, x, "cpu", 2, tta=8))
    np.testing.assert_allclose(p1, p8, atol=1e-5)
    np.testing.assert_allclose(p1.sum(1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        run_job(predict_proba(net, x, "cpu", 2, tta=9))


def test_evaluate_matches_classes_by_name(tmp_path):
    path, _ = _model(tmp_path)
    data = tmp_path / "data"
    for c in ("c", "a"):  # a subset of the model's classes, other order on disk
        (data / c).mkdir(parents=True)
        for i in range(2):
            imsave(data / c / f"{i}.png", np.full((10, 10), 50 * i, np.uint8), check_contrast=False)
    out = run_job(evaluate(path, data, device="cpu"))
    rep = out["report"]
    assert rep["class_names"] == ["a", "b", "c"]
    cm = np.asarray(rep["confusion_matrix"])
    assert cm.sum(axis=1).tolist() == [2, 0, 2]  # truths mapped by name
    assert out["table"]["true_class"].tolist() == ["a", "a", "c", "c"]


def test_result_table_columns_for_features():
    samples = SampleSet(np.zeros((3, 1, 4, 4), np.float32), np.array([0, -1, 1]), ["x", "y"],
                        {"frame": np.array([0, 0, 1]), "label": np.array([5, 6, 5])})
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], np.float32)
    t = result_table(samples, proba, ["x", "y"])
    assert t["class"].tolist() == ["x", "y", "y"]
    assert t["class_index"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(t["confidence"], [0.9, 0.8, 0.6])
    np.testing.assert_allclose(t["p_y"], [0.1, 0.8, 0.6])
    assert t["track_class"].tolist() == ["x", "y", "x"]  # label 5: one x, one y -> tie -> x
    assert t["true_class"].tolist() == ["x", "", "y"]


def test_refuses_wrong_task_and_missing_meta(tmp_path):
    net = build_model("small_cnn", in_channels=1, n_classes=2, width=4, blocks=1)
    p = save_checkpoint(tmp_path / "seg.pt", net, "small_cnn", {"in_channels": 1, "n_classes": 2, "width": 4,
                                                                 "blocks": 1}, "segmentation")
    with pytest.raises(ValueError, match="classification model is needed"):
        load_classifier(p)
    p2 = save_checkpoint(tmp_path / "bare.pt", net, "small_cnn", {"in_channels": 1, "n_classes": 2, "width": 4,
                                                                   "blocks": 1}, "classification")
    with pytest.raises(ValueError, match="class_names"):
        load_classifier(p2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_prediction_matches_cpu_and_training_runs_on_cuda(tmp_path):
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.classification.training import train_classifier

    _, net = _model(tmp_path)
    x = np.random.default_rng(0).random((20, 1, 16, 16), dtype=np.float32)
    cpu = run_job(predict_proba(net.eval(), x, "cpu", 8, tta=4))
    gpu = run_job(predict_proba(net.to("cuda"), x, "cuda", 8, tta=4))
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    labels = np.arange(20) % 2
    x[labels == 1, :, 4:12, 4:12] += 2.0  # class 1: a bright square
    samples = SampleSet(x, labels, ["dark", "bright"], preprocessing=Preprocessing(size=16, channels="gray"))
    cfg = ClassifierTrainConfig(model_config={"width": 8, "blocks": 2}, epochs=5, batch_size=8, folds=2,
                                refit=False, device="cuda", **ClassifierTrainConfig.flat_preprocessing(Preprocessing(size=16)))
    result = run_job(train_classifier(samples, cfg))
    assert result.summary["device"].startswith("cuda")
    assert result.summary["accuracy"]["mean"] >= 0.9


def test_classify_takes_its_parameter_object_and_restores_torch_threads():
    from napari_cellnet import datasets
    from napari_cellnet.classification.inference import classify
    from napari_cellnet.classification.params import ClassifyParams

    model = datasets.demo_model_path("classification")
    folder = datasets.hushem_dir() / "01_Normal"
    before = torch.get_num_threads()
    by_object = run_job(classify(model, folder=folder, params=ClassifyParams(device="cpu", tta=2, threads=1)))
    assert torch.get_num_threads() == before
    by_keywords = run_job(classify(model, folder=folder, device="cpu", tta=2))
    np.testing.assert_array_equal(by_object["class_index"], by_keywords["class_index"])
    np.testing.assert_allclose(by_object["confidence"], by_keywords["confidence"], atol=1e-6)
    one_view = run_job(classify(model, folder=folder, params=ClassifyParams(device="cpu"), tta=1))
    assert not np.allclose(one_view["confidence"], by_object["confidence"])  # the override took effect
    with pytest.raises(ValueError, match=r"Unknown classify parameter\(s\) \['amp'\]"):
        run_job(classify(model, folder=folder, amp="fp16"))
    with pytest.raises(ValueError, match="tta must be <= 8"):
        run_job(classify(model, folder=folder, tta=9))
