"""The Train classifier widget: annotated objects and a gallery stack, k-fold, live curves of every
fold, confusion matrix, the k-fold writers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, qtbot, wait_idle, out_dir):
    from napari_cellnet.widgets import TrainClassifierWidget

    viewer = make_napari_viewer()
    widget = TrainClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    wait_idle(widget)
    widget.form.value = widget.form.value.replace(size=32, epochs=2, batch_size=8, aug_rate=1, aug="none", folds=2,
                                                  device="cpu")
    widget.output_folder.value = str(out_dir)
    return viewer, widget


def test_opens_with_the_dataclass_defaults_and_a_validation_split(make_napari_viewer, qtbot, wait_idle):
    from napari_cellnet.classification.params import ClassifierTrainConfig
    from napari_cellnet.widgets import TrainClassifierWidget

    widget = TrainClassifierWidget(make_napari_viewer())
    wait_idle(widget)
    cfg = widget.build_config()
    assert cfg == ClassifierTrainConfig()
    # the dataclass is the truth: 30 epochs and 3x augmentation (the widget used to say 60 and 5)
    assert (cfg.epochs, cfg.aug_rate, cfg.val_fraction) == (30, 3, 0.2)
    for name in ("activation", "dropout", "momentum", "balance", "pretrained", "members", "mask_neighbours"):
        assert name in widget.form.controls  # once CLI- or Python-only
    widget.form.controls["lr"].value = "-0.01"
    with pytest.raises(ValueError, match="lr must be > 0"):
        widget.build_config()


def test_train_on_annotated_objects_with_kfold(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path, errors):
    from napari_cellnet.widgets import ClassifyWidget

    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "cls")
    viewer.add_image(images, name="movie")
    labels = viewer.add_labels(gt.astype(np.int32), name="cells")
    rows = [(t, int(v)) for t in range(4) for v in np.unique(gt[t]) if v]
    area = {(t, v): int((gt[t] == v).sum()) for t, v in rows}
    median = np.median(list(area.values()))
    labels.features = pd.DataFrame({
        "frame": [t for t, _ in rows], "label": [v for _, v in rows],
        "annotated_class": ["big" if area[r] > median else "small" for r in rows]})
    widget.source.value = "annotated objects (Image + Labels)"
    widget.label_layer.value = labels
    assert widget.class_column.value == "annotated_class"
    n_big = sum(area[r] > median for r in rows)
    assert widget.data_note.value == f"Annotated: big {n_big}, small {len(rows) - n_big}"
    classify = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(classify)
    wait_idle(classify)
    assert widget.train() is not None
    wait_idle(widget, timeout=120000)
    assert errors() == []
    result = widget.result
    assert len(result.folds) == 2 and result.class_names == ["big", "small"]
    assert (tmp_path / "cls" / "model.pt").is_file()
    assert int(np.sum(widget.confusion.matrix)) == len(rows)  # every object scored once out of fold
    _plot_shows_the_history(widget.plot, result.history)
    assert {k for k in widget.plot.runs["fold1"]} >= {"accuracy", "balanced_accuracy"}  # a validation split
    assert classify.model.value == str(result.checkpoint)
    assert "accuracy" in widget.status.value and "now selectable in Classify" in widget.status.value


def test_train_on_gallery_stack_with_class_layer(make_napari_viewer, qtbot, wait_idle, tmp_path):
    from napari_cellnet._sample_data import hushem_gallery

    (stack, _, _), (points, kw, _) = hushem_gallery()
    classes = np.asarray(kw["features"]["class"])
    pick = np.concatenate([np.flatnonzero(classes == c)[:4] for c in np.unique(classes)])
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "gal")
    viewer.add_image(stack[pick], name="gallery", rgb=True)
    viewer.add_points(points[pick] * [0, 1, 1] + np.column_stack([np.arange(len(pick)), np.zeros((len(pick), 2))]),
                      name="gallery classes", features={"frame": np.arange(len(pick)), "class": classes[pick]})
    widget.source.value = "image stack + class layer"
    widget.image.value = viewer.layers["gallery"]
    widget.class_layer.value = viewer.layers["gallery classes"]
    assert widget.class_column.value == "class"
    widget.form.controls["refit"].value = False
    widget.form.controls["epochs"].value = 1
    widget.form.controls["val_fraction"].value = 0.0
    assert widget.train() is not None
    wait_idle(widget, timeout=120000)
    assert widget.result.summary["n_samples"] == 16
    assert widget.confusion.matrix.shape == (4, 4) and int(widget.confusion.matrix.sum()) == 16
    _plot_shows_the_history(widget.plot, widget.result.history)
    assert list(widget.plot.runs) == ["fold1", "fold2"]
    assert not any("accuracy" in series for series in widget.plot.runs.values())  # no validation split: no curve
    assert "no validation split" in [t.get_text() for t in widget.plot.figure.axes[1].texts][0]
    controls = widget.form.controls
    controls["aug"].value = None
    cfg = widget.build_config()  # the default: heads aligned upright, surroundings blanked
    assert (cfg.preprocessing.align, cfg.preprocessing.isolate) == ("major_axis", True)
    assert cfg.augment is None  # the engine picks "aligned" for aligned samples
    controls["aug"].value = "aligned"
    assert widget.build_config().augment.rotation_range == 20  # the "aligned" preset
    controls["align"].value = "none"
    controls["crop_fraction"].value = 0.5
    cfg = widget.build_config()
    assert (cfg.preprocessing.align, cfg.preprocessing.isolate, cfg.preprocessing.crop_fraction) == ("none", False, 0.5)
    controls["members"].value = "small_cnn*3,mobilenet_v2,resnet18:width=32"  # the demo's mixed ensemble
    assert [m["arch"] for m in widget.build_config().member_specs()] == ["small_cnn"] * 3 + ["mobilenet_v2",
                                                                                            "resnet18"]


def _plot_shows_the_history(plot, history):
    """One curve per run, kept to the end, whose points are the engine's history rows."""
    runs = list(dict.fromkeys(row["run"] for row in history))
    assert list(plot.runs) == runs
    for run in runs:
        rows = [row for row in history if row["run"] == run]
        for key in ("train_loss", "accuracy", "balanced_accuracy"):
            if key in rows[0]:
                assert plot.runs[run][key] == ([float(r["epoch"]) for r in rows], [r[key] for r in rows])
            else:
                assert key not in plot.runs[run]
    legend = plot.figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == runs
    if "refit" in runs:
        assert plot.color("refit") == plot._REFIT and plot.color("fold1") != plot._REFIT


