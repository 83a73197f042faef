"""Probabilities -> labels, IDs through time on a moving-disc movie, tracks, contours, targets."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.segmentation import postprocessing as post
from napari_cellnet.segmentation import tracking


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_touching_discs_are_split_by_distance_watershed():
    shape = (60, 80)
    mask = _disc(shape, 30, 25, 12) | _disc(shape, 30, 47, 12)  # overlapping discs: one component
    from skimage.measure import label

    assert label(mask).max() == 1
    labels = post.probabilities_to_labels(mask.astype(np.float32), threshold=0.5, min_size=10)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[30, 20] != labels[30, 52] and labels[30, 20] > 0 and labels[30, 52] > 0
    assert (labels > 0).sum() == mask.sum()
    plain = post.probabilities_to_labels(mask.astype(np.float32), split="none")
    assert plain.max() == 1


def test_boundary_class_splits_and_is_grown_back():
    shape = (20, 30)
    cell = np.zeros(shape, np.float32)
    boundary = np.zeros(shape, np.float32)
    cell[5:15, 3:14] = 1
    cell[5:15, 16:27] = 1
    boundary[4:16, 14:16] = 1  # the two cells touch through a boundary strip
    boundary[4, 3:27] = 1
    bg = 1 - np.clip(cell + boundary, 0, 1)
    prob = np.stack([bg, cell, boundary])
    labels = post.probabilities_to_labels(prob, min_size=5, fill_holes=False)
    assert labels.max() == 2
    assert labels[10, 5] != labels[10, 20]
    assert (labels > 0).sum() == ((cell + boundary) > 0.5).sum()  # boundary pixels are assigned to cells


def test_min_size_holes_and_bad_input():
    m = np.zeros((20, 20), np.float32)
    m[2:12, 2:12] = 1
    m[6, 6] = 0  # a hole
    m[15:17, 15:17] = 1  # 4 px speck
    lab = post.probabilities_to_labels(m, min_size=10, split="none")
    assert lab.max() == 1 and lab[6, 6] == 1 and lab[15, 15] == 0
    lab2 = post.probabilities_to_labels(m, min_size=1, fill_holes=False, split="none")
    assert lab2.max() == 2 and lab2[6, 6] == 0
    assert not post.probabilities_to_labels(np.zeros((5, 5), np.float32)).any()
    with pytest.raises(ValueError, match="Expected probabilities"):
        post.probabilities_to_labels(np.zeros((4, 5, 5)))
    with pytest.raises(ValueError, match="3-class"):
        post.probabilities_to_labels(np.zeros((2, 5, 5)), split="boundary")
    with pytest.raises(ValueError, match="threshold"):
        post.probabilities_to_labels(m, threshold=1.0)


def moving_disc_movie(T=6, shape=(64, 96)):
    """Two discs moving right by 3 px/frame, labelled with arbitrary per-frame IDs; a third appears at t=3."""
    movie = np.zeros((T, *shape), np.int32)
    for t in range(T):
        a, b = (1, 2) if t % 2 == 0 else (5, 4)  # IDs deliberately shuffled between frames
        movie[t][_disc(shape, 20, 15 + 3 * t, 8)] = a
        movie[t][_disc(shape, 45, 60 - 3 * t, 8)] = b
        if t >= 3:
            movie[t][_disc(shape, 50, 15, 5)] = 9
    return movie


def test_ids_are_kept_through_time_on_moving_discs():
    movie = moving_disc_movie()
    out = tracking.match_labels_through_time(movie, min_iou=0.3)
    assert out.dtype == np.int32
    id_a = out[0, 20, 15]
    id_b = out[0, 45, 60]
    for t in range(6):
        assert out[t, 20, 15 + 3 * t] == id_a
        assert out[t, 45, 60 - 3 * t] == id_b
    newcomer = out[3, 50, 15]
    assert newcomer not in (0, id_a, id_b)
    assert all(out[t, 50, 15] == newcomer for t in range(3, 6))
    assert sorted(np.unique(out)) == [0, 1, 2, 3]
    # masks themselves are unchanged
    np.testing.assert_array_equal(out > 0, movie > 0)


def test_an_object_that_jumps_gets_a_new_unique_id():
    movie = np.zeros((3, 30, 30), np.int32)
    movie[0, 2:8, 2:8] = 1
    movie[1, 20:26, 20:26] = 1  # no overlap with frame 0
    movie[2, 20:26, 21:27] = 3
    out = tracking.match_labels_through_time(movie)
    assert out[0, 3, 3] == 1 and out[1, 22, 22] == 2 and out[2, 22, 22] == 2
    with pytest.raises(ValueError, match="min_iou"):
        tracking.match_labels_through_time(movie, min_iou=0)


def test_division_is_recorded_in_the_graph():
    m = tracking.TimeMatcher()
    f0 = np.zeros((20, 20), np.int32)
    f0[5:15, 2:18] = 1
    f1 = np.zeros((20, 20), np.int32)
    f1[5:15, 2:11] = 1
    f1[5:15, 12:18] = 2
    a = m.update(f0)
    b = m.update(f1)
    parent = int(a[10, 5])
    assert b[10, 5] == parent  # the larger daughter continues the track
    child = int(b[10, 15])
    assert m.divisions == {child: [parent]}


def test_tracks_from_labels():
    movie = moving_disc_movie(T=3)
    tracks = tracking.labels_to_tracks(tracking.match_labels_through_time(movie))
    assert tracks.shape == (6, 4)
    first = tracks[tracks[:, 0] == 1]
    np.testing.assert_allclose(first[:, 1], [0, 1, 2])
    np.testing.assert_allclose(first[:, 2], [20, 20, 20])
    np.testing.assert_allclose(first[:, 3], [15, 18, 21])
    assert tracking.labels_to_tracks(np.zeros((2, 4, 4), np.int32)).shape == (0, 4)


def test_contours_and_instance_target_hand_case():
    lab = np.zeros((5, 6), np.int32)
    lab[1:4, 0:3] = 1
    lab[1:4, 3:6] = 2
    target = post.instance_target(lab)
    expected = np.array([[0, 0, 0, 0, 0, 0],
                         [2, 2, 2, 2, 2, 2],
                         [1, 1, 2, 2, 1, 1],  # the image border is not an edge
                         [2, 2, 2, 2, 2, 2],
                         [0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(target, expected)
    assert target.dtype == np.int64
    edges = post.contours(lab > 0)  # as one mask the shared border is interior
    assert edges[2, 1] == 0 and edges[2, 2] == 0 and edges[1, 1] == 1
    assert post.contours(np.stack([lab, lab])).shape == (2, 5, 6)
    with pytest.raises(ValueError, match="integer labels"):
        post.instance_target(lab.astype(float))


def test_fill_holes_equals_scipy():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    for i in range(10):
        m = ndi.binary_opening(rng.random((40, 50)) > 0.45 + 0.03 * i)
        np.testing.assert_array_equal(post.fill_holes(m), ndi.binary_fill_holes(m))
