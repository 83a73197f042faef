"""Stacks in and out: TIFF (BigTIFF, ImageJ hyperstacks, OME-TIFF), frame folders, class folders.

One reader serves the napari reader, the CLI and training, so a movie opens the same way
everywhere and a bad file fails with one message that names the file and what to do.
Axes are plain strings over ``T C Z Y X`` (``"TYX"``, ``"TCYX"``, ``"YXC"`` for RGB), taken
from the file when it says (tifffile reads ImageJ and OME metadata), guessed otherwise,
and always overridable with ``axes=``.

Large movies open lazily: uncompressed contiguous TIFFs are memory-mapped, others become a
dask array read one page at a time, so a 4 GB movie opens without being read.
Qt- and torch-free by design (enforced by import-linter).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
FRAME_SUFFIXES = (".tif", ".tiff", ".png")
CLASS_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
AXES_LETTERS = "TCZYX"
# tifffile's axis codes -> ours ("S" samples are colour channels, "I"/"Q" image sequences)
_TIFFFILE_AXES = {"S": "C", "I": "T", "Q": "T", "E": "C"}
LAZY_ABOVE_BYTES = 512 * 2**20


@dataclass
class Stack:
    """An image stack and what its file says about it.

    Attributes
    ----------
    data : ndarray or array-like, shape given by ``axes``
        A numpy array, a ``numpy.memmap`` or a dask array when read lazily.
    axes : str
        One letter per dimension of ``data``, from ``"TCZYX"`` (e.g. ``"TYX"``, ``"TCYX"``, ``"YXC"``).
    pixel_size : tuple of float or None
        Physical pixel size ``(y, x)`` when the file states one.
    unit : str or None
        Unit of ``pixel_size`` (e.g. ``"um"``).
    path : Path or None
        Where the stack was read from.
    """

    data: Any
    axes: str
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def scale(self) -> tuple[float, ...]:
        """Per-axis scale for napari layers (pixel size on Y and X, 1 elsewhere)."""
        if self.pixel_size is None:
            return tuple(1.0 for _ in self.axes)
        sizes = {"Y": self.pixel_size[0], "X": self.pixel_size[1]}
        return tuple(float(sizes.get(a, 1.0)) for a in self.axes)


@dataclass
class ClassDataset:
    """A gallery of single-cell images sorted into class folders.

    Attributes
    ----------
    paths : list of Path
        One image file per sample.
    labels : ndarray of int, shape (N,)
        Index into ``class_names`` for each sample.
    class_names : list of str
        The class folder names, sorted.
    root : Path
        The dataset folder.
    """

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]
    root: Path

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        """Number of images per class."""
        return {c: int(np.sum(self.labels == i)) for i, c in enumerate(self.class_names)}


# --------------------------------------------------------------------------- axes


def validate_axes(axes: str, shape: Sequence[int], source: object = "the array") -> str:
    """Check an axes string against an array shape and return it upper-cased.

    Raises
    ------
    ValueError
        If the string has the wrong length, repeats a letter, uses a letter outside
        ``TCZYX`` or lacks ``Y`` and ``X``; the message names ``source`` and its shape.
    """
    ax = axes.strip().upper().replace("S", "C")
    shape = tuple(shape)
    hint = f"Give one letter per dimension from {AXES_LETTERS}, e.g. {guess_axes(shape)!r}."
    if len(ax) != len(shape):
        raise ValueError(
            f"Axes {axes!r} has {len(ax)} letters but {source} has {len(shape)} dimensions "
            f"(shape {shape}). {hint}"
        )
    bad = sorted(set(ax) - set(AXES_LETTERS))
    if bad:
        raise ValueError(f"Axes {axes!r} for {source} uses unknown letters {bad}. {hint}")
    if len(set(ax)) != len(ax):
        raise ValueError(f"Axes {axes!r} for {source} repeats a letter. {hint}")
    if "Y" not in ax or "X" not in ax:
        raise ValueError(f"Axes {axes!r} for {source} must contain Y and X. {hint}")
    return ax


def guess_axes(shape: Sequence[int]) -> str:
    """Guess the axes of an array from its shape alone.

    2-D is ``YX``; a small last dimension (3 or 4) is read as colour (``YXC``, ``TYXC``);
    a small second dimension of a 4-D array as channels (``TCYX``); otherwise the leading
    dimension is time (``TYX``, ``TZYX`` is never guessed: say ``axes=`` for volumes).
    """
    shape = tuple(int(n) for n in shape)
    nd = len(shape)
    if nd < 2:
        raise ValueError(f"An image needs at least 2 dimensions; got shape {shape}.")
    if nd == 2:
        return "YX"
    rgb = shape[-1] in (3, 4) and shape[-2] > 4
    if nd == 3:
        return "YXC" if rgb else "TYX"
    if nd == 4:
        if rgb:
            return "TYXC"
        return "TCYX"
    if nd == 5:
        return "TCZYX"
    raise ValueError(f"Cannot guess axes for a {nd}-D array of shape {shape}; pass axes=.")


def to_tcyx(data: Any, axes: str) -> Any:
    """Reorder an array to ``(T, C, Y, X)``, adding length-1 T and C axes where missing.

    Works on numpy arrays, memmaps and dask arrays without reading them.

    Raises
    ------
    ValueError
        If ``axes`` does not fit ``data`` or contains ``Z`` with more than one plane
        (volumes are not time-lapse frames: pick a plane or relabel the axis).
    """
    ax = validate_axes(axes, data.shape)
    if "Z" in ax:
        nz = data.shape[ax.index("Z")]
        if nz != 1:
            raise ValueError(
                f"The stack has a Z axis with {nz} planes (axes {ax!r}); napari-cellnet segments 2-D "
                "time-lapse frames. Choose one plane, or pass axes with T instead of Z if the planes are time points."
            )
        index: list[int | slice] = [slice(None)] * len(ax)
        index[ax.index("Z")] = 0
        data = data[tuple(index)]
        ax = ax.replace("Z", "")
    for letter in "TC":
        if letter not in ax:
            data = data[None]
            ax = letter + ax
    perm = [ax.index(letter) for letter in "TCYX"]
    return data.transpose(perm)


# --------------------------------------------------------------------------- reading


def read_stack(path: str | os.PathLike[str], axes: str | None = None, lazy: bool | None = None) -> Stack:
    """Read a movie or image from a TIFF file, a single image file or a folder of frames.

    Parameters
    ----------
    path : path-like
        A ``.tif``/``.tiff`` (plain, BigTIFF, ImageJ hyperstack, OME-TIFF), a ``.png``/``.jpg``/
        ``.bmp`` image, or a folder of ``.tif``/``.png`` frames (sorted numerically).
    axes : str, optional
        Override the axes the file states or that are guessed (e.g. ``"TYX"``).
    lazy : bool, optional
        Return a memory map or dask array instead of reading everything. The default
        reads files up to 512 MiB and opens larger ones lazily.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an image, is truncated, a folder is empty or mixes frame sizes,
        or ``axes`` does not fit the data. Messages name the file and what to do.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"No such file or folder: {p}. Check the path.")
    if p.is_dir():
        stack = _read_frame_folder(p, lazy=bool(lazy))
    elif p.suffix.lower() in TIFF_SUFFIXES:
        stack = _read_tiff(p, lazy)
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        data = read_image(p)
        stack = Stack(data=data, axes=guess_axes(data.shape), path=p)
    else:
        raise ValueError(
            f"{p.name}: unsupported file type {p.suffix!r}. napari-cellnet reads TIFF "
            f"({', '.join(TIFF_SUFFIXES)}), {', '.join(IMAGE_SUFFIXES)} and folders of frames."
        )
    if axes is not None:
        stack.axes = validate_axes(axes, stack.shape, source=p.name)
    return stack


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one 2-D image (grayscale ``(Y, X)`` or colour ``(Y, X, C)``) from any common format."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such image file: {p}.")
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(p)
        else:
            import imageio.v3 as iio

            data = np.asarray(iio.imread(p))
    except Exception as err:  # noqa: BLE001 - any decoder failure means "not a readable image"
        raise ValueError(f"{p}: not a readable image ({type(err).__name__}: {err}). Replace or remove the file.") from err
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
        data = np.moveaxis(data, 0, -1)  # planar RGB -> interleaved
    if data.ndim not in (2, 3):
        raise ValueError(f"{p}: expected a single 2-D image, got shape {data.shape}.")
    return data