def test_one_class_only_disables_train(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "x")
    viewer.add_image(images, name="movie")
    labels = viewer.add_labels(gt.astype(np.int32), name="cells")
    labels.features = pd.DataFrame({"frame": [0, 0], "label": [int(v) for v in np.unique(gt[0])[1:3]],
                                    "annotated_class": ["round", "round"]})
    widget.label_layer.value = labels
    widget._check()
    assert not widget.train_button.enabled
    assert "annotate at least two classes" in widget.data_note.value


def _png(path, value):
    from skimage.io import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, np.full((12, 12), value, np.uint8), check_contrast=False)


def test_kfold_writers_write_the_folds_training_uses(make_napari_viewer, qtbot, wait_idle, tmp_path, errors):
    from napari_cellnet.core.io import read_table
    from napari_cellnet.core.splits import stratified_kfold

    gallery = tmp_path / "gallery"
    names = {c: [f"{c}_{i}.png" for i in range(n)] for c, n in (("a", 6), ("b", 3))}
    for c, files in names.items():
        for i, name in enumerate(files):
            _png(gallery / c / name, 20 * i)
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, tmp_path / "m")
    assert widget.kfold_buttons.native.isHidden()  # (the viewer is not shown: ask what was hidden)
    widget.source.value = "class folders on disk"
    assert not widget.kfold_buttons.native.isHidden()
    widget.folder.value = str(gallery)
    widget.form.controls["folds"].value = 3
    widget.form.controls["seed"].value = 4
    csv = widget.write_split_csv(tmp_path / "splits.csv")
    table = read_table(csv)
    paths = [f"{c}/{n}" for c in sorted(names) for n in sorted(names[c])]
    assert sorted(table["path"]) == paths
    labels = np.asarray([0] * 6 + [1] * 3)
    expected = {}
    for f, (_, test) in enumerate(stratified_kfold(labels, 3, 4), start=1):
        expected.update({paths[i]: f for i in test})
    assert dict(zip(table["path"], table["fold"], strict=True)) == expected
    out = widget.write_kfold(tmp_path / "kfold")
    for f in (1, 2, 3):
        test = sorted(p.relative_to(out / f"fold{f}" / "test").as_posix() for p in (out / f"fold{f}" / "test").rglob("*.png"))
        train = sorted(p.relative_to(out / f"fold{f}" / "train").as_posix() for p in (out / f"fold{f}" / "train").rglob("*.png"))
        assert test == sorted(p for p, k in expected.items() if k == f)
        assert sorted(test + train) == paths
    assert errors() == []
    assert widget.write_kfold(tmp_path / "kfold") is None  # not empty: refused, nothing overwritten
    assert any("not empty" in m for m in errors())
    widget.form.controls["folds"].value = 1
    assert widget.write_split_csv(tmp_path / "x.csv") is None
    assert any("set it to 2 or more" in m for m in errors())
