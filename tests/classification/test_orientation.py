"""Cell alignment (orientation.py): centred, long axis vertical, tail down / broad end up."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk as draw_disk
from skimage.draw import ellipse, line
from skimage.measure import regionprops

from napari_cellnet.classification.data import Preprocessing, load_objects, prepare_images
from napari_cellnet.classification.orientation import align, isolate, object_mask, pose


def _head(angle_deg: float, shape=(101, 101), centre=(50, 50), tail=True) -> tuple[np.ndarray, np.ndarray]:
    """A dark ellipse (semi-axes 16 x 7) on a bright background with a thin, faint tail
    leaving its lower end, built upright and then rotated by ``angle_deg`` about the centre."""
    img = np.full(shape, 200.0, np.float32)
    mask = np.zeros(shape, bool)
    rr, cc = ellipse(centre[0], centre[1], 16, 7, shape=shape)
    mask[rr, cc] = True
    if tail:
        r, c = line(centre[0] + 16, centre[1], centre[0] + 40, centre[1])
        img[r, c] = 150.0
    img[mask] = 40.0
    if angle_deg:
        img = ndi.rotate(img, angle_deg, reshape=False, order=1, mode="nearest")
        mask = ndi.rotate(mask.astype(np.uint8), angle_deg, reshape=False, order=0) > 0
    return img[None], mask


def _upright_stats(aligned: np.ndarray, dark: float = 100.0):
    m = aligned[0] < dark
    p = regionprops(m.astype(np.uint8))[0]
    return np.rad2deg(p.orientation), np.asarray(p.centroid)


@pytest.mark.parametrize("angle", [0, 35, 90, -70, 150])
def test_align_makes_axis_vertical_centred_tail_down(angle):
    img, _ = _head(angle)
    out = align(img)
    orient, centroid = _upright_stats(out)
    assert abs(orient) < 3  # long axis vertical
    np.testing.assert_allclose(centroid, [50, 50], atol=1.0)
    head = ndi.binary_dilation(out[0] < 100, iterations=3)
    tail = (out[0] < 185) & ~head  # the faint tail pixels, away from the head's blurred outline
    rows = np.nonzero(tail)[0]
    assert rows.size > 5 and rows.mean() > 60  # below the head


def bottom_minus_top_gap(top: int, bottom: int, centroid: float) -> float:
    return (bottom - centroid) - (centroid - top)


def test_without_tail_the_broad_end_goes_up():
    # a pear: big disc with a smaller disc below-right at 40 degrees, no tail
    img = np.full((101, 101), 200.0, np.float32)
    rr, cc = draw_disk((50, 50), 14)
    img[rr, cc] = 40
    rr, cc = draw_disk((50 + 15 * np.cos(np.deg2rad(40)), 50 + 15 * np.sin(np.deg2rad(40))), 8)
    img[rr, cc] = 40
    out = align(img[None])
    rows = np.nonzero(out[0] < 100)[0]
    centroid = rows.mean()  # the broad end holds most of the mass: it lies nearer the centroid
    assert bottom_minus_top_gap(rows.min(), rows.max(), centroid) > 2  # -4 when upside down


def test_object_mask_prefers_the_centred_cell_over_edge_bars_and_small_debris():
    img, mask = _head(20, tail=False)
    img = img.copy()
    img[0, :, :6] = 0.0  # a black padding bar at the left edge (as in a few HuSHeM images)
    rr, cc = draw_disk((12, 80), 4)
    img[0, rr, cc] = 40.0  # off-centre debris
    found = object_mask(img)
    assert found[50, 50] and not found[:, :6].any() and not found[12, 80]
    iou = (found & mask).sum() / (found | mask).sum()
    assert iou > 0.85


def test_flat_image_is_left_alone():
    img = np.full((1, 32, 32), 7.0, np.float32)
    assert not object_mask(img).any()
    assert pose(np.zeros((32, 32), bool)) is None
    np.testing.assert_array_equal(align(img), img)


def test_preprocessing_align_option_and_unknown_mode():
    img, _ = _head(60)
    batch, prep = prepare_images([img[0]], Preprocessing(size=101, align="major_axis", normalisation="none"))
    orient, _ = _upright_stats(batch[0])
    assert prep.align == "major_axis" and abs(orient) < 3
    assert Preprocessing.from_dict(prep.to_dict()).align == "major_axis"
    with pytest.raises(ValueError, match="alignment"):
        Preprocessing(align="sideways")


def test_objects_are_aligned_by_their_own_label():
    # a Labels-layer object: the label, not the image contrast, decides the pose
    img, mask = _head(45, shape=(120, 120), centre=(60, 60), tail=False)
    labels = mask.astype(np.uint16)[None] * 3
    flat = np.full_like(img, 100.0)  # an image with no contrast at all: only the label knows the cell
    s = load_objects(flat, labels, prep=Preprocessing(size=64, align="major_axis", normalisation="none"),
                     crop_size=64, mask_neighbours=False)
    assert len(s) == 1
    s_img = load_objects(img, labels, prep=Preprocessing(size=64, align="major_axis", normalisation="none"),
                         crop_size=64, mask_neighbours=False)
    orient, centroid = _upright_stats(s_img.images[0])
    assert abs(orient) < 3
    np.testing.assert_allclose(centroid, [31.5, 31.5], atol=1.0)


def test_isolate_paints_surroundings_with_background():
    img, mask = _head(0)  # with its tail
    out = isolate(img, mask, margin=2)
    far = ~ndi.binary_dilation(mask, iterations=2)
    assert np.all(out[0][far] == 200.0)  # the tail is gone, background colour everywhere else
    np.testing.assert_array_equal(out[0][mask], img[0][mask])
    kept = align(img, keep_only_cell=True)
    assert kept[0].min() < 100 and np.all((kept[0] < 100) | (kept[0] > 120))  # no faint tail left


def test_aligned_tta_keeps_the_axis_vertical():
    torch = pytest.importorskip("torch")
    from napari_cellnet.classification.inference import _tta_views

    x = torch.zeros(1, 1, 9, 9)
    x[..., 1:8, 4] = 1.0  # a vertical bar, off-centre along its length
    x[..., 1, 4] = 2.0
    views = _tta_views(x, 8, aligned=True)
    assert len(views) == 4
    for v in views:
        assert torch.equal(v[..., :, 4] > 0, x[..., :, 4] > 0)  # still the same vertical column
    assert len(_tta_views(x, 8)) == 8


def test_isolate_without_align_is_refused():
    with pytest.raises(ValueError, match="align"):
        Preprocessing(isolate=True)