def _natural_key(path: Path) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """Frame files of a folder in numeric order (``frame2`` before ``frame10``)."""
    folder = Path(folder)
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES and not f.name.startswith(".")]
    return sorted(files, key=_natural_key)


def _read_frame_folder(folder: Path, lazy: bool) -> Stack:
    files = list_frames(folder)
    if not files:
        raise ValueError(
            f"{folder}: the folder holds no frames ({', '.join(FRAME_SUFFIXES)}). "
            "Choose a folder of numbered frame images."
        )
    first = read_image(files[0])
    if lazy:
        import dask
        import dask.array as da

        _check_frame_shapes(files, first)
        frames = [da.from_delayed(dask.delayed(read_image)(f), shape=first.shape, dtype=first.dtype) for f in files]
        data: Any = da.stack(frames)
    else:
        frames_np = [first]
        for f in files[1:]:
            frame = read_image(f)
            if frame.shape != first.shape:
                raise ValueError(_mixed_sizes(folder, files[0], first.shape, f, frame.shape))
            frames_np.append(frame)
        data = np.stack(frames_np)
    axes = "TYXC" if first.ndim == 3 else "TYX"
    return Stack(data=data, axes=axes, path=folder, metadata={"files": [str(f) for f in files]})


def _check_frame_shapes(files: list[Path], first: np.ndarray) -> None:
    import imageio.v3 as iio

    for f in files[1:]:
        try:
            props = iio.improps(f)
            shape = tuple(props.shape)
        except Exception:  # noqa: BLE001
            shape = read_image(f).shape
        if shape != first.shape:
            raise ValueError(_mixed_sizes(f.parent, files[0], first.shape, f, shape))


