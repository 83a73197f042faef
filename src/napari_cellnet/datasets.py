"""The real microscopy data and demo models shipped with the package.

Both data sets are small, public and licensed for reuse (attribution below and in
``docs/data.md``); tests, benchmarks, the napari sample-data menu and the demo models all
use these copies, so results can be reproduced from a plain install.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_cellnet.core.io import ClassDataset, read_class_folders, read_stack

RESOURCES = Path(__file__).parent / "resources"

C2C12_ATTRIBUTION = (
    "C2C12 myoblasts, phase contrast, 10 frames of 234x234 px with instance labels. Images from "
    "Ker et al. 2018, Sci Data, doi:10.1038/sdata.2018.237 (CC BY 4.0), as cropped by the laptrack "
    "project (github.com/yfukai/laptrack, BSD-3-Clause)."
)
HUSHEM_ATTRIBUTION = (
    "HuSHeM: Human Sperm Head Morphology dataset, 216 RGB images in 4 classes. Shaker F. (2018), "
    "Mendeley Data, doi:10.17632/tt3yj2pf38; Shaker et al., J Biomed Inform 2017 (CC BY 4.0)."
)


def c2c12_paths() -> tuple[Path, Path]:
    """Paths of the C2C12 movie and its instance labels (ImageJ TIFF, axes TYX)."""
    folder = RESOURCES / "samples" / "c2c12"
    return folder / "images.tif", folder / "labels.tif"


def c2c12() -> tuple[np.ndarray, np.ndarray]:
    """The C2C12 movie and its labels.

    Returns
    -------
    images : ndarray of uint8, shape (10, 234, 234)
    labels : ndarray of uint16, shape (10, 234, 234)
        Instance labels on every frame (8 to 13 cells per frame).
    """
    img_path, lab_path = c2c12_paths()
    return np.asarray(read_stack(img_path).data), np.asarray(read_stack(lab_path).data)


def hushem_dir() -> Path:
    """Folder of the HuSHeM gallery (``<class>/*.png``)."""
    return RESOURCES / "samples" / "hushem"


def hushem() -> ClassDataset:
    """The HuSHeM sperm-head gallery as a class-folder dataset (216 images, 4 classes)."""
    return read_class_folders(hushem_dir())


def demo_model_path(task: str) -> Path:
    """Path of the shipped demo model for ``"segmentation"`` or ``"classification"``.

    Raises
    ------
    ValueError
        For another task name.
    FileNotFoundError
        If this installation lacks the model file.
    """
    if task not in ("segmentation", "classification"):
        raise ValueError(f"task must be 'segmentation' or 'classification', not {task!r}.")
    path = RESOURCES / "models" / f"{task}_demo.pt"
    if not path.is_file():
        raise FileNotFoundError(f"The {task} demo model is missing from this installation ({path}).")
    return path
