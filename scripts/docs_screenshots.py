"""Regenerate the screenshots in docs/images/ (run under Xvfb: `xvfb-run -a python scripts/docs_screenshots.py`).

Arguments choose which: readme, guide, measure (the default: these three), case_browser, fine_tune, scale,
find_ruler, small_lesion, convention; every
widget is clicked through by one of them. ``real`` does the same on real images (a PH2 case, the case
browser on ph2-adapt; data from ``NEVUS_SEG_DATA`` or ../shared/data) and writes to
``NEVUS_SEG_REAL_SHOTS`` (default /tmp/nevus-seg-real-shots), never into the repository.

Only synthetic images appear in them: real data-set images are never committed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# throw-away napari settings, so that hiding notifications does not change the user's own
os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp()) / "settings.yaml"))

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from napari_nevus_seg.io.synthetic import dataset_folder, synthetic_lesion_image

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
PLUGIN = "napari-nevus-seg"


def _viewer() -> napari.Viewer:
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "none"  # no toasts over the screenshots
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    return viewer


def _settle(viewer, n=20):
    for _ in range(n):
        QApplication.processEvents()


def _close_toasts(viewer):
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for w in viewer.window._qt_window.findChildren(NapariQtNotification) + QApplication.topLevelWidgets():
        if isinstance(w, NapariQtNotification):
            w.close()


def _save(viewer, name, canvas_only=False):
    viewer.reset_view()
    _settle(viewer)
    _close_toasts(viewer)
    _settle(viewer)
    shot = viewer.screenshot(canvas_only=canvas_only, flash=False)
    Image.fromarray(np.asarray(shot)[..., :3]).save(OUT / name, optimize=True)
    print("wrote", OUT / name, shot.shape)


def sample(segment: bool) -> None:
    viewer = _viewer()
    viewer.open_sample(PLUGIN, "synthetic_multi")
    if segment:
        try:
            _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
            _settle(viewer)
            widget.run_button.click()   # as a user does
            _wait(widget, 300)
            viewer.layers[f"{viewer.layers[0].name} ground truth"].visible = False
            viewer.layers.selection.active = viewer.layers[-1]
        except Exception as exc:  # noqa: BLE001 - the widget may not exist yet
            print("segment widget not used:", exc, file=sys.stderr)
    _save(viewer, "readme_sample.png")
    viewer.close()


def guide() -> None:
    tmp = Path(tempfile.mkdtemp())
    # an image file
    img = tmp / "lesion.jpg"
    Image.fromarray(synthetic_lesion_image(seed=11).image).save(img, quality=95)
    viewer = _viewer()
    viewer.open(str(img), plugin=PLUGIN)
    _save(viewer, "guide_open_image.png")
    viewer.close()
    # a PH2-style case folder (synthetic, in the PH2 layout)
    dataset_folder(tmp / "ph2", "ph2", n=3, seed=12, shape=(384, 512))
    viewer = _viewer()
    viewer.open(str(tmp / "ph2" / "PH2 Dataset images" / "IMD002"), plugin=PLUGIN)
    _save(viewer, "guide_open_ph2_case.png")
    viewer.close()
    # the sample
    viewer = _viewer()
    viewer.open_sample(PLUGIN, "synthetic_lesion")
    _save(viewer, "guide_sample.png")
    viewer.close()


def measure_widget() -> None:
    """The "Measure lesions" dock after a click on Measure, lesion 2 selected, on a 1000 px tall window; and
    the same with napari's full table opened below (docs/images/measure_widget.png, measure_full_table.png)."""
    case = synthetic_lesion_image(seed=3, n_lesions=2, pixel_size_mm=0.02)
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 1000)
    scale, units = (case.pixel_size_mm,) * 2, ("mm", "mm")
    viewer.add_image(case.image, name="lesion image", rgb=True, scale=scale, units=units)
    labels = viewer.add_labels(case.labels, name="lesions", scale=scale, units=units)
    labels.contour = 2
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure lesions")
    _settle(viewer)
    widget.run_button.click()   # as a user does
    _wait(widget, 120)
    labels.selected_label = 2
    _settle(viewer, 30)
    _save(viewer, "measure_widget.png")
    widget.table_button.click()
    _settle(viewer, 30)
    _save(viewer, "measure_full_table.png")
    viewer.close()


