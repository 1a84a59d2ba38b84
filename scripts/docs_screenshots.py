"""Regenerate the screenshots in docs/images/ (run under Xvfb: `xvfb-run -a python scripts/docs_screenshots.py`).

Only synthetic images appear in them: real data-set images are never committed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# throw-away napari settings, so that hiding notifications does not change the user's own
os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp()) / "settings.yaml"))

import napari  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_nevus_seg.io.synthetic import dataset_folder, synthetic_lesion_image  # noqa: E402

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
            dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
            _settle(viewer)
            widget.run_button.click()   # as a user does
            import time

            t0 = time.time()
            while widget.task.running and time.time() - t0 < 300:
                _settle(viewer, 5)
                time.sleep(0.1)
            _settle(viewer, 50)
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
    import time

    t0 = time.time()
    while widget.task.running and time.time() - t0 < 120:
        _settle(viewer, 5)
        time.sleep(0.05)
    labels.selected_label = 2
    _settle(viewer, 30)
    _save(viewer, "measure_widget.png")
    widget.table_button.click()
    _settle(viewer, 30)
    _save(viewer, "measure_full_table.png")
    viewer.close()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    what = sys.argv[1:] or ["readme", "guide", "measure"]
    if "readme" in what:
        sample(segment=True)
    if "guide" in what:
        guide()
    if "measure" in what:
        measure_widget()
