"""The Train segmentation widget's input-scale field reaches the training parameters."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_scale_field_builds_params_and_keeps_the_engine_range(make_napari_viewer, qtbot, wait_idle, c2c12_crop,
                                                             tmp_path):
    from napari_cellnet.widgets import TrainSegmentationWidget

    images, labels = c2c12_crop
    viewer = make_napari_viewer()
    viewer.add_image(images, name="movie")
    viewer.add_labels(labels, name="annotations")
    widget = TrainSegmentationWidget(viewer)
    wait_idle(widget)
    scale = widget.form.controls["scale"]
    assert scale.value == 1.0 and widget.build_params().scale == 1.0
    widget.form.controls["window"].value = 3
    scale.value = 2.0
    assert widget.build_params().scale == 2.0
    with pytest.raises(ValueError, match="outside of the allowed range"):
        scale.value = 100.0  # the field itself keeps the engine's range
    widget.restore_defaults()
    assert scale.value == 1.0