def _mixed_sizes(folder: Path, f0: Path, s0: tuple[int, ...], f: Path, s: tuple[int, ...]) -> str:
    return (
        f"{folder}: frames differ in size ({f0.name} is {s0}, {f.name} is {s}). "
        "All frames of a movie must have the same size; crop or pad them, or move the odd ones out."
    )


def _read_tiff(path: Path, lazy: bool | None) -> Stack:
    import tifffile

    with _tifffile_complaints() as complaints:
        try:
            tf = tifffile.TiffFile(path)
        except Exception as err:  # noqa: BLE001 - tifffile raises many types for garbage
            raise ValueError(f"{path}: not a readable TIFF ({type(err).__name__}: {err}). Is it really a TIFF?") from err
        series = tf.series[0] if tf.series else None
    try:
        if series is None:
            raise ValueError(f"{path}: the TIFF contains no image data.")
        if complaints:
            raise ValueError(
                f"{path}: the TIFF is damaged or truncated ({complaints[0]}). Copy the file again from its source."
            )
        axes = "".join(_TIFFFILE_AXES.get(a, a) for a in series.axes)
        if len(set(axes)) != len(axes) or set(axes) - set(AXES_LETTERS):
            axes = guess_axes(series.shape)
        if axes in ("TYX",) and series.shape[-1] in (3, 4) and "S" in series.axes:
            axes = "TYXC"
        _check_complete(path, tf, series)
        pixel_size, unit = _pixel_size(tf)
        meta: dict[str, Any] = {"tiff_axes": series.axes}
        if tf.is_imagej and tf.imagej_metadata:
            meta["imagej"] = {k: v for k, v in tf.imagej_metadata.items() if isinstance(v, (int, float, str))}
        nbytes = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
        want_lazy = nbytes > LAZY_ABOVE_BYTES if lazy is None else lazy
        if want_lazy:
            data = _lazy_tiff(path, tf, series)
        else:
            data = series.asarray()
    except ValueError:
        tf.close()
        raise
    except Exception as err:  # noqa: BLE001
        tf.close()
        raise ValueError(f"{path}: could not read the TIFF ({type(err).__name__}: {err}). The file may be damaged.") from err
    if not want_lazy or isinstance(data, np.memmap):
        tf.close()
    return Stack(data=data, axes=axes, pixel_size=pixel_size, unit=unit, path=path, metadata=meta)


