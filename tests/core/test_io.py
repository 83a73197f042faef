"""Stack I/O: formats, axes, lazy access, class folders, k-fold splits, writers, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_cellnet import datasets
from napari_cellnet.core import io


@pytest.fixture
def movie() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(6, 2, 20, 30), dtype=np.uint8)


def test_imagej_hyperstack_axes_and_pixel_size(tmp_path, movie):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, movie, imagej=True, resolution=(1 / 0.5, 1 / 0.25), metadata={"axes": "TCYX", "unit": "um"})
    stack = io.read_stack(path)
    assert stack.axes == "TCYX"
    assert stack.pixel_size == pytest.approx((0.25, 0.5))  # (y, x)
    assert stack.unit == "um"
    assert stack.scale == pytest.approx((1, 1, 0.25, 0.5))
    np.testing.assert_array_equal(stack.data, movie)


def test_ome_tiff_physical_size(tmp_path, movie):
    path = tmp_path / "m.ome.tif"
    tifffile.imwrite(path, movie, ome=True, metadata={"axes": "TCYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.7})
    stack = io.read_stack(path)
    assert stack.axes == "TCYX"
    assert stack.pixel_size == pytest.approx((0.7, 0.65))


def test_bigtiff_and_explicit_axes_override(tmp_path, movie):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, movie[:, 0], bigtiff=True)
    assert tifffile.TiffFile(path).is_bigtiff
    stack = io.read_stack(path, axes="zyx")
    assert stack.axes == "ZYX"
    assert stack.pixel_size is None


def test_sample_movie_reads_as_tyx():
    img_path, lab_path = datasets.c2c12_paths()
    img, lab = io.read_stack(img_path), io.read_stack(lab_path)
    assert (img.axes, img.shape, img.data.dtype) == ("TYX", (10, 234, 234), np.uint8)
    assert (lab.axes, lab.shape, lab.data.dtype) == ("TYX", (10, 234, 234), np.uint16)
    assert img.pixel_size is None  # the file states 1 pixel per unit and no unit


def test_lazy_memmap_for_contiguous_tiff(tmp_path, movie):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, movie, metadata={"axes": "TCYX"})
    stack = io.read_stack(path, lazy=True)
    assert isinstance(stack.data, np.memmap)
    np.testing.assert_array_equal(stack.data[3], movie[3])


def test_lazy_pages_for_compressed_tiff(tmp_path, movie):
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, movie, compression="zlib", metadata={"axes": "TCYX"})
    stack = io.read_stack(path, lazy=True)
    assert not isinstance(stack.data, np.ndarray)  # a dask array, nothing read yet
    np.testing.assert_array_equal(np.asarray(stack.data[2]), movie[2])
    np.testing.assert_array_equal(np.asarray(stack.data[1:4, 1, 5:9]), movie[1:4, 1, 5:9])
    np.testing.assert_array_equal(np.asarray(stack.data), movie)


def test_lazy_above_bytes_is_read_from_the_package_when_a_file_opens(tmp_path, movie, monkeypatch):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, movie, metadata={"axes": "TCYX"})
    assert type(io.read_stack(path).data) is np.ndarray  # 7 KB is far below 512 MiB
    monkeypatch.setattr(io, "LAZY_ABOVE_BYTES", movie.nbytes - 1)
    assert isinstance(io.read_stack(path).data, np.memmap)
    assert type(io.read_stack(path, lazy=False).data) is np.ndarray  # lazy= wins over the setting


def test_frame_folder_sorted_numerically(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((8, 9), i, np.uint8)).save(tmp_path / f"frame{i}.png")
    stack = io.read_stack(tmp_path)
    assert stack.axes == "TYX"
    assert stack.data[:, 0, 0].tolist() == [1, 2, 10]
    lazy = io.read_stack(tmp_path, lazy=True)
    assert np.asarray(lazy.data)[:, 0, 0].tolist() == [1, 2, 10]


@pytest.mark.parametrize(
    ("shape", "axes"),
    [((5, 6), "YX"), ((4, 20, 20), "TYX"), ((20, 20, 3), "YXC"), ((4, 20, 20, 3), "TYXC"), ((4, 2, 20, 20), "TCYX")],
)
def test_guess_axes(shape, axes):
    assert io.guess_axes(shape) == axes


def test_to_tcyx_moves_and_adds_axes():
    a = np.arange(2 * 5 * 6 * 3).reshape(2, 5, 6, 3)
    out = io.to_tcyx(a, "TYXC")
    assert out.shape == (2, 3, 5, 6)
    assert out[1, 2, 4, 5] == a[1, 4, 5, 2]
    assert io.to_tcyx(np.zeros((5, 6)), "YX").shape == (1, 1, 5, 6)
    assert io.to_tcyx(np.zeros((1, 4, 5, 6)), "ZTYX").shape == (4, 1, 5, 6)


def test_class_folders_and_counts(tmp_path):
    for cls, n in (("b_round", 3), ("a_long", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / cls / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    ds = io.read_class_folders(tmp_path)
    assert ds.class_names == ["a_long", "b_round"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert ds.counts() == {"a_long": 2, "b_round": 3}


def test_hushem_sample_is_complete():
    ds = datasets.hushem()
    assert len(ds) == 216
    assert ds.counts() == {"01_Normal": 54, "02_Tapered": 53, "03_Pyriform": 57, "04_Amorphous": 52}


def test_kfold_folders_and_split_csv(tmp_path):
    ds = datasets.hushem()
    out = io.write_kfold_folders(ds, tmp_path / "kfold", k=4, seed=0)
    test_files = sorted(p.name for p in out.glob("fold*/test/*/*.png"))
    assert len(test_files) == 216
    assert len(list((out / "fold1" / "train").glob("*/*.png"))) + len(list((out / "fold1" / "test").glob("*/*.png"))) == 216
    table = io.read_table(io.write_split_csv(ds, tmp_path / "split.csv", k=4))
    assert sorted(set(table["fold"])) == [1, 2, 3, 4]
    assert table["path"][0] == "01_Normal/image_001.png"
    with pytest.raises(FileExistsError):
        io.write_kfold_folders(ds, out, k=4)


def test_write_labels_roundtrip_keeps_axes_and_pixel_size(tmp_path):
    labels = np.zeros((3, 10, 12), np.int32)
    labels[1, 2:5, 3:7] = 7
    path = io.write_labels(tmp_path / "lab.tif", labels, axes="TYX", pixel_size=(0.5, 0.25))
    back = io.read_stack(path)
    assert back.axes == "TYX" and back.data.dtype == np.uint16
    assert back.pixel_size == pytest.approx((0.5, 0.25))
    np.testing.assert_array_equal(back.data, labels)
    big = labels.copy()
    big[0, 0, 0] = 70000
    np.testing.assert_array_equal(io.read_stack(io.write_labels(tmp_path / "big.tif", big)).data, big)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_tiff_frame_writer_appears_only_on_commit_with_dtype_and_pixel_size(tmp_path):
    frames = np.arange(3 * 10 * 12, dtype=np.int64).reshape(3, 10, 12)
    path = tmp_path / "out" / "labels.tif"  # the folder does not exist yet
    writer = io.TiffFrameWriter(path, np.uint32, pixel_size=(0.5, 0.25))
    for frame in frames:
        writer.write(frame)
        assert not path.exists()  # only the hidden temporary file while writing
    assert writer.frames == 3
    assert writer.commit() == path
    with tifffile.TiffFile(path) as tf:
        back = tf.asarray()
        page = tf.pages[0]
        assert tf.is_bigtiff and len(tf.pages) == 3
        assert page.tags["XResolution"].value == (4, 1)  # 1 / 0.25 pixels per unit along x
        assert page.tags["YResolution"].value == (2, 1)  # 1 / 0.5 along y
    assert back.shape == (3, 10, 12) and back.dtype == np.uint32
    np.testing.assert_array_equal(back, frames)
    stack = io.read_stack(path)
    assert stack.axes == "TYX" and stack.pixel_size == pytest.approx((0.5, 0.25))
    assert [p.name for p in path.parent.iterdir()] == ["labels.tif"]  # no temporary file left

    other = tmp_path / "out" / "probabilities.tif"
    writer = io.TiffFrameWriter(other, np.float32)
    writer.write(np.full((10, 12), 0.5))
    writer.abort()
    assert not other.exists()
    assert [p.name for p in path.parent.iterdir()] == ["labels.tif"]


def test_write_and_read_table(tmp_path):
    path = io.write_table(tmp_path / "t.csv", {"frame": [0, 1], "label": np.array([3, 4]), "p": [0.25, 0.5], "class": ["a", "b"]})
    assert io.read_table(path) == {"frame": [0, 1], "label": [3, 4], "p": [0.25, 0.5], "class": ["a", "b"]}
    with pytest.raises(ValueError, match="differ in length"):
        io.write_table(tmp_path / "bad.csv", {"a": [1], "b": [1, 2]})


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        io.read_stack(tmp_path / "nope.tif")


def test_not_an_image(tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a tiff")
    with pytest.raises(ValueError, match="notes.tif: not a readable TIFF"):
        io.read_stack(bad)
    other = tmp_path / "table.csv"
    other.write_text("a,b")
    with pytest.raises(ValueError, match="unsupported file type"):
        io.read_stack(other)


def test_truncated_tiff(tmp_path, movie):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, movie)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.tif.*truncated"):
        io.read_stack(path)


def test_truncated_compressed_tiff(tmp_path, movie):
    path = tmp_path / "cutz.tif"
    tifffile.imwrite(path, movie, compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    with pytest.raises(ValueError, match="cutz.tif"):
        io.read_stack(path)


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no frames"):
        io.read_stack(tmp_path)


def test_mixed_frame_sizes(tmp_path):
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "f1.png")
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "f2.png")
    for lazy in (False, True):
        with pytest.raises(ValueError, match="f2.png is"):
            io.read_stack(tmp_path, lazy=lazy)


def test_axes_that_do_not_fit(tmp_path, movie):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, movie)
    with pytest.raises(ValueError, match="has 3 letters but m.tif has 4 dimensions"):
        io.read_stack(path, axes="TYX")
    with pytest.raises(ValueError, match="repeats a letter"):
        io.validate_axes("TTYX", movie.shape)
    with pytest.raises(ValueError, match="unknown letters"):
        io.validate_axes("TQYX", movie.shape)
    with pytest.raises(ValueError, match="Z axis with 6 planes"):
        io.to_tcyx(movie, "ZCYX")


def test_empty_class_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a" / "x.png")
    with pytest.raises(ValueError, match="class folder 'b' holds no images"):
        io.read_class_folders(tmp_path)
    with pytest.raises(ValueError, match="no class folders"):
        io.read_class_folders(tmp_path / "a")
