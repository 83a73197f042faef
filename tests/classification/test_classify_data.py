"""Classification samples: galleries, stacks, Labels-layer objects, channel policy, imbalance."""

import numpy as np
import pytest
from skimage.io import imsave

from napari_cellnet.classification.data import (
    Preprocessing,
    encode_classes,
    load_class_folders,
    load_image_stack,
    load_objects,
    prepare_images,
)
from napari_cellnet.classification.sampling import (
    balanced_indices,
    check_trainable,
    class_weights,
    epoch_indices,
    iterate_batches,
)


def _gallery(root, rgb_classes=("a", "b"), gray_classes=(), n=3, size=(20, 30)):
    for c in rgb_classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            imsave(root / c / f"{i}.png", np.full((*size, 3), 40 * i + 10, np.uint8), check_contrast=False)
    for c in gray_classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            imsave(root / c / f"{i}.png", np.full(size, 40 * i + 10, np.uint8), check_contrast=False)
    return root


def test_class_folders_resize_keep_aspect_and_range(tmp_path):
    _gallery(tmp_path)
    s = load_class_folders(tmp_path, Preprocessing(size=16, normalisation="range"))
    assert s.images.shape == (6, 3, 16, 16)
    assert s.class_names == ["a", "b"] and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.preprocessing.channels == "rgb"
    np.testing.assert_allclose(s.images[1], 50 / 255, rtol=1e-6)
    assert s.sources["path"].tolist()[:2] == ["a/0.png", "a/1.png"]


def test_image_normalisation_percentiles():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    out, prep = prepare_images([img], Preprocessing(size=10, percentiles=(0, 100)))
    assert prep.channels == "gray"
    assert out[0, 0, 0, 0] == 0 and out[0, 0, -1, -1] == pytest.approx(1.0)


def test_centre_crop_fraction():
    img = np.zeros((20, 20), np.float32)
    img[5:15, 5:15] = 1
    out, _ = prepare_images([img], Preprocessing(size=10, crop_fraction=0.5, normalisation="none"))
    np.testing.assert_array_equal(out[0, 0], 1.0)


def test_mixed_channels_refused_unless_policy(tmp_path):
    _gallery(tmp_path, rgb_classes=("a",), gray_classes=("b",))
    with pytest.raises(ValueError, match="mix grayscale"):
        load_class_folders(tmp_path, Preprocessing(size=8))
    s = load_class_folders(tmp_path, Preprocessing(size=8, channels="rgb"))
    assert s.images.shape[1] == 3
    g = load_class_folders(tmp_path, Preprocessing(size=8, channels="gray", normalisation="range"))
    assert g.images.shape[1] == 1
    np.testing.assert_allclose(g.images[0], 10 / 255, rtol=1e-5)  # luminance of a gray RGB pixel


def test_empty_class_folder_and_unreadable_image(tmp_path):
    _gallery(tmp_path / "d1")
    (tmp_path / "d1" / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_class_folders(tmp_path / "d1")
    _gallery(tmp_path / "d2")
    (tmp_path / "d2" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        load_class_folders(tmp_path / "d2")


def test_single_class_is_not_trainable(tmp_path):
    _gallery(tmp_path, rgb_classes=("only",))
    s = load_class_folders(tmp_path, Preprocessing(size=8))
    with pytest.raises(ValueError, match="at least 2 classes"):
        check_trainable(s)


def test_stack_with_class_names():
    stack = np.random.default_rng(0).integers(0, 255, (4, 12, 12), dtype=np.uint8)
    s = load_image_stack(stack, ["x", "y", "x", None], prep=Preprocessing(size=8))
    assert s.class_names == ["x", "y"] and s.labels.tolist() == [0, 1, 0, -1]
    assert len(s.labelled()) == 3
    with pytest.raises(ValueError, match="Unknown class"):
        encode_classes(["z"], ["x", "y"], 1)
    with pytest.raises(ValueError, match="one class per image"):
        load_image_stack(stack, ["x"], prep=Preprocessing(size=8))


def _movie():
    img = np.zeros((2, 40, 40), np.float32)
    lab = np.zeros((2, 40, 40), np.uint16)
    lab[0, 5:10, 5:10] = 1
    lab[0, 20:30, 20:24] = 2
    lab[1, 6:11, 6:11] = 1
    img[lab > 0] = 1.0
    return img, lab


def test_objects_with_class_table():
    img, lab = _movie()
    table = {"frame": [0, 0], "label": [1, 2], "class": ["round", "long"]}
    s = load_objects(img, lab, table, prep=Preprocessing(size=16), crop_size=16)
    assert s.images.shape == (3, 1, 16, 16)
    assert s.sources["frame"].tolist() == [0, 0, 1]
    assert s.sources["label"].tolist() == [1, 2, 1]
    assert s.class_names == ["long", "round"]
    assert s.labels.tolist() == [1, 0, -1]  # frame 1 object unannotated


def test_objects_table_naming_missing_labels():
    img, lab = _movie()
    with pytest.raises(ValueError, match=r"\(frame 0, label 9\)"):
        load_objects(img, lab, {"frame": [0], "label": [9], "class": ["x"]}, prep=Preprocessing(size=16))
    with pytest.raises(ValueError, match="'class' column"):
        load_objects(img, lab, {"frame": [0], "label": [1]}, prep=Preprocessing(size=16))


def test_objects_none_present():
    img, lab = _movie()
    s = load_objects(img, np.zeros_like(lab), None, prep=Preprocessing(size=16))
    assert s.images.shape == (0, 1, 16, 16) and len(s) == 0
    with pytest.raises(ValueError, match="No samples"):
        check_trainable(s)


def test_class_weights_and_balanced_sampling():
    y = np.array([0] * 6 + [1] * 2)
    np.testing.assert_allclose(class_weights(y, 3), [8 / 12, 8 / 4, 0])
    idx = balanced_indices(np.random.default_rng(0), y, 4000)
    assert abs(np.mean(y[idx] == 1) - 0.5) < 0.03
    order = epoch_indices(np.random.default_rng(0), y, rate=3)
    assert sorted(order.tolist()) == sorted(list(range(8)) * 3)
    with pytest.raises(ValueError, match="rate"):
        epoch_indices(np.random.default_rng(0), y, rate=0)


def test_batches_shapes_and_drop_last():
    x = np.zeros((10, 1, 8, 8), np.float32)
    y = np.arange(10) % 2
    batches = list(iterate_batches(np.random.default_rng(0), x, y, 4, None, rate=1))
    assert [b[0].shape[0] for b in batches] == [4, 4]
    batches = list(iterate_batches(np.random.default_rng(0), x, y, 4, None, rate=1, drop_last=False))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
