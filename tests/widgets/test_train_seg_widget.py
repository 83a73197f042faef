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
    p = widget.params
    p.window.value = 3
    p.epochs.value = 2
    p.batch_size.value = 4
    p.patch_size.value = 64
    p.augment.value = "none"
    p.device.value = "cpu"
    p.output_folder.value = str(out_dir)
    return viewer, widget


def test_training_run_plots_epochs_and_offers_the_model_to_segment(make_napari_viewer, qtbot, wait_idle, c2c12_crop,
                                                                   tmp_path, errors):
    from napari_cellnet.widgets import SegmentWidget

    images, gt = c2c12_crop
    sparse = gt.copy()
    sparse[2] = 0  # frames 0, 1, 3 annotated
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, images, sparse, tmp_path / "model")
    assert widget.frames_note.value.startswith("Annotated frames: 0, 1, 3 (3)")
    widget.val_frames.value = "3"
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
    assert segment.params.model.value == str(result.model_path)
    assert "now selectable in Segment" in widget.status.value


def test_stop_keeps_the_best_model_and_continue_resumes(make_napari_viewer, qtbot, wait_idle, c2c12_crop, tmp_path):
    images, gt = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, images, gt, tmp_path / "m")
    widget.val_frames.value = "none"
    widget.params.epochs.value = 3
    widget.params.aug_rate.value = 5  # ~10 steps per epoch: Stop lands inside epoch 2
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
    widget.val_frames.value = "3, 12"
    assert not widget.train_button.enabled and "outside the movie" in widget.frames_note.value
    widget.val_frames.value = "auto"
    widget.params.output_folder.value = ""
    assert widget.train() is None
    assert any("output folder" in m for m in errors())
