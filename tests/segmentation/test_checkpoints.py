"""SegmentationMeta: checkpoints of every version load with the defaults of their time,
and what is written keeps the keys older versions read."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_cellnet.core.jobs import run_job  # noqa: E402
from napari_cellnet.datasets import c2c12, demo_model_path  # noqa: E402
from napari_cellnet.models.checkpoint import load_checkpoint  # noqa: E402
from napari_cellnet.segmentation.checkpoints import SegmentationMeta  # noqa: E402
from napari_cellnet.segmentation.inference import segment  # noqa: E402
from napari_cellnet.segmentation.preprocessing import Normalisation  # noqa: E402

T1 = {"threads": 1, "device": "cpu"}


def test_shipped_demo_checkpoint_loads_and_rewrites_the_same_keys():
    ckpt = load_checkpoint(demo_model_path("segmentation"), task="segmentation")
    assert "scale" not in ckpt.meta  # saved before the input scale existed
    meta = SegmentationMeta.from_checkpoint(ckpt)
    assert (meta.window, meta.in_channels, meta.scale, meta.threshold, meta.min_size) == (5, 1, 1.0, 0.85, 10)
    assert meta.normalization == Normalisation("percentile", 1.0, 99.8)
    written = meta.to_dict()
    assert written == {**ckpt.meta, "scale": 1.0}  # every stored key and value, plus the new default
    assert SegmentationMeta.from_dict(written) == meta


def test_oldest_meta_falls_back_to_the_config_and_the_defaults():
    meta = SegmentationMeta.from_dict({"normalization": {"kind": "fixed", "offset": 3, "scale": 2}},
                                      config={"window": 3, "in_channels": 2})
    assert (meta.window, meta.in_channels, meta.edge, meta.threshold, meta.min_size) == (3, 2, "reflect", 0.5, 30)
    assert meta.normalization == Normalisation("fixed", offset=3.0, scale=2.0)
    assert meta.to_dict()["normalization"] == {"method": "fixed", "offset": 3.0, "scale": 2.0}  # written as method
    assert SegmentationMeta.from_dict({}).normalization.method == "percentile"
    kept = SegmentationMeta.from_dict({"window": 1, "note": "from a later version"})
    assert kept.to_dict()["note"] == "from a later version"
    with pytest.raises(ValueError, match="Unknown normalisation 'zscore'"):
        SegmentationMeta.from_dict({"normalization": {"method": "zscore"}})


def test_kind_and_method_checkpoints_segment_identically(tmp_path):
    from test_inference import save_tiny

    movie = c2c12()[0][:3, :64, :64]
    new = save_tiny(tmp_path / "new.pt", normalization={"method": "percentile", "low": 1.0, "high": 99.8})
    old = save_tiny(tmp_path / "old.pt", normalization={"kind": "percentile", "low": 1.0, "high": 99.8})
    lo, hi = np.percentile(movie.astype(np.float32), [1.0, 99.8])
    fixed = save_tiny(tmp_path / "fixed.pt", normalization={"kind": "fixed", "offset": float(lo),
                                                            "scale": float(hi - lo)})
    a, b, c = (run_job(segment(movie, p, tile=None, **T1)) for p in (new, old, fixed))
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_allclose(a.probabilities, c.probabilities, atol=1e-5)
    assert b.params["normalization"]["kind"] == "percentile"  # provenance: what the file says


def test_segment_takes_the_parameter_object_and_refuses_unknown_names(tmp_path):
    from test_inference import save_tiny

    from napari_cellnet.segmentation.params import SegmentParams

    movie = c2c12()[0][:3, :64, :64]
    ck = save_tiny(tmp_path / "m.pt")
    by_object = run_job(segment(movie, ck, SegmentParams(device="cpu", threads=1, threshold=0.4, precision="fp32")))
    by_keyword = run_job(segment(movie, ck, threshold=0.4, precision="fp32", **T1))
    np.testing.assert_array_equal(by_object.labels, by_keyword.labels)
    assert by_object.params["threshold"] == 0.4 and by_object.params["precision"] == "float32"
    with pytest.raises(ValueError, match=r"Unknown segment parameter\(s\) \['amp'\].*'precision'"):
        run_job(segment(movie, ck, amp=None, **T1))
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp16, fp32"):
        run_job(segment(movie, ck, precision="fp64", **T1))


@pytest.mark.gpu
def test_cuda_precisions_agree_with_fp32(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from test_inference import save_tiny

    movie = c2c12()[0][:3]
    ck = save_tiny(tmp_path / "m.pt")
    ref = run_job(segment(movie, ck, device="cuda", precision="fp32"))
    for precision in ("bf16", "fp16", "auto"):
        res = run_job(segment(movie, ck, device="cuda", precision=precision))
        assert res.params["precision"] != "float32"
        assert np.abs(res.probabilities - ref.probabilities).max() < 0.05
