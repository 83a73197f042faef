"""Label flicker between consecutive frames (metrics.temporal_consistency) on hand-computed movies."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.core.metrics import temporal_consistency


def test_hand_computed_three_frames():
    lab = np.zeros((3, 4, 4), np.int32)
    lab[0, 0:2, 0:2] = 1          # 4 px
    lab[0, 2:4, 2:4] = 2          # 4 px
    lab[1, 0:2, 0:3] = 1          # 6 px, ID 2 missing (a blink: back in frame 2)
    lab[2, 0:2, 0:2] = 1
    lab[2, 2:4, 2:4] = 2
    lab[2, 3, 0] = 3              # new ID 3
    out = temporal_consistency(lab)
    # pair 0->1: fg 8 px vs 6 px, overlap 4, union 10 -> 1 - 4/10; IDs {1,2} vs {1} -> 1 - 1/2
    # pair 1->2: fg 6 vs 9, overlap 4, union 11 -> 1 - 4/11; IDs {1} vs {1,2,3} -> 1 - 1/3
    assert out["per_pair"][0]["mask_change"] == pytest.approx(0.6)
    assert out["per_pair"][0]["id_churn"] == pytest.approx(0.5)
    assert out["per_pair"][1]["mask_change"] == pytest.approx(7 / 11)
    assert out["per_pair"][1]["id_churn"] == pytest.approx(2 / 3)
    assert (out["per_pair"][1]["appeared"], out["per_pair"][1]["disappeared"]) == (2, 0)
    assert out["mask_change"] == pytest.approx((0.6 + 7 / 11) / 2)
    assert out["id_churn"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert out["blinks_per_frame"] == [0, 1, 0] and out["blinks"] == 1 and out["pairs"] == 2


def test_steady_movie_has_no_flicker_and_empty_frames_count_zero():
    lab = np.zeros((4, 5, 5), np.int32)
    lab[:2, 1:3, 1:3] = 7
    out = temporal_consistency(lab)
    assert [p["mask_change"] for p in out["per_pair"]] == [0.0, 1.0, 0.0]
    assert [p["id_churn"] for p in out["per_pair"]] == [0.0, 1.0, 0.0]
    assert out["blinks"] == 0
    single = temporal_consistency(lab[:1])
    assert single["pairs"] == 0 and single["mask_change"] == 0.0 and single["blinks_per_frame"] == [0]


def test_rejects_a_single_frame_image():
    with pytest.raises(ValueError, match=r"\(T, Y, X\)"):
        temporal_consistency(np.zeros((4, 4), np.int32))
