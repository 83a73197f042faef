"""Object crops: exact window positions, border padding, masking, table columns."""

import numpy as np
import pytest

from napari_cellnet.classification.crops import as_tcyx, object_crops, resize_keep_aspect


def _scene():
    img = np.arange(400, dtype=np.float32).reshape(20, 20)
    lab = np.zeros((20, 20), np.uint16)
    lab[2:5, 3:6] = 1  # centroid (3, 4)
    lab[0:2, 17:20] = 2  # centroid (0.5, 18): touches the top border
    lab[10:14, 10:12] = 3  # centroid (11.5, 10.5)
    lab[1, 2] = 4  # 1-pixel neighbour inside object 1's window
    return img, lab


def test_exact_crop_positions_and_table():
    img, lab = _scene()
    crops, table = object_crops(img, lab, crop_size=4, pad_mode="constant", cval=-1)
    assert crops.shape == (4, 1, 4, 4)
    assert table["label"].tolist() == [1, 2, 3, 4]
    assert table["frame"].tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(table["centroid_y"], [3, 0.5, 11.5, 1])
    np.testing.assert_allclose(table["centroid_x"], [4, 18, 10.5, 2])
    # window origin = floor(centroid + 0.5) - crop_size // 2
    assert table["crop_y0"].tolist() == [1, -1, 10, -1]
    assert table["crop_x0"].tolist() == [2, 16, 9, 0]
    np.testing.assert_array_equal(crops[0, 0], img[1:5, 2:6])
    np.testing.assert_array_equal(crops[2, 0], img[10:14, 9:13])
    # object 2: one padded row on top, then rows 0..2
    np.testing.assert_array_equal(crops[1, 0, 0], -1)
    np.testing.assert_array_equal(crops[1, 0, 1:], img[0:3, 16:20])
    assert table["touches_border"].tolist() == [False, True, False, True]
    assert [table[c][0] for c in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")] == [2, 3, 5, 6]
    assert table["area"].tolist() == [9, 6, 8, 1]


@pytest.mark.parametrize("mode,row", [("edge", "first"), ("reflect", "second"), ("wrap", "last")])
def test_border_pad_modes(mode, row):
    img, lab = _scene()
    crops, _ = object_crops(img, lab, crop_size=4, pad_mode=mode)
    padded = crops[1, 0, 0]
    expected = {"first": img[0, 16:20], "second": img[1, 16:20], "last": img[2, 16:20]}[row]
    np.testing.assert_array_equal(padded, expected)


def test_mask_neighbours_and_background():
    img, lab = _scene()
    crops, _ = object_crops(img, lab, crop_size=4, mask_neighbours=True, mask_value=-5)
    lwin = lab[1:5, 2:6]
    expect = img[1:5, 2:6].copy()
    expect[(lwin != 1) & (lwin != 0)] = -5
    np.testing.assert_array_equal(crops[0, 0], expect)
    assert (crops[0, 0] == -5).sum() == 1 and crops[0, 0, 0, 0] == -5  # label 4 at (1, 2)
    crops_bg, _ = object_crops(img, lab, crop_size=4, mask_background=True, mask_value=0)
    np.testing.assert_array_equal(crops_bg[0, 0] != 0, lwin == 1)


def test_default_mask_value_is_background_median():
    img, lab = _scene()
    crops, _ = object_crops(img, lab, crop_size=4, mask_background=True)
    assert crops[0, 0, 0, 0] == np.median(img[lab == 0])


def test_movie_rgb_and_resize():
    img, lab = _scene()
    movie = np.stack([np.stack([img] * 3, -1), np.stack([img + 1] * 3, -1)])  # (2, 20, 20, 3)
    labs = np.stack([lab, np.zeros_like(lab)])
    labs[1, 8:12, 8:12] = 7
    crops, table = object_crops(movie, labs, crop_size=6, output_size=12)
    assert crops.shape == (5, 3, 12, 12)
    assert table["frame"].tolist() == [0, 0, 0, 0, 1]
    assert table["label"].tolist() == [1, 2, 3, 4, 7]


def test_no_objects_is_empty_not_error():
    crops, table = object_crops(np.zeros((3, 10, 10)), np.zeros((3, 10, 10), int), crop_size=8)
    assert crops.shape == (0, 1, 8, 8)
    assert all(len(v) == 0 for v in table.values())


def test_resize_keep_aspect():
    a = np.ones((1, 10, 20), np.float32)
    out = resize_keep_aspect(a, 10, pad_mode="constant", cval=0)
    assert out.shape == (1, 10, 10)
    # 10x20 -> 5x10, padded 2 rows above and 3 below
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 1, 1, 1, 0, 0, 0])


def test_bad_input():
    img, lab = _scene()
    with pytest.raises(ValueError, match="do not match"):
        object_crops(img, lab[:10])
    with pytest.raises(ValueError, match="pad mode"):
        object_crops(img, lab, pad_mode="mirror")
    with pytest.raises(ValueError, match="integers"):
        object_crops(img, lab + 0.5)
    with pytest.raises(ValueError, match="Frame 3"):
        object_crops(img, lab, frames=[3])
    assert as_tcyx(np.zeros((5, 6))).shape == (1, 1, 5, 6)
    assert as_tcyx(np.zeros((5, 6, 3))).shape == (1, 3, 5, 6)
    assert as_tcyx(np.zeros((4, 5, 6))).shape == (4, 1, 5, 6)
