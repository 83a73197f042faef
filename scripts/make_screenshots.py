"""Regenerate every screenshot of docs/widgets.md from real runs (one command).

    xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/make_screenshots.py

Each picture is a real napari window with the widget docked, after the widget ran its
real job on the bundled sample data: nothing is mocked. The tutorial steps follow what a
biologist does, with clicks replaced by the same widget calls the buttons make:

1. ``segment.png``: the C2C12 movie segmented with the bundled demo model.
2. ``train_segmentation.png``: three frames "annotated" (the sample's own labels of frames
   0, 4 and 8 stand in for painting), a short training run with its live curves.
3. ``segment_trained.png``: the movie segmented with the model just trained.
4. ``evaluate.png``: that segmentation against the sample's labels, per frame.
5. ``classify_annotate.png``: objects marked "round" / "elongated" by clicking (here: the
   sample's cells of frames 0-4, by their eccentricity, as a user would judge by eye).
6. ``train_classifier.png``: a classifier trained on those objects with 3-fold CV.
7. ``classify_objects.png``: every object of the movie classified, class-coloured.
8. ``evaluate_classes.png``: predicted vs annotated classes with the confusion matrix.
9. ``classify_gallery.png``: the HuSHeM gallery with the bundled demo classifier (if present).

Timings printed at the end were measured on the machine that ran the script.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
SIZE = (1500, 980)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--epochs", type=int, default=25, help="Segmentation training epochs of the tutorial.")
    ap.add_argument("--aug-rate", type=int, default=5, help="Segmentation training augmentation rate.")
    ap.add_argument("--cls-epochs", type=int, default=20, help="Classifier training epochs of the tutorial.")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # a throw-away napari settings file: no pop-up notifications over the canvas, and the
    # user's own settings are neither read nor changed
    import os

    os.environ["NAPARI_CONFIG"] = str(Path(tempfile.mkdtemp(prefix="cellnet-napari-")) / "settings.yaml")
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cellnet-cache-")  # widget parameters start at defaults
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "none"
    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")

    import napari
    import numpy as np
    import pandas as pd
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication
    from skimage.measure import regionprops

    from napari_cellnet import datasets
    from napari_cellnet.widgets import (
        DEMO_MODEL,
        ClassifyWidget,
        EvaluateWidget,
        SegmentWidget,
        TrainClassifierWidget,
        TrainSegmentationWidget,
        class_colormap,
    )

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="cellnet-shots-"))
    timings: dict[str, float] = {}

    def settle(widget=None, timeout: float = 1800.0) -> None:
        t0 = time.perf_counter()
        while widget is not None and widget.busy:
            # a real event loop for 50 ms at a time (no polling loop fighting the worker for the GIL)
            loop = QEventLoop()
            QTimer.singleShot(50, loop.quit)
            loop.exec_()
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("a widget job took too long")
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)

    def shot(viewer, name: str) -> None:
        settle()
        viewer.screenshot(str(out / name), canvas_only=False, flash=False)
        print(f"wrote {out / name}", flush=True)

    def run(widget, start, label: str) -> None:
        t0 = time.perf_counter()
        worker = start()
        if worker is None:
            raise RuntimeError(f"{label}: the widget refused to run: {widget.status.value}")
        settle(widget)
        timings[label] = time.perf_counter() - t0
        if widget.runner.last_error is not None:
            raise RuntimeError(f"{label} failed: {widget.runner.last_error}")

    images, gt = datasets.c2c12()
    from napari.utils.notifications import notification_manager

    # napari greets a PyQt5 window with a deprecation toast that would cover the canvas
    with notification_manager.notification_ready.blocker():
        viewer = napari.Viewer(title="napari-cellnet", show=True)
        viewer.window.resize(*SIZE)
        for _ in range(10):
            app.processEvents()
    image = viewer.add_image(images, name="C2C12", axis_labels=("t", "y", "x"))

    # 1. Segment with the bundled demo model ---------------------------------------------
    seg = SegmentWidget(viewer)
    dock = viewer.window.add_dock_widget(seg, name="Segment time-lapse", area="right")
    settle(seg)
    seg.image.value = image
    have_demo = True
    try:
        datasets.demo_model_path("segmentation")
        seg.model.value = DEMO_MODEL
    except FileNotFoundError:
        have_demo = False
        print("the bundled segmentation demo model is missing: skipping segment.png", flush=True)
    if have_demo:
        settle(seg)
        run(seg, seg.run, "segment (demo model)")
        viewer.dims.set_current_step(0, 5)
        shot(viewer, "segment.png")
        for name in ("C2C12 labels", "C2C12 probability", "C2C12 tracks"):
            if name in viewer.layers:
                viewer.layers.remove(name)
    viewer.window.remove_dock_widget(dock)

    # 2. Annotate three frames and train ----------------------------------------------------
    annotations = np.zeros_like(gt)
    for t in (0, 4, 8):
        annotations[t] = gt[t]
    ann = viewer.add_labels(annotations, name="annotations", opacity=0.6)
    train = TrainSegmentationWidget(viewer)
    dock = viewer.window.add_dock_widget(train, name="Train segmentation", area="right")
    settle(train)
    train.image.value = image
    train.label_layer.value = ann
    # the job's settings are one parameter object: change a few fields of what the form shows
    train.form.value = train.form.value.replace(preset="light", window=5, val_frames=[8], epochs=args.epochs,
                                                augment="temporal", aug_rate=args.aug_rate, device="cpu")
    train.output_folder.value = str(work / "my-model")
    run(train, train.train, f"train segmentation ({args.epochs} epochs x{args.aug_rate}, 2 training frames)")
    viewer.dims.set_current_step(0, 4)
    shot(viewer, "train_segmentation.png")
    viewer.window.remove_dock_widget(dock)

    # 3. Segment with the new model -----------------------------------------------------------
    seg = SegmentWidget(viewer)
    dock = viewer.window.add_dock_widget(seg, name="Segment time-lapse", area="right")
    settle(seg)
    seg.image.value = image
    # the model just trained is offered in the model list (a Segment widget open during training
    # selects it by itself; this one opened afterwards, so pick it as a user would)
    trained = str(train.result.model_path)
    assert trained in seg.model.choices, seg.model.choices
    seg.model.value = trained
    settle(seg)
    run(seg, seg.run, "segment (tutorial model)")
    ann.visible = False
    viewer.dims.set_current_step(0, 6)
    shot(viewer, "segment_trained.png")
    viewer.window.remove_dock_widget(dock)

    # 4. Evaluate against the sample's labels ---------------------------------------------------
    truth = viewer.add_labels(gt, name="ground truth", visible=False)
    ev = EvaluateWidget(viewer)
    dock = viewer.window.add_dock_widget(ev, name="Evaluate", area="right")
    ev.prediction.value = viewer.layers["C2C12 labels"]
    ev.ground_truth.value = truth
    ev.annotated_only.value = "all frames"
    run(ev, ev.run, "evaluate segmentation")
    shot(viewer, "evaluate.png")
    viewer.window.remove_dock_widget(dock)
    for name in ("C2C12 probability", "C2C12 tracks"):
        if name in viewer.layers:
            viewer.layers[name].visible = False

    # 5. Annotate classes by clicking objects -----------------------------------------------------
    cells = viewer.add_labels(gt.astype(np.int32), name="cells")
    viewer.layers["C2C12 labels"].visible = False
    cls = ClassifyWidget(viewer)
    dock = viewer.window.add_dock_widget(cls, name="Classify cells", area="right")
    settle(cls)
    cls.image.value = image
    cls.label_layer.value = cells
    cls.whole_track.value = False
    for t in range(5):
        for r in regionprops(gt[t]):
            cls.annotate_object(t, int(r.label), "elongated" if r.eccentricity > 0.85 else "round")
    cls.annotate_class.value = "round"
    with notification_manager.notification_ready.blocker():  # its "click objects" toast would cover the canvas
        cls.annotate.value = True
    cls.status.value = f"{cls.n_annotated.value} objects annotated on frames 0-4 (click to add more)."
    marks = cells.features
    preview = np.zeros_like(gt, dtype=np.uint8)
    for _, row in marks.iterrows():
        preview[int(row["frame"])][gt[int(row["frame"])] == int(row["label"])] = 1 + int(
            row["annotated_class"] == "elongated")
    shown = viewer.add_labels(preview, name="annotated classes", opacity=0.7)
    shown.colormap = class_colormap(["round", "elongated"])
    shown.features = pd.DataFrame({"index": [0, 1, 2], "class": ["", "round", "elongated"]})
    cells.visible = False
    viewer.dims.set_current_step(0, 2)
    shot(viewer, "classify_annotate.png")
    with notification_manager.notification_ready.blocker():
        cls.annotate.value = False
    viewer.layers.remove(shown)
    cells.visible = True
    viewer.window.remove_dock_widget(dock)

    # 6. Train the classifier -------------------------------------------------------------------
    tc = TrainClassifierWidget(viewer)
    dock = viewer.window.add_dock_widget(tc, name="Train classifier", area="right")
    settle(tc)
    tc.source.value = "annotated objects (Image + Labels)"
    tc.image.value = image
    tc.label_layer.value = cells
    tc.class_column.reset_choices()  # the class column the Classify widget just filled in
    tc.form.value = tc.form.value.replace(arch="small_cnn", size=48, crop_size=48, epochs=args.cls_epochs,
                                          batch_size=16, aug_rate=3, folds=3, device="cpu")
    tc.output_folder.value = str(work / "my-classifier")
    run(tc, tc.train, f"train classifier (3-fold CV + refit, {args.cls_epochs} epochs)")
    shot(viewer, "train_classifier.png")
    viewer.window.remove_dock_widget(dock)

    # 7. Classify every object of the movie -----------------------------------------------------------
    cls = ClassifyWidget(viewer)
    dock = viewer.window.add_dock_widget(cls, name="Classify cells", area="right")
    settle(cls)
    cls.image.value = image
    cls.label_layer.value = cells
    cls.form.controls["device"].value = "cpu"
    trained = str(tc.result.checkpoint)
    assert trained in cls.model.choices, cls.model.choices  # offered after training
    cls.model.value = trained
    run(cls, cls.run, "classify objects")
    cells.visible = False
    viewer.dims.set_current_step(0, 7)
    shot(viewer, "classify_objects.png")
    viewer.window.remove_dock_widget(dock)

    # 8. Evaluate classes ---------------------------------------------------------------------------
    ev = EvaluateWidget(viewer)
    dock = viewer.window.add_dock_widget(ev, name="Evaluate", area="right")
    ev.mode.value = "classes"
    ev.class_layer.value = cells
    ev.pred_column.value = "class"
    ev.true_column.value = "annotated_class"
    run(ev, ev.run, "evaluate classes")
    shot(viewer, "evaluate_classes.png")
    viewer.window.remove_dock_widget(dock)
    viewer.close()

    # 9. The HuSHeM gallery with the demo classifier -------------------------------------------------
    try:
        datasets.demo_model_path("classification")
    except FileNotFoundError:
        print("the bundled classification demo model is missing: skipping classify_gallery.png", flush=True)
    else:
        viewer = napari.Viewer(title="napari-cellnet", show=True)
        viewer.window.resize(*SIZE)
        viewer.open_sample("napari-cellnet", "hushem")
        viewer.layers["HuSHeM classes"].visible = False
        cls = ClassifyWidget(viewer)
        dock = viewer.window.add_dock_widget(cls, name="Classify cells", area="right")
        settle(cls)
        cls.mode.value = "image stack (one cell per frame)"
        cls.image.value = viewer.layers["HuSHeM sperm heads"]
        cls.model.value = DEMO_MODEL
        cls.form.controls["device"].value = "cpu"
        run(cls, cls.run, "classify HuSHeM gallery (216 images, demo model)")
        viewer.dims.set_current_step(0, 60)
        shot(viewer, "classify_gallery.png")
        viewer.close()

    print("\ntimings (this machine):")
    for k, v in timings.items():
        print(f"  {k}: {v:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
