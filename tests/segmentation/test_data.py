"""Training data: frame selection, windows around sparse annotations, bounded memory, targets,
weight maps and aligned augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_cellnet.core.augment import AugmentParams
from napari_cellnet.segmentation.data import (
    annotated_frames,
    as_movie_list,
    check_label_frame,
    extract_windows,
    split_frames,
)
from napari_cellnet.segmentation.patches import PatchSampler
from napari_cellnet.segmentation.preprocessing import STATS_FRAMES
from napari_cellnet.segmentation.targets import IGNORE, make_target, unet_weight_map


def _sparse_labels(T=6, Y=32, X=32, frames=(1, 4)):
    lab = np.zeros((T, Y, X), np.uint16)
    for t in frames:
        lab[t, 4:10, 4:12] = 1
        lab[t, 20:28, 18:24] = 2
    return lab


# ----------------------------------------------------------------------------- input checks


def test_movie_list_shapes_and_channels():
    imgs, labs = as_movie_list(np.zeros((4, 16, 20)), np.zeros((4, 16, 20), np.uint8))
    assert imgs[0].shape == (4, 1, 16, 20) and labs[0].shape == (4, 16, 20)
    imgs, _ = as_movie_list(np.zeros((4, 2, 16, 20)), np.zeros((4, 16, 20), np.uint8))
    assert imgs[0].shape == (4, 2, 16, 20)
    with pytest.raises(ValueError, match=r"T, Y, X = \(4, 16, 20\).*labels have shape \(4, 16, 21\)"):
        as_movie_list(np.zeros((4, 16, 20)), np.zeros((4, 16, 21), np.uint8))
    with pytest.raises(ValueError, match="one label movie per image movie"):
        as_movie_list([np.zeros((4, 16, 20))] * 2, [np.zeros((4, 16, 20))])
    with pytest.raises(ValueError, match="different numbers of channels"):
        as_movie_list([np.zeros((4, 16, 20)), np.zeros((4, 2, 16, 20))], [np.zeros((4, 16, 20))] * 2)
    with pytest.raises(ValueError, match="single 2-D frame"):
        as_movie_list(np.zeros((16, 20)), np.zeros((16, 20)))


def test_label_values_checked():
    assert check_label_frame(np.array([[0.0, 2.0]])).dtype == np.int32  # whole-number floats are fine
    with pytest.raises(ValueError, match="non-integer values.*probability"):
        check_label_frame(np.array([[0.0, 0.37]]))
    with pytest.raises(ValueError, match="negative values"):
        check_label_frame(np.array([[0, -1]]))


def test_annotated_frames():
    assert annotated_frames(_sparse_labels()) == [1, 4]
    assert annotated_frames(np.zeros((3, 4, 4))) == []


# ----------------------------------------------------------------------------- frame selection


def test_split_explicit_frames_validate_on_the_rest():
    lab = np.zeros((10, 8, 8), np.uint8)
    lab[:, 2, 2] = 1  # every frame annotated, as the C2C12 movie
    train, val, notes = split_frames([lab], frames=[0, 2, 4, 6, 8])
    assert [t for _, t in train] == [0, 2, 4, 6, 8]
    assert [t for _, t in val] == [1, 3, 5, 7, 9]
    assert "not used for training" in notes[0]


def test_split_auto_holds_back_whole_frames():
    lab = np.zeros((10, 8, 8), np.uint8)
    lab[:, 2, 2] = 1
    train, val, _ = split_frames([lab])
    # 20 % of 10 frames = 2 frames, spread: positions int(0.5*10/2)=2 and int(1.5*10/2)=7
    assert [t for _, t in val] == [2, 7]
    assert not set(train) & set(val) and len(train) == 8
    train, val, notes = split_frames([lab[:2]])
    assert val == [] and "without validation" in notes[0]
    train, val, _ = split_frames([lab], val_frames=[])
    assert val == [] and len(train) == 10


def test_split_several_movies_and_errors():
    a, b = _sparse_labels(frames=(1, 4)), _sparse_labels(frames=(0,))
    train, val, _ = split_frames([a, b], val_frames=[[4], []])
    assert train == [(0, 1), (1, 0)] and val == [(0, 4)]
    with pytest.raises(ValueError, match="one list per movie"):
        split_frames([a, b], frames=[1, 4])
    with pytest.raises(ValueError, match="no annotated frame.*Paint the cells"):
        split_frames([np.zeros((5, 4, 4))])
    one = _sparse_labels(frames=(2,))
    with pytest.raises(ValueError, match="No frame is left for training.*--val-frames none"):
        split_frames([one], val_frames=[2])
    with pytest.raises(ValueError, match="both training and validation"):
        split_frames([a], frames=[1, 4], val_frames=[4])
    with pytest.raises(ValueError, match="have no annotated cell"):
        split_frames([a], frames=[1], val_frames=[3])
    with pytest.raises(ValueError, match="Training frame 9 does not exist: the movie has 6 frames"):
        split_frames([a], frames=[9])
    # an explicitly listed empty frame is a legitimate "no cell here" example
    train, _, notes = split_frames([a], frames=[1, 2], val_frames=[])
    assert train == [(0, 1), (0, 2)] and "teach 'no cell here'" in notes[-1]


# ----------------------------------------------------------------------------- windows


def _ramp_movie(T=6, Y=8, X=8):
    # frame t is constant t (plus a 0..1 ramp so percentiles are not degenerate)
    ramp = np.linspace(0, 1, Y * X).reshape(Y, X)
    return np.stack([t + ramp for t in range(T)]).astype(np.float32)


def test_windows_hold_the_neighbours_with_edge_policy():
    mov = _ramp_movie()
    lab = _sparse_labels(6, 8, 8, frames=())
    lab[0, 1, 1] = lab[3, 1, 1] = 1
    imgs, labs = as_movie_list(mov, lab)
    samples, stats = extract_windows(imgs, labs, [(0, 0), (0, 3)], window=3, edge="reflect",
                                     low=0, high=100)
    lo, hi = stats[0].low_value, stats[0].high_value
    assert (lo, hi) == (0.0, 6.0)
    # window of frame 0 under "reflect" is frames (1, 0, 1); values normalised by (x - 0) / 6
    np.testing.assert_allclose(samples[0].window, (mov[[1, 0, 1]] - lo) / (hi - lo), rtol=1e-6)
    np.testing.assert_allclose(samples[1].window, (mov[[2, 3, 4]] - lo) / (hi - lo), rtol=1e-6)
    assert samples[1].labels[1, 1] == 1 and samples[1].labels.dtype == np.int32
    rep, _ = extract_windows(imgs, labs, [(0, 0)], window=3, edge="replicate", low=0, high=100)
    np.testing.assert_allclose(rep[0].window, (mov[[0, 0, 1]] - lo) / (hi - lo), rtol=1e-6)
    with pytest.raises(ValueError, match="no full window of 3 under edge policy 'skip'"):
        extract_windows(imgs, labs, [(0, 0)], window=3, edge="skip")
    with pytest.raises(ValueError, match="T=6 frame.*window is 7 frames.*at most 5"):
        extract_windows(imgs, labs, [(0, 3)], window=7)


def test_background_subtraction_uses_temporal_median():
    mov = _ramp_movie(T=5)
    lab = np.zeros((5, 8, 8), np.uint8)
    imgs, labs = as_movie_list(mov, lab)
    samples, stats = extract_windows(imgs, labs, [(0, 2)], window=1, background_subtraction=True,
                                     low=0, high=100)
    # the median over time is 2 + ramp, so frame 2 - median = 0 everywhere, frame t -> t - 2
    np.testing.assert_allclose(stats[0].median[0], mov[2], rtol=1e-6)
    assert (stats[0].low_value, stats[0].high_value) == pytest.approx((-2.0, 2.0))
    np.testing.assert_allclose(samples[0].window, 0.5, atol=1e-6)


class _CountingMovie:
    """A lazy movie that records which frames are read and refuses to be read whole."""

    def __init__(self, data):
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        else:
            rest = ()
        if not isinstance(key, (int, np.integer)):
            raise AssertionError(f"read more than one frame at once: {key!r}")
        self.reads.append(int(key))
        return self.data[(int(key), *rest)]

    def transpose(self, perm):
        assert list(perm) == list(range(self.ndim)), perm
        return self

    def __array__(self, *a, **k):
        raise AssertionError("the whole movie was read into memory")


def test_lazy_movie_holds_only_the_annotated_windows():
    T = 3 * STATS_FRAMES  # longer than the normalisation sample
    rng = np.random.default_rng(0)
    mov = _CountingMovie(rng.random((T, 1, 24, 24), dtype=np.float32))
    lab = _CountingMovie(np.zeros((T, 24, 24), np.uint16))
    lab.data[[10, 50], 3:6, 3:6] = 1
    imgs, labs = as_movie_list(mov, lab, image_axes="TCYX")
    train, val, _ = split_frames(labs, val_frames=[])
    assert train == [(0, 10), (0, 50)]
    mov.reads.clear()
    samples, _ = extract_windows(imgs, labs, train, window=5)
    window_frames = set(range(8, 13)) | set(range(48, 53))
    norm_frames = set(np.linspace(0, T - 1, STATS_FRAMES).round().astype(int).tolist())
    assert set(mov.reads) <= window_frames | norm_frames
    assert window_frames <= set(mov.reads)
    # what is kept: two windows of 5 frames, nothing else
    assert sum(s.window.nbytes for s in samples) == 2 * 5 * 24 * 24 * 4


# ----------------------------------------------------------------------------- targets and weights


def test_two_class_target():
    lab = np.array([[0, 3, 3], [0, 0, 1]])
    np.testing.assert_array_equal(make_target(lab, 2), [[0, 1, 1], [0, 0, 1]])


def test_unet_weight_map_hand_computed():
    lab = np.array([[1, 0, 0, 2]])
    w = unet_weight_map(lab, class_weights=[1.0, 2.0], w0=10, sigma=5)
    # cells get their class weight 2; background pixel x=1 has d1 = 1 (cell 1), d2 = 2 (cell 2),
    # x=2 has d1 = 1, d2 = 2 as well: 1 + 10 exp(-9 / 50)
    expected_gap = 1 + 10 * math.exp(-9 / 50)
    np.testing.assert_allclose(w, [[2.0, expected_gap, expected_gap, 2.0]], rtol=1e-6)
    # one cell only: no border term
    np.testing.assert_allclose(unet_weight_map(np.array([[1, 0, 0]]), [1.0, 2.0]), [[2.0, 1.0, 1.0]])


# ----------------------------------------------------------------------------- patches


def _asymmetric_sample(window=3, size=40):
    """An L-shaped cell (no symmetry survives a flip or rotation) drawn into every frame."""
    lab = np.zeros((size, size), np.int32)
    lab[8:30, 10:16] = 1
    lab[24:30, 16:30] = 1
    lab[5:9, 28:34] = 2
    frames = np.stack([(lab > 0) * (1.0 + i) for i in range(window)]).astype(np.float32)
    from napari_cellnet.segmentation.data import FrameSample

    return FrameSample(0, 0, frames, lab)


def test_patch_plan_is_reproducible_and_sized_by_rate():
    s = _asymmetric_sample()
    sampler = PatchSampler([s, s], patch_size=16, classes=2, rate=5)
    assert len(sampler) == 5 * 2 * 9  # 40 px frame -> 3 x 3 patches of 16 px to cover it
    assert sampler.plan(seed=3, epoch=1) == sampler.plan(seed=3, epoch=1)
    assert sampler.plan(seed=3, epoch=1) != sampler.plan(seed=3, epoch=2)
    with pytest.raises(ValueError, match="augmentation rate must be 1 or more"):
        PatchSampler([s], patch_size=16, rate=0)


def test_small_frame_is_padded_with_ignored_target():
    s = _asymmetric_sample(size=40)
    sampler = PatchSampler([s], patch_size=48, classes=2, fg_fraction=0)
    x, y, w = sampler.make(sampler.plan(0, 0)[0])
    assert x.shape == (3, 48, 48) and y.shape == (48, 48) and w is None
    assert (y[40:, :] == IGNORE).all() and (y[:, 40:] == IGNORE).all()
    np.testing.assert_array_equal(y[:40, :40], (s.labels > 0).astype(int))


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_every_frame_aligned_with_the_label(seed):
    s = _asymmetric_sample()
    params = AugmentParams(rotation_range=30, zoom_range=0.1, shear_range=5, horizontal_flip=True,
                           vertical_flip=True, rot90=True, fill_mode="constant", order=0)
    sampler = PatchSampler([s], patch_size=40, classes=2, augment_params=params, fg_fraction=0)
    spec = sampler.plan(seed, 0)[0]
    x, y, _ = sampler.make(spec)
    fg = y == 1
    assert fg.sum() > 100
    for i in range(3):  # every frame of the window got the same transform
        np.testing.assert_array_equal(x[i] > 0.5 * (1 + i), fg)
    # the check can fail: the L-shape is asymmetric, so a flipped label would not match
    assert not np.array_equal(fg[::-1], fg) and not np.array_equal(fg[:, ::-1], fg)


def test_weight_map_patch():
    s = _asymmetric_sample()
    sampler = PatchSampler([s], patch_size=40, classes=2, weight_map=True, class_weights=[1.0, 3.0],
                           fg_fraction=0)
    _, y, w = sampler.make(sampler.plan(0, 0)[0])
    assert w is not None and w.shape == y.shape
    np.testing.assert_allclose(w[y == 1], 3.0)
    # no augmentation and a patch the size of the frame: the map of the whole frame
    np.testing.assert_allclose(w, unet_weight_map(s.labels, [1.0, 3.0]), rtol=1e-6)
    assert w[y == 0].min() == 1.0 and w[y == 0].max() > 1.3  # the gap between the two cells