@contextmanager
def _tifffile_complaints() -> Iterator[list[str]]:
    """Collect what tifffile logs about broken page chains (it reads around them silently)."""
    found: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if any(w in msg for w in ("invalid page offset", "corrupted", "failed to reshape", "truncated")):
                found.append(msg.split("> ", 1)[-1])

    logger = logging.getLogger("tifffile")
    handler = _Catch(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _check_complete(path: Path, tf: Any, series: Any) -> None:
    """Refuse truncated files: every strip/tile must lie inside the file."""
    size = path.stat().st_size
    offset = series.dataoffset
    if offset is not None:
        nbytes = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
        end = offset + nbytes
    else:
        end = 0
        for page in series.pages:
            if page is None:
                continue
            offs, counts = page.dataoffsets, page.databytecounts
            if offs:
                end = max(end, max(o + c for o, c in zip(offs, counts, strict=False)))
    if end > size:
        raise ValueError(
            f"{path}: the TIFF is truncated (its data runs to byte {end} but the file has {size} bytes). "
            "Copy the file again from its source."
        )


def _pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None]:
    if tf.is_ome and tf.ome_metadata:
        sx = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tf.ome_metadata)
        sy = re.search(r'PhysicalSizeY="([0-9.eE+-]+)"', tf.ome_metadata)
        unit_m = re.search(r'PhysicalSizeXUnit="([^"]+)"', tf.ome_metadata)
        if sx and sy:
            u = unit_m.group(1) if unit_m else "um"
            return (float(sy.group(1)), float(sx.group(1))), ("um" if u in ("µm", "um", "micron") else u)
    page = tf.pages[0]
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    unit = None
    if tf.is_imagej and tf.imagej_metadata:
        unit = tf.imagej_metadata.get("unit")
    if xres is None or yres is None:
        return None, None
    (xn, xd), (yn, yd) = xres.value, yres.value
    if not (xn and yn) or (xn == xd and yn == yd and unit in (None, "pixel", "")):
        return None, None  # 1 pixel per unit with no unit: the file states no pixel size
    if unit in ("micron", "\\u00B5m", "µm"):
        unit = "um"
    return (yd / yn, xd / xn), unit


class _TiffPages:
    """Array-like view of a TIFF series read one page at a time (for dask)."""

    def __init__(self, path: Path, tf: Any, series: Any) -> None:
        self.path = path
        self.shape = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)
        self.ndim = len(self.shape)
        page_shape = tuple(series.keyframe.shape)
        self.page_ndim = len(page_shape)
        self.lead_shape = self.shape[: self.ndim - self.page_ndim]
        self._tf = tf
        self._series = series
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        lead_idx = [np.arange(n)[k] for n, k in zip(self.lead_shape, key[: len(self.lead_shape)], strict=False)]
        grids = np.meshgrid(*lead_idx, indexing="ij") if lead_idx else []
        flat = np.ravel_multi_index([g.ravel() for g in grids], self.lead_shape) if lead_idx else np.array([0])
        with self._lock:
            pages = [self._series.pages[int(i)].asarray() for i in flat]
        out = np.stack(pages).reshape(tuple(len(i) for i in lead_idx) + pages[0].shape)
        tail = key[len(self.lead_shape):]
        out = out[(slice(None),) * len(lead_idx) + tuple(tail)]
        # integer indices in the leading key drop their axis
        drop = tuple(i for i, k in enumerate(key[: len(self.lead_shape)]) if isinstance(k, (int, np.integer)))
        return out.squeeze(axis=drop) if drop else out


