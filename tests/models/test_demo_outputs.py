"""The bundled demo models give exactly the labels and classes they gave before the
restructure of issue 14 (outputs stored by ``tests/data/golden/capture.py`` on the
pre-move tree, CPU, one torch thread)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_cellnet import datasets  # noqa: E402
from napari_cellnet.classification.inference import classify  # noqa: E402
from napari_cellnet.core.jobs import run_job  # noqa: E402
from napari_cellnet.segmentation.inference import segment  # noqa: E402

GOLDEN = Path(__file__).parents[1] / "data" / "golden" / "demo_outputs.npz"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as d:
        return {k: d[k] for k in d.files}


def test_demo_segmentation_is_unchanged(golden, one_torch_thread):
    images, _ = datasets.c2c12()
    res = run_job(segment(images, datasets.demo_model_path("segmentation"), axes="TYX", device="cpu", threads=1))
    np.testing.assert_array_equal(res.labels, golden["seg_labels"])
    np.testing.assert_array_equal(res.tracks, golden["seg_tracks"])
    # bit for bit on the same CPU; 1e-6 leaves room for another CPU's vector units
    np.testing.assert_allclose(res.probabilities, golden["seg_probabilities"], rtol=0, atol=1e-6)


def test_demo_classifier_is_unchanged(golden, one_torch_thread):
    out = run_job(classify(datasets.demo_model_path("classification"), folder=datasets.hushem_dir(), device="cpu"))
    assert [str(p) for p in out["path"]] == golden["cls_path"].tolist()
    assert [str(c) for c in out["class"]] == golden["cls_class"].tolist()
    np.testing.assert_array_equal(out["class_index"], golden["cls_class_index"])
    for name in [k for k in golden if k.startswith("cls_p_")]:
        np.testing.assert_allclose(out[name[4:]], golden[name], rtol=0, atol=1e-6)
