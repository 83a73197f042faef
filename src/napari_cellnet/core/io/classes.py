"""Class-folder datasets of single-cell images: read them, and copy or list their k-fold splits.

The layout ``root/<class>/<image files>`` is the one the seed GUIs used; the folds come
from :mod:`napari_cellnet.core.splits` so a copied fold and a training fold are the same.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_cellnet.core.io.files import write_table
from napari_cellnet.core.io.frames import natural_key
from napari_cellnet.core.splits import stratified_kfold

CLASS_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


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
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key)
    if not class_dirs:
        raise ValueError(
            f"{root}: no class folders found. Arrange the images as {root.name}/<class name>/<image files>."
        )
    paths: list[Path] = []
    labels: list[int] = []
    for i, d in enumerate(class_dirs):
        files = sorted(
            (f for f in d.iterdir() if f.is_file() and f.suffix.lower() in CLASS_IMAGE_SUFFIXES), key=natural_key
        )
        if not files:
            raise ValueError(
                f"{d}: class folder {d.name!r} holds no images ({', '.join(CLASS_IMAGE_SUFFIXES)}). "
                "Add images or remove the folder."
            )
        paths += files
        labels += [i] * len(files)
    return ClassDataset(paths=paths, labels=np.asarray(labels, dtype=np.int64), class_names=[d.name for d in class_dirs], root=root)



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

