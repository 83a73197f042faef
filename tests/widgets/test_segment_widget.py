"""The Segment widget in a real viewer: real job on a real crop, geometry, Stop, errors, live re-threshold."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellnet.core.jobs import Progress, run_job

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, qtbot, wait_idle, checkpoint=None):
    from napari_cellnet.widgets import SegmentWidget
    from napari_cellnet.widgets import _common as common

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    wait_idle(widget)
    if checkpoint is not None:
        widget.model.value = common.FILE
        widget.checkpoint.value = str(checkpoint)
        wait_idle(widget)
    return viewer, widget


def _set(widget, **values):

    widget.form.set_values(values)


def _run(widget, qtbot, wait_idle):
    worker = widget.run()
    assert worker is not None, widget.status.value
    wait_idle(widget)
    return widget.result


def test_segment_real_crop_outputs_layers_with_input_geometry(make_napari_viewer, qtbot, wait_idle, seg_checkpoint,
                                                             c2c12_crop, errors):
    images, _ = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    layer = viewer.add_image(images, name="movie", scale=(2.0, 0.5, 0.25), translate=(0, 10, -4),
                             axis_labels=("t", "y", "x"))
    widget.image.value = layer
    assert widget.axes.value == "TYX" and widget.run_button.enabled
    assert widget.model_info["window"] == 3  # read from the checkpoint in a worker
    # the model's own threshold and min size are what the empty fields stand for, and they are shown
    assert widget.form.value.min_size is None and widget.form.value.threshold is None
    assert widget.form.controls["min_size"].native.placeholderText() == "10 (the model's)"
    result = _run(widget, qtbot, wait_idle)
    assert errors() == []

    labels = viewer.layers["movie labels"]
    prob = viewer.layers["movie probability"]
    tracks = viewer.layers["movie tracks"]
    assert type(labels).__name__ == "Labels" and labels.data.shape == (4, 96, 96) and labels.data.dtype == np.int32
    assert prob.data.shape == (4, 96, 96) and prob.data.dtype == np.float32
    for out in (labels, prob, tracks):
        assert tuple(out.scale) == (2.0, 0.5, 0.25)
        assert tuple(out.translate) == (0.0, 10.0, -4.0)
    assert tuple(labels.axis_labels) == ("t", "y", "x")
    meta = labels.metadata["napari_cellnet"]
    assert meta["output_of"] == "segment/labels" and meta["source_layer"] == "movie"
    assert meta["checkpoint"] == str(seg_checkpoint) and meta["device"] == "cpu"
    assert meta["parameters"]["window"] == 3 and meta["parameters"]["threshold"] == 0.5
    assert meta["parameters"]["min_size"] == 10
    assert meta["package_version"]
    assert {"frame", "label", "area", "centroid_y", "centroid_x"} <= set(labels.features.columns)
    assert len(labels.features) == sum(len(np.unique(f)) - 1 for f in labels.data)
    assert result.frames_done == [0, 1, 2, 3]
    # tracks are the labels' centroids: one row per object per frame
    assert len(tracks.data) == len(labels.features)

    # the GUI path gives exactly what the engine gives without a GUI (same job, same parameters)
    from napari_cellnet.segmentation.inference import segment

    direct = run_job(segment(images, str(seg_checkpoint), axes="TYX", device="cpu", tile=1024, threshold=0.5,
                             min_size=10))
    np.testing.assert_array_equal(labels.data, direct.labels)
    np.testing.assert_allclose(prob.data, direct.probabilities, atol=1e-6)


def test_rerun_updates_the_same_layers(make_napari_viewer, qtbot, wait_idle, seg_checkpoint, c2c12_crop):
    images, _ = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(images, name="movie")
    _run(widget, qtbot, wait_idle)
    first = viewer.layers["movie labels"]
    n_layers = len(viewer.layers)
    _set(widget, threshold=0.3)
    wait_idle(widget)  # the live re-threshold may run first
    _run(widget, qtbot, wait_idle)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["movie labels"] is first
    assert first.metadata["napari_cellnet"]["parameters"]["threshold"] == 0.3


def test_rethreshold_relabels_without_rerunning_the_network(make_napari_viewer, qtbot, wait_idle, seg_checkpoint,
                                                            c2c12_crop):
    from napari_cellnet.segmentation.postprocessing import probabilities_to_labels
    from napari_cellnet.segmentation.tracking import match_labels_through_time

    images, _ = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(images, name="movie")
    result = _run(widget, qtbot, wait_idle)
    _set(widget, min_size=5, threshold=0.35)
    wait_idle(widget)
    params = viewer.layers["movie labels"].metadata["napari_cellnet"]["parameters"]
    assert params["relabelled_from_probabilities"] and params["threshold"] == 0.35 and params["min_size"] == 5
    assert widget.result is result  # the network did not run again
    expected = match_labels_through_time(np.stack([
        probabilities_to_labels(result.probabilities[t], threshold=0.35, min_size=5) for t in range(4)]))
    np.testing.assert_array_equal(viewer.layers["movie labels"].data, expected)


def test_invalid_axes_tint_the_field_and_disable_run(make_napari_viewer, qtbot, wait_idle, c2c12_crop):
    images, _ = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle)
    widget.image.value = viewer.add_image(images, name="movie")
    assert widget.run_button.enabled
    widget.axes.value = "TYXC"
    assert not widget.run_button.enabled
    assert "4 letters" in widget.axes_note.value and "3 dimensions" in widget.axes_note.value
    assert "background-color" in widget.axes.native.styleSheet()
    widget.axes.value = "TQX"
    assert not widget.run_button.enabled and "unknown letters" in widget.axes_note.value
    widget.axes.value = "tyx"
    assert widget.run_button.enabled and widget.axes.native.styleSheet() == ""


def test_no_image_layer_is_explained(make_napari_viewer, qtbot, wait_idle, errors):
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle)
    assert widget.image.value is None and not widget.run_button.enabled
    assert widget.run() is None
    assert any("Image layer" in m for m in errors())


def test_stop_keeps_the_frames_already_done(make_napari_viewer, qtbot, wait_idle, seg_checkpoint):
    from napari_cellnet import datasets

    images = datasets.c2c12()[0]
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(images, name="movie")
    worker = widget.run()

    def stop_after_two_frames(event):
        if isinstance(event, Progress) and event.parent is None and event.stage == "frame" and event.index >= 2:
            widget.runner.stop()

    worker.yielded.connect(stop_after_two_frames)
    wait_idle(widget)
    result = widget.result
    assert result.stopped
    k = len(result.frames_done)
    assert 2 <= k < 10 and result.frames_done == list(range(k))
    labels = viewer.layers["movie labels"].data
    assert labels.shape == (10, 234, 234)
    assert not labels[k:].any()  # frames not reached are empty ...
    assert all(labels[t].any() or result.probabilities[t].max() <= 0.5 for t in range(k))  # ... done ones are kept
    assert "Stopped" in widget.status.value and f"{k} of 10" in widget.status.value
    assert widget.run_button.enabled and not widget.stop_button.enabled and widget.resume_button.enabled

    # Resume finishes the movie with the IDs one uninterrupted run gives
    widget.resume()
    wait_idle(widget)
    assert not widget.result.stopped and widget.result.frames_done == list(range(10))
    assert not widget.resume_button.enabled
    from napari_cellnet.core.jobs import run_job

    args = {k: v for k, v in widget._args.items() if k != "resume"}
    uninterrupted = run_job(widget.make_job(args))
    np.testing.assert_array_equal(viewer.layers["movie labels"].data, uninterrupted.labels)


def test_unloadable_model_notifies_and_leaves_viewer_usable(make_napari_viewer, qtbot, wait_idle, seg_checkpoint,
                                                           c2c12_crop, tmp_path, errors):
    from napari_cellnet.widgets import _common as common

    images, _ = c2c12_crop
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, bad)
    assert "Cannot use this model" in widget.model_note.value
    widget.image.value = viewer.add_image(images, name="movie")
    _run(widget, qtbot, wait_idle)
    assert any("not a loadable napari-cellnet checkpoint" in m for m in errors())
    assert "movie labels" not in viewer.layers and widget.run_button.enabled
    assert widget.status.value.startswith("Failed:")
    # the same widget then works with a good model
    widget.model.value = common.FILE
    widget.checkpoint.value = str(seg_checkpoint)
    wait_idle(widget)
    _run(widget, qtbot, wait_idle)
    assert viewer.layers["movie labels"].data.shape == (4, 96, 96)


def test_rgb_movie_with_grayscale_model_is_refused_clearly(make_napari_viewer, qtbot, wait_idle, seg_checkpoint,
                                                          c2c12_crop, errors):
    images, _ = c2c12_crop
    rgb = np.repeat(images[..., None], 3, axis=-1)
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(rgb, name="rgb movie", rgb=True)
    assert widget.axes.value == "TYXC"
    _run(widget, qtbot, wait_idle)
    assert any("3 channel(s)" in m and "RGB" in m for m in errors())
    assert "rgb movie labels" not in viewer.layers


def test_two_frames_window_three_skip_is_explained(make_napari_viewer, qtbot, wait_idle, seg_checkpoint,
                                                   c2c12_crop, errors):
    images, _ = c2c12_crop
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(images[:2], name="short")
    _set(widget, edge="skip")
    _run(widget, qtbot, wait_idle)
    assert any("T=2" in m and "'skip'" in m and "reflect" in m for m in errors())


def test_settings_start_from_segment_params_persist_and_round_trip_through_params_json(make_napari_viewer, qtbot,
                                                                             wait_idle, tmp_path):
    from napari_cellnet.segmentation.params import SegmentParams
    from napari_cellnet.widgets import SegmentWidget

    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle)
    # a first widget shows the dataclass defaults (what the CLI and segment() use), the model's values left to it
    assert widget.form.value == SegmentParams()
    assert set(widget.form.controls) == {i.name for i in SegmentParams.infos()}
    from napari_cellnet.datasets import demo_model_path
    from napari_cellnet.models.checkpoint import load_checkpoint

    meta = load_checkpoint(demo_model_path("segmentation")).meta
    assert widget.form.controls["threshold"].native.placeholderText() == f"{meta['threshold']:g} (the model's)"
    _set(widget, threshold=0.7, tile=512, channel=0, split="distance", precision="fp32", drift=False)
    chosen = SegmentParams(threshold=0.7, tile=512, channel=0, split="distance", precision="fp32", drift=False)
    assert widget.form.value == chosen
    saved = widget.form.save(tmp_path / "segment_params.json")
    again = SegmentWidget(viewer)
    viewer.window.add_dock_widget(again)
    wait_idle(again)
    assert again.form.value == chosen  # the last settings are remembered ...
    again.restore_defaults()
    assert again.form.value == SegmentParams()
    again.form.load(saved)  # ... and travel as params.json
    assert again.form.value == chosen
    # the widget's params.json is the CLI's --params: the same object, flags typed after it override it
    from napari_cellnet.cli.app import build_parser
    from napari_cellnet.cli.segment import segment_params

    argv = ["segment", "movie.tif", "-o", str(tmp_path / "out"), "--params", str(saved)]
    assert segment_params(build_parser().parse_args(argv)) == chosen
    assert segment_params(build_parser().parse_args([*argv, "--tile", "0"])) == chosen.replace(tile=None)
    again.restore_defaults()
    assert again.form.value == SegmentParams()
    _set(again, threshold=1.5)
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        again.form.value  # noqa: B018


def test_rgb_movie_segments_one_channel(make_napari_viewer, qtbot, wait_idle, seg_checkpoint, c2c12_crop, errors):
    images, _ = c2c12_crop
    rgb = np.stack([images, np.zeros_like(images), images // 2], axis=-1)  # real movie in red, other channels differ
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(rgb, name="rgb movie", rgb=True)
    assert widget.axes.value == "TYXC"
    assert "3 channels" in widget.axes_note.value and "channel" in widget.axes_note.value
    _set(widget, channel=0)
    assert widget.axes_note.value == ""
    _run(widget, qtbot, wait_idle)
    assert errors() == []
    labels = viewer.layers["rgb movie labels"].data
    assert labels.shape == (4, 96, 96)
    assert viewer.layers["rgb movie labels"].metadata["napari_cellnet"]["parameters"]["channel"] == 0
    from napari_cellnet.segmentation.inference import segment
    from napari_cellnet.segmentation.params import SegmentParams

    gray = run_job(segment(images, str(seg_checkpoint), SegmentParams(device="cpu"), axes="TYX"))
    np.testing.assert_array_equal(labels, gray.labels)  # channel 0 of the RGB movie is the gray movie


def test_closing_the_viewer_during_a_run_does_not_crash(make_napari_viewer, qtbot, wait_idle, seg_checkpoint):
    from napari_cellnet import datasets

    images = datasets.c2c12()[0]
    viewer, widget = _widget(make_napari_viewer, qtbot, wait_idle, seg_checkpoint)
    widget.image.value = viewer.add_image(images, name="movie")
    worker = widget.run()
    # the job is really under way: its first event has reached the GUI thread (waiting for
    # worker.yielded here could miss events emitted before the wait connects)
    qtbot.waitUntil(lambda: widget.runner._has_yielded, timeout=30000)
    assert widget.runner.running
    with qtbot.waitSignal(worker.finished, timeout=60000):
        viewer.close()
    assert widget.runner.worker is None or widget._closed


def test_a_widget_opened_after_training_starts_on_the_new_model(make_napari_viewer, qtbot, wait_idle,
                                                                  seg_checkpoint):
    from napari_cellnet.widgets import SegmentWidget
    from napari_cellnet.widgets import _common as common

    viewer = make_napari_viewer()
    first = SegmentWidget(viewer)
    assert first.model.value == common.DEMO  # nothing trained yet
    common.MODELS.add("segmentation", seg_checkpoint)  # what a finished training announces
    assert first.model.value == str(seg_checkpoint)  # an open widget switches to it
    later = SegmentWidget(viewer)
    assert later.model.value == str(seg_checkpoint)  # and one opened afterwards starts on it
    assert first._model_path() == later._model_path() == seg_checkpoint
