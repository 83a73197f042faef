"""The Train segmentation widget: a real (short) training run, live plot, Stop/Continue, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.core.jobs import TrainEvent

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, qtbot, wait_idle, images, labels, out_dir):
    from napari_cellnet.widgets import TrainSegmentationWidget

    viewer = make_napari_viewer()
    viewer.add_image(images, name="movie")
    viewer.add_labels(labels, name="annotations")
    widget = TrainSegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    wait_idle(widget)
    _set(widget, window=3, epochs=2, batch_size=4, patch_size=64, augment="none", device="cpu")
    widget.output_folder.value = str(out_dir)
    return viewer, widget


def _set(widget, **values):

    widget.form.set_values(values)


def test_training_run_plots_epochs_and_offers_the_model_to_segment(make_napari_viewer, qtbot, wait_idle, c2c12_crop,
                                                                   tmp_path, errors):
    from napari_cellnet.widgets import SegmentWidget

    images, gt = c2c12_crop
    sparse = gt.copy()
    sparse[2] = 0  # frames 0, 1, 3 annotated
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, images, sparse, tmp_path / "model")
    assert widget.frames_note.value.startswith("Annotated frames: 0, 1, 3 (3)")
    _set(widget, val_frames=[3])
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    wait_idle(segment)
    worker = widget.train()
    assert worker is not None, widget.status.value
    wait_idle(widget, timeout=120000)
    assert errors() == []
    result = widget.result
    assert result.epochs_done == 2 and not result.stopped
    assert (tmp_path / "model" / "best.pt").is_file() and (tmp_path / "model" / "last.pt").is_file()
    # the live plot got one point per epoch for the losses and the validation scores
    assert widget.plot.series["train_loss"][0] == [1.0, 2.0]
    assert widget.plot.series["val_loss"][0] == [1.0, 2.0] and len(widget.plot.series["seg"][1]) == 2
    assert [r["epoch"] for r in widget.history] == [1, 2]
    assert result.params.val_frames == [3] and result.params.window == 3
    # the new model is selected in the Segment widget
    assert segment.model.value == str(result.model_path)
    assert "now selectable in Segment" in widget.status.value


def test_stop_keeps_the_best_model_and_continue_resumes(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, images, gt, tmp_path / "m")
    _set(widget, val_frames=[], epochs=3, aug_rate=5)  # ~10 steps per epoch: Stop lands inside epoch 2
    worker = widget.train()

    def stop_in_second_epoch(event):
        if isinstance(event, TrainEvent) and event.kind == "step" and event.epoch == 2 and event.step == 1:
            widget.runner.stop()

    worker.yielded.connect(stop_in_second_epoch)
    wait_idle(widget, timeout=120000)
    result = widget.result
    assert result.stopped and result.epochs_done == 1
    assert result.best_path is not None and result.best_path.is_file()  # epoch 1's model is kept
    assert widget.continue_button.enabled and "stopped" in widget.status.value
    widget.train(resume=True)
    wait_idle(widget, timeout=120000)
    assert widget.result.epochs_done == 3 and not widget.result.stopped
    assert widget.plot.series["train_loss"][0] == [1.0, 2.0, 3.0]


def test_bad_inputs_disable_train_with_a_reason(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path, errors):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, images, np.zeros_like(gt), tmp_path / "m")
    assert not widget.train_button.enabled and "no labelled pixel" in widget.frames_note.value
    viewer.add_labels(gt[:, :50], name="wrong size")
    widget.label_layer.value = viewer.layers["wrong size"]
    assert not widget.train_button.enabled and "(4, 50, 96)" in widget.frames_note.value
    widget.label_layer.value = viewer.layers["annotations"]
    viewer.layers["annotations"].data = gt
    widget._check()
    assert widget.train_button.enabled
    widget.form.controls["val_frames"].value = "3, 12"
    assert not widget.train_button.enabled and "outside the movie" in widget.frames_note.value
    widget.form.controls["val_frames"].value = "first"
    assert not widget.train_button.enabled and "Cannot read frame list 'first'" in widget.frames_note.value
    widget.form.controls["val_frames"].value = "auto"
    assert widget.train_button.enabled
    widget.output_folder.value = ""
    assert widget.train() is None
    assert any("output folder" in m for m in errors())


def test_form_shows_train_seg_params_presets_fill_it_and_the_cli_reads_its_params_json(make_napari_viewer, qtbot,
                                                                                     wait_idle, c2c12_crop, tmp_path):
    from napari_cellnet.cli.app import build_parser
    from napari_cellnet.cli.train_seg import build_params
    from napari_cellnet.segmentation.params import TrainSegParams
    from napari_cellnet.widgets import TrainSegmentationWidget

    images, gt = c2c12_crop
    sparse = gt.copy()
    sparse[2] = 0
    viewer = make_napari_viewer()
    viewer.add_image(images, name="movie")
    viewer.add_labels(sparse, name="annotations")
    widget = TrainSegmentationWidget(viewer)
    wait_idle(widget)
    # the dataclass defaults, not the widget's own (it used to train with lr 2e-3, batch 8, patch 128)
    assert widget.form.value == TrainSegParams()
    assert (widget.form.value.lr, widget.form.value.batch_size, widget.form.value.patch_size) == (4e-3, 16, 64)
    assert set(widget.form.controls) == {i.name for i in TrainSegParams.infos()}
    assert "0, 1, 3" in widget.form.controls["frames"].native.placeholderText()  # what "auto" picks from
    # a preset fills in its settings, the others keep the user's values
    _set(widget, epochs=7, window=3)
    widget.form.controls["preset"].value = "stemnet"
    assert widget.form.value == TrainSegParams.from_preset("stemnet", epochs=7, window=3)
    _set(widget, lr=0.1, frames=[0, 1], val_frames=[3], model_config={"base_width": 8})
    expected = TrainSegParams.from_preset("stemnet", epochs=7, window=3, lr=0.1, frames=[0, 1], val_frames=[3],
                                          model_config={"base_width": 8})
    assert widget.build_params() == expected
    # Save settings… writes what train-seg --params reads: the same object
    saved = widget.form.save(tmp_path / "train_seg_params.json")
    argv = ["train-seg", "--images", "m.tif", "--labels", "l.tif", "-o", str(tmp_path / "m"), "--params", str(saved)]
    assert build_params(build_parser().parse_args(argv)) == expected
    widget.form.controls["preset"].value = "light"  # back to the light preset's settings
    assert widget.form.value == expected.with_preset("light")
    widget.restore_defaults()
    assert widget.form.value == TrainSegParams()
