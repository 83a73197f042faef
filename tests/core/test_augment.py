"""Augmentation: exact geometry on hand cases, same transform on all channels and label."""

import numpy as np
import pytest

from napari_cellnet.core.augment import AugmentParams, affine_matrix, augment


def _ramp(n=9):
    return np.arange(n * n, dtype=np.float32).reshape(n, n)


def test_none_is_identity_copy():
    img = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    out, lab = augment(np.random.default_rng(1), img, None, AugmentParams())
    np.testing.assert_array_equal(out, img)
    assert lab is None
    assert out is not img


def test_rotation_90_matches_rot90_counterclockwise():
    img = _ramp(9)[None]
    label = (_ramp(9) % 5).astype(np.uint16)
    # rotation_range=90 with a generator forced to +90: use affine_matrix directly too
    m, off = affine_matrix((9, 9), rotation=90)
    from scipy import ndimage as ndi

    rotated = ndi.affine_transform(img[0], m, offset=off, order=0)
    np.testing.assert_array_equal(rotated, np.rot90(img[0]))

    class FixedRng:
        def uniform(self, lo, hi):
            return hi  # +90 degrees, max shift etc.

        def random(self):
            return 1.0  # never flip

        def integers(self, n):
            return 0

    out, lab = augment(FixedRng(), img, label, AugmentParams(rotation_range=90, order=0))
    np.testing.assert_array_equal(out[0], np.rot90(img[0]))
    np.testing.assert_array_equal(lab, np.rot90(label))
    assert lab.dtype == np.uint16


def test_shift_moves_content_by_pixels_with_constant_fill():
    img = np.zeros((1, 10, 10), np.float32)
    img[0, 4, 4] = 1.0
    m, off = affine_matrix((10, 10), shift=(2, -3))
    from scipy import ndimage as ndi

    out = ndi.affine_transform(img[0], m, offset=off, order=0)
    assert np.argwhere(out).tolist() == [[6, 1]]


def test_same_transform_on_every_channel_and_label():
    rng0 = np.random.default_rng(0)
    base = rng0.random((17, 17)).astype(np.float32)
    img = np.stack([base, base * 2 + 1, base])
    label = (base > 0.5).astype(np.uint8)
    p = AugmentParams(rotation_range=40, width_shift=0.1, height_shift=0.1, zoom_range=0.2,
                      shear_range=10, horizontal_flip=True, vertical_flip=True, rot90=True,
                      fill_mode="nearest")
    for seed in range(5):
        out, lab = augment(np.random.default_rng(seed), img, label, p)
        np.testing.assert_allclose(out[1], out[0] * 2 + 1, atol=1e-5)
        np.testing.assert_array_equal(out[2], out[0])
        # nearest-neighbour label keeps only original values
        assert set(np.unique(lab)) <= {0, 1}
        # the label is the nearest-neighbour warp of the mask: agrees with the bilinear image
        # thresholded wherever the image is far from the threshold
        warped_mask, _ = augment(np.random.default_rng(seed), label[None].astype(np.float32),
                                 None, AugmentParams(**{**p.to_dict(), "order": 0}))
        np.testing.assert_array_equal(warped_mask[0], lab)


def test_flips_are_exact():
    img = _ramp(6)[None]
    seen = set()
    for seed in range(20):
        out, _ = augment(np.random.default_rng(seed), img, None,
                         AugmentParams(horizontal_flip=True, vertical_flip=True))
        for name, ref in {"id": img[0], "h": img[0, :, ::-1], "v": img[0, ::-1],
                          "hv": img[0, ::-1, ::-1]}.items():
            if np.array_equal(out[0], ref):
                seen.add(name)
    assert seen == {"id", "h", "v", "hv"}


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "wrap"])
def test_fill_modes(mode):
    img = np.ones((1, 8, 8), np.float32)
    img[0, :, :4] = 2.0
    m, off = affine_matrix((8, 8), shift=(0, 4))
    from napari_cellnet.core.augment import _SCIPY_MODE, _warp

    out = _warp(img[0], m, off, 0, _SCIPY_MODE[mode], -1.0)
    left = out[:, :4]
    expected = {"constant": -1.0, "nearest": 2.0, "reflect": 2.0, "wrap": 1.0}[mode]
    np.testing.assert_array_equal(left, expected)
    np.testing.assert_array_equal(out[:, 4:], 2.0)


def test_intensity_jitter_same_on_channels_and_label_untouched():
    img = np.stack([np.linspace(0, 1, 64).reshape(8, 8)] * 2).astype(np.float32)
    lab = np.eye(8, dtype=np.int32)
    p = AugmentParams(brightness=0.2, contrast=0.3, gamma=0.5)
    out, lab2 = augment(np.random.default_rng(3), img, lab, p)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.allclose(out, img)
    np.testing.assert_array_equal(lab2, lab)


def test_2d_input_and_reproducible():
    img = np.random.default_rng(0).random((12, 12))
    p = AugmentParams.preset("strong")
    a, _ = augment(np.random.default_rng(7), img, None, p)
    b, _ = augment(np.random.default_rng(7), img, None, p)
    assert a.shape == (12, 12) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match="fill mode"):
        AugmentParams(fill_mode="mirror")
    with pytest.raises(ValueError, match="zoom_range"):
        AugmentParams(zoom_range=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        AugmentParams(rotation_range=-1)
    with pytest.raises(ValueError, match="does not match"):
        augment(np.random.default_rng(0), np.zeros((2, 5, 5)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="Unknown augmentation option"):
        AugmentParams.from_dict({"rotation": 3})
    with pytest.raises(ValueError, match="preset"):
        AugmentParams.preset("extreme")
    assert AugmentParams.from_dict(AugmentParams.preset("light").to_dict()) == AugmentParams.preset("light")