def _lazy_tiff(path: Path, tf: Any, series: Any) -> Any:
    import tifffile

    if series.dataoffset is not None:  # contiguous and uncompressed
        try:
            return tifffile.memmap(path, series=0, mode="r")
        except (ValueError, OSError):
            pass
    import dask.array as da

    pages = _TiffPages(path, tf, series)
    page_shape = series.shape[len(pages.lead_shape):]
    chunks = (1,) * len(pages.lead_shape) + tuple(page_shape)
    return da.from_array(pages, chunks=chunks, asarray=True, fancy=False, name=f"tiff-{path.name}-{id(pages)}")


# --------------------------------------------------------------------------- class folders


def read_class_folders(root: str | os.PathLike[str]) -> ClassDataset:
    """Read a ``root/<class>/*.png|tif|bmp|jpg`` dataset (the layout the seed GUIs used).

    Classes are the sub-folder names in sorted order. A single class is returned as is
    (training refuses it, prediction does not need classes).

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    ValueError
        If ``root`` has no class folders or a class folder holds no images (named).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No such dataset folder: {root}.")
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=_natural_key)
    if not class_dirs:
        raise ValueError(
            f"{root}: no class folders found. Arrange the images as {root.name}/<class name>/<image files>."
        )
    paths: list[Path] = []
    labels: list[int] = []
    for i, d in enumerate(class_dirs):
        files = sorted(
            (f for f in d.iterdir() if f.is_file() and f.suffix.lower() in CLASS_IMAGE_SUFFIXES), key=_natural_key
        )
        if not files:
            raise ValueError(
                f"{d}: class folder {d.name!r} holds no images ({', '.join(CLASS_IMAGE_SUFFIXES)}). "
                "Add images or remove the folder."
            )
        paths += files
        labels += [i] * len(files)
    return ClassDataset(paths=paths, labels=np.asarray(labels, dtype=np.int64), class_names=[d.name for d in class_dirs], root=root)


def stratified_kfold(labels: Sequence[int] | np.ndarray, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split sample indices into ``k`` folds with each class spread evenly over the folds.

    Returns
    -------
    list of (train_idx, test_idx)
        Sorted index arrays; every sample is in exactly one test fold.

    Raises
    ------
    ValueError
        If ``k < 2`` or some class has fewer than ``k`` samples.
    """
    y = np.asarray(labels)
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2 folds, got {k}.")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < k:
        small = classes[counts.argmin()]
        raise ValueError(
            f"Class {small!r} has only {counts.min()} samples, fewer than the {k} folds asked for. "
            "Use fewer folds or add samples."
        )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    start = 0
    for c in classes:
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold_of[idx] = (np.arange(len(idx)) + start) % k
        start = (start + len(idx)) % k  # keeps fold sizes balanced across classes
    all_idx = np.arange(len(y))
    return [(all_idx[fold_of != f], all_idx[fold_of == f]) for f in range(k)]


def stratified_holdout(labels: Sequence[int] | np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One stratified train/test split with about ``test_fraction`` of each class held out."""
    y = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}.")
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test += idx[:n].tolist()
    test_idx = np.sort(np.asarray(test, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def write_kfold_folders(dataset: ClassDataset, out_dir: str | os.PathLike[str], k: int = 5, seed: int = 0) -> Path:
    """Copy a class-folder dataset into ``out_dir/fold<i>/{train,test}/<class>/`` (the "k-folded" layout)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already exists and is not empty; choose a new folder for the k-fold copy.")
    for f, (train_idx, test_idx) in enumerate(stratified_kfold(dataset.labels, k, seed), start=1):
        for part, idx in (("train", train_idx), ("test", test_idx)):
            for i in idx:
                dest = out / f"fold{f}" / part / dataset.class_names[dataset.labels[i]]
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dataset.paths[i], dest / dataset.paths[i].name)
    return out


