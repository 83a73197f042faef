"""One movie normaliser: training's windows and inference's windows of a frame are the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.datasets import c2c12
from napari_cellnet.segmentation.data import as_movie_list, extract_windows
from napari_cellnet.segmentation.preprocessing import MovieNormaliser, Normalisation, scaled_shape
from napari_cellnet.segmentation.windows import NormalisedMovie, frame_window

pytest.importorskip("torch")

from napari_cellnet.segmentation.checkpoints import SegmentationMeta  # noqa: E402
from napari_cellnet.segmentation.inference import prepare_movie  # noqa: E402


@pytest.fixture(scope="module")
def crop():
    images, labels = c2c12()
    return images[:7, :48, :64], labels[:7, :48, :64]


@pytest.mark.parametrize("edge, background, drift, scale", [
    ("reflect", False, False, 1.0),
    ("replicate", True, True, 1.0),
    ("reflect", True, False, 2.0),
])
def test_training_and_inference_windows_of_a_frame_are_identical(crop, edge, background, drift, scale):
    movie, labels = crop
    imgs, labs = as_movie_list(movie, labels)
    frames = [0, 3, 6]
    samples, normalisers = extract_windows(imgs, labs, [(0, t) for t in frames], 3, edge, drift, 2.0, 99.5,
                                           background, scale=scale)
    meta = SegmentationMeta(window=3, edge=edge, normalization=Normalisation(low=2.0, high=99.5),
                            background_subtraction=background, drift=drift, scale=scale)
    prepared = prepare_movie(movie, meta, axes="TYX")  # what segment() feeds the network
    assert prepared.normaliser.values()["lo"] == normalisers[0].low_value
    assert prepared.normaliser.values()["hi"] == normalisers[0].high_value
    shape = scaled_shape(movie.shape, scale) if scale != 1.0 else None
    for s in samples:
        np.testing.assert_array_equal(s.window, frame_window(prepared, s.frame, 3, edge, drift, shape))


def test_the_normaliser_is_the_movie_percentiles_hand_computed(crop):
    movie, labels = crop
    imgs, labs = as_movie_list(movie, labels)
    samples, _ = extract_windows(imgs, labs, [(0, 0)], 3, "reflect", low=1.0, high=99.8)
    lo, hi = np.percentile(movie.astype(np.float32), [1.0, 99.8])  # 7 frames: all of them sampled
    expected = (movie[[1, 0, 1]].astype(np.float32) - lo) / (hi - lo)
    np.testing.assert_allclose(samples[0].window, expected, rtol=1e-5, atol=1e-6)
    # background subtraction: the temporal median first, then the percentiles of what is left
    fitted = MovieNormaliser.fit(imgs[0], Normalisation(), background_subtraction=True)
    rest = movie.astype(np.float32) - np.median(movie.astype(np.float32), axis=0)
    assert fitted.low_value == pytest.approx(np.percentile(rest, 1.0), rel=1e-5)
    assert fitted.background_frames == fitted.frames_sampled == 7


def test_fixed_normalisation_and_nan_frames():
    movie = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2)
    fixed = MovieNormaliser.fit(movie, Normalisation("fixed", offset=2.0, scale=4.0))
    np.testing.assert_array_equal(fixed(movie[0]), (movie[0] - 2.0) / 4.0)
    bad = movie.copy()
    bad[1, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"frame 1\).*NaN"):
        NormalisedMovie(bad, fixed)[1]
