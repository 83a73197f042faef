"""Normalisation, temporal median, windows with edge policies, drift registration, tiling."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.segmentation import preprocessing as pp
from napari_cellnet.segmentation import tiling, windows


def test_normalize_movie_uses_one_pair_of_percentiles_for_the_movie():
    movie = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 20.0)])
    movie[1, 0, 0] = 30.0
    out = pp.normalize_movie(movie, low=0, high=100)
    assert out.dtype == np.float32
    assert out[0, 1, 1] == 0.0 and out[1, 0, 0] == 1.0
    assert out[1, 1, 1] == pytest.approx(0.5)  # the second frame stays brighter, not rescaled alone


def test_normalize_constant_movie_is_zero_and_bad_percentiles_refused():
    assert not pp.normalize_movie(np.ones((2, 3, 3))).any()
    with pytest.raises(ValueError, match="low < high"):
        pp.normalize_movie(np.ones((2, 3, 3)), low=50, high=10)


def test_nan_and_inf_are_refused_with_a_fix():
    movie = np.zeros((3, 4, 4), np.float32)
    movie[2, 1, 1] = np.nan
    movie[2, 2, 2] = np.inf
    with pytest.raises(ValueError, match=r"2 NaN or infinite pixel\(s\) \(first in frame 2\).*nan_to_num"):
        pp.normalize_movie(movie)


def test_subtract_temporal_median():
    movie = np.array([[[1.0, 5.0]], [[2.0, 5.0]], [[9.0, 8.0]]])  # (T=3, Y=1, X=2)
    out = pp.subtract_temporal_median(movie)
    np.testing.assert_array_equal(out[:, 0, 0], [-1.0, 0.0, 7.0])
    np.testing.assert_array_equal(out[:, 0, 1], [0.0, 0.0, 3.0])
    with pytest.raises(ValueError, match="needs a movie"):
        pp.subtract_temporal_median(np.ones((3, 3)))


@pytest.mark.parametrize(
    "t,edge,expected",
    [
        (0, "reflect", [2, 1, 0, 1, 2]),
        (1, "reflect", [1, 0, 1, 2, 3]),
        (9, "reflect", [7, 8, 9, 8, 7]),
        (5, "reflect", [3, 4, 5, 6, 7]),
        (0, "replicate", [0, 0, 0, 1, 2]),
        (8, "replicate", [6, 7, 8, 9, 8]),
        (0, "skip", None),
        (1, "skip", None),
        (2, "skip", [0, 1, 2, 3, 4]),
        (8, "skip", None),
    ],
)
def test_window_indices_edge_policies(t, edge, expected):
    assert windows.window_indices(t, 10, 5, edge) == expected


def test_window_indices_short_movies_and_errors():
    assert windows.window_indices(0, 1, 5, "reflect") == [0, 0, 0, 0, 0]
    assert windows.window_indices(0, 2, 5, "reflect") == [0, 1, 0, 1, 0]
    assert windows.window_indices(0, 3, 1, "skip") == [0]
    with pytest.raises(ValueError, match="odd"):
        windows.window_indices(0, 3, 4, "reflect")
    with pytest.raises(ValueError, match="reflect, replicate, skip"):
        windows.window_indices(0, 3, 3, "wrap")
    assert windows.valid_frames(10, 5, "skip") == list(range(2, 8))
    with pytest.raises(ValueError, match="T=3 frame.*window of 5.*'reflect'"):
        windows.valid_frames(3, 5, "skip")


def test_make_window_stacks_frame_major():
    movie = np.arange(4 * 2 * 1 * 1, dtype=np.float32).reshape(4, 2, 1, 1)  # T=4, C=2
    w = windows.make_window(movie, 0, 3, "reflect")
    assert w.shape == (6, 1, 1)
    np.testing.assert_array_equal(w[:, 0, 0], [2, 3, 0, 1, 2, 3])  # frames 1, 0, 1
    with pytest.raises(ValueError, match="no full window"):
        windows.make_window(movie, 0, 3, "skip")


def _blob_frame(cy, cx, size=64):
    yy, xx = np.mgrid[:size, :size]
    img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0)
    img += 0.5 * np.exp(-((yy - cy - 15) ** 2 + (xx - cx + 10) ** 2) / 8.0)
    return img.astype(np.float32)


def test_register_translation_and_drift_compensation():
    ref = _blob_frame(30, 30)
    mov = np.roll(ref, (3, -5), axis=(0, 1))
    assert windows.register_translation(ref, mov) == (-3.0, 5.0)
    movie = np.stack([np.roll(ref, (3 * i, -2 * i), axis=(0, 1)) for i in range(-1, 2)])[:, None]
    plain = windows.make_window(movie, 1, 3, "reflect", drift=False)
    aligned = windows.make_window(movie, 1, 3, "reflect", drift=True)
    centre = movie[1, 0]
    # after drift compensation the neighbours coincide with the centre (away from the filled border)
    inner = (slice(8, -8), slice(8, -8))
    for k in (0, 2):
        np.testing.assert_allclose(aligned[k][inner], centre[inner], atol=1e-6)
        assert np.abs(plain[k][inner] - centre[inner]).max() > 0.1


def test_tiling_covers_the_image_with_aligned_starts():
    assert tiling.tile_starts(100, 128, 32, 16) == [0]
    starts = tiling.tile_starts(400, 128, 48, 16)
    assert starts == [0, 80, 160, 240, 272]
    assert all(s % 16 == 0 for s in starts)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tiling.tile_starts(400, 64, 64, 16)
    grid = tiling.tile_grid((400, 100), 128, 48, 16)
    assert len(grid) == 5 and grid[0] == (slice(0, 128), slice(0, 100))


def test_blend_weights_sum_to_one_where_tiles_meet():
    shape = (1, 300)
    grid = tiling.tile_grid(shape, 128, 64, 16)
    acc = np.zeros(shape, np.float32)
    for sl in grid:
        w = tiling.blend_weights((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), sl, shape, margin=16, ramp=16)
        # zero margin on inner edges only
        if sl[1].start > 0:
            assert not w[:, :16].any()
        if sl[1].stop < shape[1]:
            assert not w[:, -16:].any()
        acc[sl] += w
    assert (acc > 0).all()


def test_pad_to_multiple():
    img = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    out, (py, px) = tiling.pad_to_multiple(img, 4)
    assert out.shape == (8, 8) and (py, px) == (3, 1)
    np.testing.assert_array_equal(out[:5, :7], img)