def small_lesion() -> None:
    """The "Segment lesions" dock after a click on Segment, on a wide view with one small lesion (the zoomed
    second look on, as by default), the view zoomed onto the lesion (docs/images/segment_small_lesion.png)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from small_lesion import small_lesion_in_large_frame

    image, _ = small_lesion_in_large_frame(seed=3)
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 900)
    viewer.add_image(image, name="wide view", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
    _settle(viewer)
    widget.run_button.click()   # as a user does
    _wait(widget, 120)
    viewer.layers["wide view lesions"].contour = 3
    viewer.camera.center = (576, 768)
    viewer.camera.zoom = 2.5
    _settle(viewer, 30)
    _close_toasts(viewer)
    _settle(viewer)
    viewer.window._qt_window.grab().save(str(OUT / "segment_small_lesion.png"))
    print("wrote", OUT / "segment_small_lesion.png")
    viewer.close()


def convention() -> None:
    """The "Segment lesions" dock with a model of two outline conventions chosen (a test model built from the
    default one, saved to a temporary library), "loose" picked and segmented (docs/images/segment_convention.png)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conditioned import conditioned_default

    from napari_nevus_seg import synthetic_lesion_image
    from napari_nevus_seg.model.library import ModelLibrary

    os.environ["NEVUS_SEG_MODEL_DIR"] = tempfile.mkdtemp(prefix="nevus-seg-shots-")
    ModelLibrary().save(conditioned_default(), "two conventions (example)")
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 860)
    viewer.add_image(synthetic_lesion_image(seed=4, shape=(384, 512)).image, name="skin", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
    widget.model_combo.setCurrentIndex(widget.model_combo.findText("two conventions (example)"))
    widget.convention.combo.setCurrentIndex(widget.convention.combo.findText("loose"))
    _settle(viewer)
    widget.run_button.click()   # as a user does
    _wait(widget, 120)
    viewer.layers["skin lesions"].contour = 2
    _grab(viewer, "segment_convention.png")
    viewer.close()


def _wait(widget, limit_s=600):
    import time

    t0 = time.time()
    while widget.task.running and time.time() - t0 < limit_s:
        _settle(None, 5)
        time.sleep(0.1)
    _settle(None, 30)


def _grab(viewer, name, out=None):
    """The whole window, docks included (``viewer.screenshot`` leaves docks out in some napari versions)."""
    out = OUT if out is None else out
    viewer.reset_view()
    _settle(viewer)
    _close_toasts(viewer)
    _settle(viewer)
    viewer.window._qt_window.grab().save(str(out / name))
    print("wrote", out / name)


def case_browser() -> None:
    """The case browser after three cases were segmented (default model), one corrected and saved, and the
    folder ranked by confidence."""
    tmp = Path(tempfile.mkdtemp())
    root = tmp / "PH2Dataset"
    dataset_folder(root, "ph2", n=3, seed=21, shape=(384, 512))
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 900)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Case browser")
    w.open_folder(root)
    for i in range(3):
        if i:
            w.next_button.click()
        w.segment_button.click()
        _wait(w)
    w.prev_button.click()                      # back to case 2: its figures come back
    w.segment_button.click()                   # and its outline, segmented again
    _wait(w)
    w.labels_layer.paint((167, 234), 1)        # a correction with the brush: a bump on the outline
    w.save_button.click()
    _settle(viewer, 30)
    w.ranking_section.toggle.click()           # cases to correct first: the folder ranked by confidence
    w.ranking.rank_button.click()
    _wait(w)
    viewer.layers.selection.active = w.labels_layer
    _grab(viewer, "case_browser.png")
    viewer.close()


def fine_tune_widget() -> None:
    """The fine-tuning dock in a 1000 px tall window after a run with its defaults on 10 corrected outlines drawn
    a little outside the lesions: the figures and the before/after picture."""
    from napari_nevus_seg._napari._layers import add_or_update_labels

    tmp = Path(tempfile.mkdtemp())
    os.environ["NEVUS_SEG_MODEL_DIR"] = str(tmp / "models")
    os.environ["NEVUS_SEG_TRAINING_DIR"] = str(tmp / "training")
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 1000)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune on corrections")
    from scipy import ndimage as ndi

    for i in range(10):
        sc = synthetic_lesion_image(seed=40 + i, shape=(192, 256), look="bluish")
        image = viewer.add_image(sc.image, name=f"clinic {i + 1}", rgb=True)
        # this clinic outlines a little outside the pigment (as ISIC's annotators do): a convention to learn
        looser = ndi.binary_dilation(sc.mask, iterations=6).astype(np.int32)
        add_or_update_labels(viewer, f"clinic {i + 1} lesions", looser, like=image)   # as a result is drawn
        w.image_combo.select(f"clinic {i + 1}")
        w.labels_combo.select(f"clinic {i + 1} lesions")
        w.training.add_button.click()
    w.device_combo.setCurrentText("cpu")
    w.run_button.click()
    _wait(w, 900)
    _grab(viewer, "fine_tune_widget.png")
    viewer.close()