def write_split_csv(dataset: ClassDataset, path: str | os.PathLike[str], k: int = 5, seed: int = 0) -> Path:
    """Write ``path,class,fold`` rows: sample ``i`` is in the test set of fold ``fold``."""
    fold = np.empty(len(dataset), dtype=np.int64)
    for f, (_, test_idx) in enumerate(stratified_kfold(dataset.labels, k, seed), start=1):
        fold[test_idx] = f
    rel = [_relative(p, dataset.root) for p in dataset.paths]
    return write_table(path, {"path": rel, "class": [dataset.class_names[i] for i in dataset.labels], "fold": fold.tolist()})


def _relative(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- writing


def temp_path_beside(path: str | os.PathLike[str]) -> Path:
    """Create an empty hidden temporary file next to ``path`` and return its path.

    It gets the permissions a plain ``open`` would give (``mkstemp`` alone makes it
    private to the owner); rename it onto ``path`` when it is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A crash, a full disk or an exception never leaves a half-written file under the
    final name, and the temporary file is removed.
    """
    tmp = temp_path_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically; numpy scalars/arrays become numbers/lists."""
    import json

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as numbers and lists, anything else (paths) as text."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_labels(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    axes: str = "TYX",
    pixel_size: tuple[float, float] | None = None,
    unit: str = "um",
) -> Path:
    """Write a label or mask stack to an ImageJ TIFF that Fiji, napari and this package reopen with its axes.

    Labels up to 65535 are stored as uint16 (ImageJ's label type); larger IDs as int32 in a
    tifffile-shaped TIFF. The file appears under its name only once fully written.
    """
    path = Path(path)
    arr = np.asarray(labels)
    ax = validate_axes(axes, arr.shape, source=path.name)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    kwargs: dict[str, Any] = {}
    if pixel_size is not None:
        kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
    import tifffile

    with atomic_path(path) as tmp:
        if np.issubdtype(arr.dtype, np.integer) and arr.size and (arr.min() < 0 or arr.max() > 65535):
            tifffile.imwrite(tmp, arr.astype(np.int32), metadata={"axes": ax}, photometric="minisblack", **kwargs)
        else:
            if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
                arr = arr.astype(np.uint16)
            elif np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(np.float32)
            # ImageJ calls interleaved colour samples "S"
            meta: dict[str, Any] = {"axes": ax[:-1] + "S" if ax.endswith("C") else ax}
            if pixel_size is not None:
                meta["unit"] = unit
            tifffile.imwrite(tmp, arr, imagej=True, metadata=meta, **kwargs)
    return path


def write_table(path: str | os.PathLike[str], columns: Mapping[str, Sequence[Any]]) -> Path:
    """Write equal-length columns to a CSV file (one row per object), atomically."""
    path = Path(path)
    names = list(columns)
    lengths = {len(columns[n]) for n in names}
    if len(lengths) > 1:
        raise ValueError(f"Columns of {path.name} differ in length: { {n: len(columns[n]) for n in names} }")
    n = lengths.pop() if lengths else 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for i in range(n):
            writer.writerow([_cell(columns[c][i]) for c in names])
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_table(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read a CSV written by :func:`write_table`; numeric columns come back as numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such table: {path}.")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: the table is empty (no header row).")
    header, body = rows[0], rows[1:]
    cols: dict[str, list[Any]] = {h: [r[i] if i < len(r) else "" for r in body] for i, h in enumerate(header)}
    for name, values in cols.items():
        for cast in (int, float):
            try:
                cols[name] = [cast(v) for v in values]
                break
            except ValueError:
                continue
    return cols