def scale_widget() -> None:
    """The "Set scale from a ruler" dock after a line along 5 mm of a ruler drawn into a synthetic image."""
    case = synthetic_lesion_image(seed=8, shape=(384, 512))
    img = case.image.copy()
    img[330:334, 60:312] = 20                      # a ruler: a bar with a tick every 1 mm (50 px at 0.02 mm)
    for x in range(60, 311, 50):
        img[310:334, x:x + 3] = 20
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 800)
    viewer.add_image(img, name="lesion with ruler", rgb=True)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Set scale from a ruler")
    w.draw_button.click()
    viewer.layers["lesion with ruler ruler"].add_lines(np.array([[320.0, 61.0], [320.0, 311.0]]))
    w.length.setValue(5.0)
    w.set_button.click()
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "mm"
    _settle(viewer, 30)
    _grab(viewer, "scale_widget.png")
    viewer.close()


def find_ruler_shot() -> None:
    """The "Set scale from a ruler" dock after *Find the ruler* on the ruler sample: the line it drew
    over the ticks and its message, before *Set scale*."""
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample(PLUGIN, "synthetic_ruler")
    viewer.layers[-1].visible = False              # the ground truth: the ruler is the subject here
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Set scale from a ruler")
    w.find_button.click()
    _wait(w)
    _grab(viewer, "scale_find_ruler.png")
    viewer.close()


def real_data(data: Path, out: Path) -> None:
    """Every widget on real images: a PH2 case opened with the plugin, segmented, measured; the case
    browser through three cases of ph2-adapt. The screenshots go to ``out``, outside the repository:
    real data-set images are never committed."""
    repo = Path(__file__).resolve().parents[1]
    if out.resolve().is_relative_to(repo):
        raise SystemExit(f"{out} is inside the repository: real images must not be committed")
    out.mkdir(parents=True, exist_ok=True)
    cases = sorted((data / "ph2-adapt" / "PH2 Dataset images").glob("IMD*"))
    if not cases:
        raise SystemExit(f"no PH2 cases under {data / 'ph2-adapt'}")
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 1000)
    viewer.open(str(cases[0]), plugin=PLUGIN)
    _, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
    seg.run_button.click()
    _wait(seg)
    _grab(viewer, "real_1_segment.png", out)
    _, meas = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure lesions")
    meas.run_button.click()
    _wait(meas)
    _grab(viewer, "real_2_measure.png", out)
    viewer.close()
    viewer = _viewer()
    viewer.window._qt_window.resize(1280, 1000)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Case browser")
    w.open_folder(data / "ph2-adapt")
    for i in range(3):
        if i:
            w.next_button.click()
        w.segment_button.click()
        _wait(w)
        _grab(viewer, f"real_3_case_browser_{i + 1}.png", out)
    viewer.close()


if __name__ == "__main__":
    if "real" in sys.argv[1:]:   # real images: to a folder outside the repository, never into docs/
        data = Path(os.environ.get("NEVUS_SEG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
        real_data(data, Path(os.environ.get("NEVUS_SEG_REAL_SHOTS", "/tmp/nevus-seg-real-shots")))
        sys.exit(0)
    OUT.mkdir(parents=True, exist_ok=True)
    what = sys.argv[1:] or ["readme", "guide", "measure"]
    if "readme" in what:
        sample(segment=True)
    if "guide" in what:
        guide()
    if "measure" in what:
        measure_widget()
    if "case_browser" in what:
        case_browser()
    if "scale" in what:
        scale_widget()
    if "find_ruler" in what:
        find_ruler_shot()
    if "fine_tune" in what:
        fine_tune_widget()
    if "small_lesion" in what:
        small_lesion()
    if "convention" in what:
        convention()
