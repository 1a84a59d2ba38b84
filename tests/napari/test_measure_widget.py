"""The "Measure lesions" widget: features aligned with labels, units, target layer, cancel, refresh, table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import Qt

from napari_nevus_seg import measure
from napari_nevus_seg._napari._measure_widget import NO_IMAGE, MeasureWidget, viewer_camera

pytestmark = pytest.mark.gui
TIMEOUT = 60_000


def scene(n_extra: int = 0):
    """Two lesions (labels 2 and 5) on skin, plus ``n_extra`` small square lesions (labels 10, 11, ...)."""
    h, w = 200, 300
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros((h, w), np.int32)
    labels[(yy - 60) ** 2 + (xx - 70) ** 2 <= 35 ** 2] = 2
    labels[(yy - 130) ** 2 + (xx - 210) ** 2 <= 45 ** 2] = 5
    for i in range(n_extra):
        r, c = 5 + 8 * (i // 36), 2 + 8 * (i % 36)
        labels[r:r + 5, c:c + 5] = 10 + i
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (214, 166, 142)
    img[labels == 2] = (153, 102, 0)
    img[labels == 5] = (51, 0, 0)
    return labels, img


def add_layers(viewer, labels, img, scale=(0.02, 0.02), units=("mm", "mm")):
    image = viewer.add_image(img, name="skin", rgb=True, scale=scale, units=units)
    lab = viewer.add_labels(labels, name="lesions", scale=scale, units=units)
    return image, lab


def run_and_wait(qtbot, widget, **kw):
    """Measure: with ``kw``, through run(); without, by clicking the Measure button as a user does."""
    if kw:
        assert widget.run(**kw) is not None
    else:
        qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
        assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)


def test_clicking_measure_measures(make_napari_viewer, qtbot):
    # the button's clicked(bool) went into run(labels=False): AttributeError 'bool' object has no attribute 'scale'
    viewer = make_napari_viewer()
    labels, img = scene()
    _, layer = add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    assert w.worker is not None and not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert w.table is not None and w.table["label"].tolist() == [2, 5]
    assert len(layer.features) == 6 and w.run_button.isEnabled() and not w.cancel_button.isEnabled()


def test_features_match_label_values_and_units(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    image, layer = add_layers(viewer, labels, img, scale=(0.02, 0.03))
    w = MeasureWidget(viewer)
    assert w.labels_combo.currentText() == "lesions" and w.image_combo.currentText() == "skin"
    assert "20 × 30 µm" in w.pixel_label.text()
    run_and_wait(qtbot, w)
    expected = measure(labels, img, (0.02, 0.03))
    pd.testing.assert_frame_equal(w.table, expected)
    f = layer.features
    assert len(f) == 6 and "index" not in f.columns  # one row per label value 0..5: the position is the value
    assert f.loc[2, "area_mm2"] == pytest.approx(expected.loc[0, "area_mm2"])
    assert f.loc[5, "max_feret_mm"] == pytest.approx(expected.loc[1, "max_feret_mm"])
    assert f.loc[[0, 1, 3, 4], "area_mm2"].isna().all()
    assert layer.metadata["nevus_seg_measurements"] is w.table
    assert "2 lesion(s)" in w.status.text() and "mm" in w.status.text()
    # napari's status bar finds the features of the label under the cursor at the row of its value
    from napari.utils.status_messages import format_feature_value

    props = layer._get_properties((130 * 0.02, 210 * 0.03), world=True)   # the cursor on lesion 5
    assert layer._label_index[5] == 5
    assert f"max_feret_mm: {format_feature_value(expected.loc[1, 'max_feret_mm'])}" in props
    assert image in viewer.layers


def test_pixel_size_unknown_or_set_in_the_field(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    viewer.add_image(img, name="skin", rgb=True)
    layer = viewer.add_labels(labels, name="lesions")
    w = MeasureWidget(viewer)
    assert "unknown" in w.pixel_label.text()
    run_and_wait(qtbot, w)
    assert "perimeter_px" in w.table and "area_mm2" not in w.table
    w.set_pixel.setChecked(True)
    w.px_row.setValue(0.01)
    w.px_col.setValue(0.02)
    run_and_wait(qtbot, w)
    pd.testing.assert_frame_equal(w.table, measure(labels, img, (0.01, 0.02)))
    assert "area_mm2" in layer.features


def test_the_pixel_size_label_follows_what_is_typed(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    viewer.add_image(img, name="skin", rgb=True, scale=(0.02, 0.02), units=("mm", "mm"))
    viewer.add_labels(labels, name="lesions", scale=(0.02, 0.02), units=("mm", "mm"))
    w = MeasureWidget(viewer)
    assert "20 × 20 µm (from the layer's scale and units)" in w.pixel_label.text()
    w.set_pixel.click()                                      # as a person ticks the box
    assert "20 × 20 µm (set here)" in w.pixel_label.text()
    w.px_row.selectAll()
    qtbot.keyClicks(w.px_row, "0.0125")                      # typed, as a person does
    assert "12.5 × 20 µm (set here)" in w.pixel_label.text()   # it stayed at 20 × 20 before


def test_result_goes_to_the_measured_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene(n_extra=40)
    add_layers(viewer, labels, img)
    other = viewer.add_labels(np.zeros_like(labels), name="other")
    w = MeasureWidget(viewer)
    w.labels_combo.select("lesions")
    assert w.run() is not None
    viewer.layers.selection.active = other  # the user moves on while it runs
    w.labels_combo.select("other")
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert len(viewer.layers["lesions"].features) == 50  # label values 0..49
    assert len(other.features) == 0
    assert w.labels_layer is viewer.layers["lesions"]


def test_cancel_leaves_features_unchanged(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene(n_extra=300)
    _, layer = add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    assert w.worker is not None
    qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert "Cancelled" in w.status.text()
    assert len(layer.features) == 0 and w.table is None
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()


def measured_scene(make_napari_viewer, qtbot):
    """A viewer with the scene's image and labels, measured once: (layer, widget)."""
    viewer = make_napari_viewer()
    labels, img = scene()
    _, layer = add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    return layer, w


def test_remeasured_after_edits(make_napari_viewer, qtbot):
    layer, w = measured_scene(make_napari_viewer, qtbot)
    area_before = w.table.set_index("label").loc[2, "area_px2"]
    # paint with the brush: a paint event (one undoable stroke)
    layer.selected_label = 2
    layer.brush_size = 10
    layer.paint((60, 110), 2)  # grows lesion 2 to the right
    qtbot.waitUntil(lambda: w.table.set_index("label").loc[2, "area_px2"] > area_before, timeout=TIMEOUT)
    # undo: no paint event, but the refreshed layer is measured again
    layer.undo()
    qtbot.waitUntil(lambda: w.table.set_index("label").loc[2, "area_px2"] == area_before, timeout=TIMEOUT)
    # a new layer.data (e.g. from a script): a data event; a new lesion 7 appears in the table
    new = np.array(layer.data)
    new[170:190, 20:60] = 7
    layer.data = new
    qtbot.waitUntil(lambda: 7 in w.table["label"].tolist(), timeout=TIMEOUT)
    assert len(layer.features) == 8
    # the pixel size set in the widget meanwhile is the one the next re-measurement uses
    w.set_pixel.setChecked(True)
    w.px_row.setValue(0.05)
    w.px_col.setValue(0.05)
    layer.paint((20, 250), 7)
    qtbot.waitUntil(lambda: w.table.attrs["pixel_size_mm"] == (0.05, 0.05), timeout=TIMEOUT)


def test_the_users_own_feature_columns_survive_remeasuring(make_napari_viewer, qtbot):
    layer, w = measured_scene(make_napari_viewer, qtbot)
    f = layer.features.copy()
    f["diagnosis"] = [pd.NA, pd.NA, "naevus", pd.NA, pd.NA, "melanoma?"]   # rows = label values 0..5
    layer.features = f
    new = np.array(layer.data)
    new[170:190, 20:60] = 7                                    # an edit adds lesion 7
    layer.data = new
    qtbot.waitUntil(lambda: 7 in w.table["label"].tolist(), timeout=TIMEOUT)
    g = layer.features
    assert g.loc[2, "diagnosis"] == "naevus" and g.loc[5, "diagnosis"] == "melanoma?"
    assert pd.isna(g.loc[7, "diagnosis"]) and g.loc[7, "area_mm2"] > 0


def test_unchanged_refresh_is_not_remeasured(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    _, layer = add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    table = w.table
    layer.refresh()  # a set_data event without a change
    qtbot.wait(1200)
    assert w.worker is None and w.table is table


def test_lesion_chooser_selects_and_centres(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    _, layer = add_layers(viewer, labels, img, scale=(0.5, 0.5))
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    assert [w.lesion_combo.itemData(i) for i in range(w.lesion_combo.count())] == [2, 5]
    w.lesion_combo.setCurrentIndex(1)
    w.lesion_combo.activated.emit(1)
    assert layer.selected_label == 5
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], (130 * 0.5, 210 * 0.5), atol=0.5)
    # a label selected elsewhere (napari's features table, the label spin box) is followed too
    layer.selected_label = 2
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], (60 * 0.5, 70 * 0.5), atol=0.5)
    assert w.lesion_combo.currentData() == 2


def test_napari_features_table_rows_select_lesions(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    _, layer = add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    table_widget = w.show_table()
    assert table_widget is not None
    model = table_widget.table.model()
    assert model.rowCount() == 2  # the lesions 2 and 5 only: no background row, no unused label values
    assert [model.index(r, 0).data() for r in range(2)] == [2, 5]   # "Index": the label value
    table_widget.table.selectRow(1)
    assert layer.selected_label == 5
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], (130 * 0.02, 210 * 0.02), atol=0.02)


def test_export_csv(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    labels, img = scene()
    add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    out = tmp_path / "lesions.csv"
    w.export_csv(out)
    back = pd.read_csv(out)
    assert back["label"].tolist() == [2, 5]
    assert list(back.columns) == list(w.table.columns)
    assert back.loc[1, "area_mm2"] == pytest.approx(w.table.loc[1, "area_mm2"])


def test_without_image(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    w.image_combo.setCurrentText(NO_IMAGE)
    run_and_wait(qtbot, w)
    assert w.table["lab_L_mean"].isna().all() and w.table["area_mm2"].notna().all()
    assert "no image" in w.status.text()


def test_grayscale_image_measures_shape_and_lightness_only(make_napari_viewer, qtbot, monkeypatch):
    from napari_nevus_seg._napari import _job

    warned = []

    def recording_worker(*args, **kwargs):
        worker = create_worker(*args, **kwargs)
        worker.warned.connect(lambda w: warned.append(str(w[0])))  # napari shows these as notifications
        return worker

    create_worker = _job.create_worker
    monkeypatch.setattr(_job, "create_worker", recording_worker)
    viewer = make_napari_viewer()
    labels, img = scene()
    viewer.add_image(img.mean(axis=2).astype(np.uint8), name="skin", scale=(0.02, 0.02))
    viewer.add_labels(labels, name="lesions", scale=(0.02, 0.02))
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    assert any("grayscale" in m for m in warned), warned
    assert w.table["lab_L_mean"].notna().all() and w.table["colour_count"].isna().all()
    assert w.table["area_px2"].gt(0).all() and "grayscale image: colours not measured" in w.status.text()


def test_image_follows_the_labels_and_renames(make_napari_viewer, qtbot):
    from napari_nevus_seg._napari._layers import add_or_update_image, add_or_update_labels

    viewer = make_napari_viewer()
    labels, img = scene()
    a = viewer.add_image(img, name="A", rgb=True)
    b = viewer.add_image(img[::-1].copy(), name="B", rgb=True)
    la = add_or_update_labels(viewer, "A lesions", labels, like=a)
    add_or_update_image(viewer, "A lesion probability", np.zeros(labels.shape, np.float32), like=a)
    lb = add_or_update_labels(viewer, "B lesions", labels[::-1].copy(), like=b)
    w = MeasureWidget(viewer)
    images = [w.image_combo.itemText(i) for i in range(w.image_combo.count())]
    assert images == ["A", "B", NO_IMAGE]                     # the probability map is no image to measure
    viewer.layers.selection.active = la
    assert w.image_combo.layer() is a                         # the image the labels were segmented from
    viewer.layers.selection.active = lb
    assert w.labels_combo.layer() is lb and w.image_combo.layer() is b
    run_and_wait(qtbot, w)
    pd.testing.assert_frame_equal(w.table, measure(labels[::-1], img[::-1]))
    b.name = "B renamed"                                      # renames keep the choice, under the new name
    lb.name = "B outline"
    assert w.image_combo.currentText() == "B renamed" and w.image_combo.layer() is b
    assert w.labels_combo.currentText() == "B outline" and w.labels_combo.layer() is lb
    viewer.add_points(name="marks")                           # later layer events do not move the choice
    assert w.image_combo.layer() is b and w.labels_combo.layer() is lb
    viewer.layers.remove(b)
    assert w.image_combo.layer() is not b


def test_errors_are_reported_and_layers_kept(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, img = scene()
    viewer.add_image(img[:, :-10], name="skin", rgb=True)
    layer = viewer.add_labels(labels, name="lesions")
    w = MeasureWidget(viewer)
    assert w.run() is None  # sizes differ: refused at once
    assert "choose the image" in w.status.text()
    stack = viewer.add_labels(np.stack([labels, labels]), name="stack")
    w.image_combo.setCurrentText(NO_IMAGE)
    assert w.run(labels=stack) is None                      # refused at once, with what to do instead
    assert "stack of 2 planes" in w.status.text() and "measure(labels[i], image[i])" in w.status.text()
    stack_image = viewer.add_image(np.stack([img, img]), name="stack image", rgb=True)
    assert w.run(labels=layer, image=stack_image) is None   # a 2-D outline and a stack of images
    assert "choose the single image" in w.status.text()
    w.image_combo.setCurrentText(NO_IMAGE)
    assert len(stack.features) == 0 and layer in viewer.layers and stack in viewer.layers
    empty = viewer.add_labels(np.zeros_like(labels), name="empty")
    run_and_wait(qtbot, w, labels=empty)
    assert len(w.table) == 0 and "0 lesion(s)" in w.status.text()
    assert len(empty.features) == 1  # the background row


def test_dock_widget_from_the_plugin_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Measure lesions")
    assert isinstance(widget, MeasureWidget)


def test_closing_the_viewer_mid_run_gives_no_error(make_napari_viewer, qtbot):
    """The cancelled run's callbacks find the widget gone (they used to raise "... has been deleted")."""
    viewer = make_napari_viewer()
    labels, img = scene(n_extra=300)
    add_layers(viewer, labels, img)
    w = MeasureWidget(viewer)
    viewer.window.add_dock_widget(w)
    worker = w.run()
    qtbot.waitUntil(lambda: w.task.pbar is not None and w.task.pbar.n > 0, timeout=TIMEOUT)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT)
    qtbot.wait(200)


def test_colours_come_from_the_labels_own_image_unless_another_is_chosen(make_napari_viewer, qtbot, monkeypatch):
    """Selecting another image layer (to look at it) used to make the next measurement take its colours."""
    from napari_nevus_seg._napari import _measure_widget
    from napari_nevus_seg._napari._layers import add_or_update_labels

    warnings = []
    monkeypatch.setattr(_measure_widget, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    labels, img = scene()
    a = viewer.add_image(img, name="A", rgb=True)
    b = viewer.add_image(255 - img, name="B", rgb=True)
    la = add_or_update_labels(viewer, "A lesions", labels, like=a)
    w = MeasureWidget(viewer)
    viewer.layers.selection.active = la
    viewer.layers.selection.active = b                        # the user looks at B ...
    viewer.layers.selection.active = la                       # ... and comes back to A's labels
    assert w.image_combo.layer() is a
    run_and_wait(qtbot, w)
    pd.testing.assert_frame_equal(w.table, measure(labels, img))
    assert not warnings
    w.image_combo.setCurrentText("B")                         # an explicit choice is honoured, with a warning
    run_and_wait(qtbot, w)
    pd.testing.assert_frame_equal(w.table, measure(labels, 255 - img))
    assert len(warnings) == 1 and "segmented from 'A'" in warnings[0] and "'B'" in warnings[0]
    w.image_combo.setCurrentText("A")
    viewer.layers.remove(a)                                   # its image gone: shape only, not B's colours
    assert w.image_combo.currentText() == NO_IMAGE and w.image_combo.layer() is None


@pytest.mark.parametrize("stack", [False, True])
def test_edits_made_during_the_first_measurement_are_measured_too(make_napari_viewer, qtbot, stack):
    """The layer used to be watched only once the first result arrived: a lesion painted meanwhile was
    never measured. A one-plane stack must not be measured over and over either."""
    viewer = make_napari_viewer()
    labels, img = scene(n_extra=200)
    viewer.add_image(img, name="skin", rgb=True)
    layer = viewer.add_labels(labels[None] if stack else labels, name="lesions")
    w = MeasureWidget(viewer)
    assert w.run() is not None
    rows, cols = np.mgrid[180:190, 150:160]                    # painted while the first run goes on
    index = (np.zeros(rows.size, int), rows.ravel(), cols.ravel()) if stack else (rows.ravel(), cols.ravel())
    layer.data_setitem(index, 99)
    qtbot.waitUntil(lambda: w.table is not None and 99 in w.table["label"].tolist(), timeout=TIMEOUT)
    qtbot.wait(1500)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    runs, run = [], w.run
    w.run = lambda *a, **k: runs.append(1) or run(*a, **k)
    qtbot.wait(1500)                                           # it has settled: no endless re-measuring
    assert not runs and w.worker is None and not w._rerun


def test_opening_the_measure_widget_loads_neither_torch_nor_the_training_code():
    # the widgets' shared module imported the fine-tuning code at module level: measuring loaded torch
    from subprocess_helpers import run_script

    code = ("import sys, napari\n"
            "viewer = napari.Viewer(show=False)\n"
            "_, w = viewer.window.add_plugin_dock_widget('napari-nevus-seg', 'Measure lesions')\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('napari_nevus_seg.training'))\n"
            "print(type(w).__name__, loaded)\n"
            "viewer.close()\n")
    out = run_script(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "MeasureWidget []", out.stdout


# ------------------------------------------------------------------------------------------------------------
# the selected lesion's key figures in the dock, napari's table without the background row and a second index


def numbers(text: str) -> list[float]:
    import re

    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


def synthetic_in_a_docked_widget(make_napari_viewer, qtbot, pixel_size=True):
    """napari in a 1280 x 1000 window, a synthetic image with two lesions (exact labels 1, 2), the Measure
    dock about 350 px wide, Measure clicked: (viewer, labels layer, widget, case, the reference table)."""
    from napari_nevus_seg import synthetic_lesion_image

    case = synthetic_lesion_image(seed=3, n_lesions=2, pixel_size_mm=0.02)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 1000)
    kw = {"scale": (0.02, 0.02), "units": ("mm", "mm")} if pixel_size else {}
    viewer.add_image(case.image, name="skin", rgb=True, **kw)
    layer = viewer.add_labels(case.labels, name="lesions", **kw)
    dock, w = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Measure lesions")
    viewer.window._qt_window.resizeDocks([dock], [350], Qt.Orientation.Horizontal)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None and w.table is not None, timeout=TIMEOUT)
    reference = measure(case.labels, case.image, 0.02 if pixel_size else None).set_index("label")
    return viewer, layer, w, case, reference


def assert_readable(box):
    """Every row of the figures box gets the height its wrapped text needs, and no two rows overlap."""
    from itertools import pairwise

    from qtpy.QtWidgets import QLabel

    wrapped = sorted((lb for lb in box.findChildren(QLabel) if lb.isVisible() and lb.wordWrap()), key=lambda lb: lb.y())
    for lb in wrapped:
        assert lb.height() >= lb.heightForWidth(lb.width()), lb.text()
    for a, b in pairwise(wrapped):
        assert a.y() + a.height() <= b.y(), (a.text(), b.text())


def test_the_dock_shows_the_selected_lesions_key_figures(make_napari_viewer, qtbot):
    viewer, layer, w, case, ref = synthetic_in_a_docked_widget(make_napari_viewer, qtbot)
    assert layer.selected_label == 1 and w.figures.shown()[""] == "Lesion 1"   # napari selects label 1 at first
    layer.selected_label = 2                          # as the label spin box, the picker or napari's table do
    shown = w.figures.shown()
    row = ref.loc[2]
    assert shown[""] == "Lesion 2" and w.lesion_combo.currentData() == 2
    assert numbers(shown["Area"])[0] == pytest.approx(row["area_mm2"], rel=5e-3) and "mm²" in shown["Area"]
    assert numbers(shown["Max. diameter"])[0] == pytest.approx(row["max_feret_mm"], rel=5e-3)
    a = numbers(shown["Asymmetry A"])
    assert a[0] == row["asymmetry_score"] and a[1] == 2
    assert a[2:4] == pytest.approx([100 * row["asymmetry_axis1"], 100 * row["asymmetry_axis2"]], abs=0.051)
    b = numbers(shown["Border B"])
    assert b[:2] == [row["border_abrupt_sectors"], row["border_scored_sectors"]]
    assert b[2] == pytest.approx(row["border_convexity"], abs=0.006)
    colours = shown["Colours C"].replace("\u00a0", " ")   # no-break spaces keep "light brown 59 %" together
    assert numbers(colours)[0] == row["colour_count"]
    called = colours.split("; ")[0]                   # "1: light brown", then the pixel shares
    for name in ("white", "light_brown", "dark_brown", "blue_gray", "black"):
        assert (name.replace("_", " ").replace("blue gray", "blue-gray") in called) == bool(row[f"colour_{name}"])
    for name in case.colours[1]:                      # the colours painted into lesion 2, with their shares
        assert f"{name.replace('_', ' ').replace('blue gray', 'blue-gray')} " in colours.split("; pixels: ")[1]
    listed = numbers(colours.replace("under 5 %:", ""))[1:]   # every share shown: they add up to 100 %
    assert sum(listed) == pytest.approx(100, abs=0.5 * len(listed))
    assert listed[-1] == pytest.approx(100 * row["share_unassigned"], abs=0.51)
    assert "Expected Dice" not in shown               # measured outlines of their own: no network estimate
    assert_readable(w.figures)
    # layer.features: rows = label values as napari wants, no column repeating them, shares adding up
    f = layer.features
    assert "index" not in f.columns and "label" not in f.columns and len(f) == 3
    shares = f.loc[[1, 2], [c for c in f.columns if c.startswith("share_")]]
    assert shares.shape[1] == 7 and np.allclose(shares.sum(axis=1).to_numpy(float), 1.0)
    # "Show full table": napari's table, docked at the bottom, lesion rows only, one "Index" column
    qtbot.mouseClick(w.table_button, Qt.MouseButton.LeftButton)
    table = viewer.window.dock_widgets["Features table widget (napari)"]
    model = table.table.model()
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers[0] == "Index" and len({h.lower() for h in headers}) == len(headers) == 1 + f.shape[1]
    assert [model.index(r, 0).data() for r in range(model.rowCount())] == [1, 2]   # no background row 0
    main = viewer.window._qt_window
    assert main.dockWidgetArea(table.parentWidget()) == Qt.DockWidgetArea.BottomDockWidgetArea
    qtbot.wait(50)
    assert_readable(w.figures)                        # the right column did not get squeezed
    table.table.selectRow(0)                          # a click in the table selects that lesion ...
    assert layer.selected_label == 1 and w.figures.shown()[""] == "Lesion 1"   # ... and the dock follows
    viewer.layers.selection.active = viewer.layers["skin"]   # another layer in the table: all its rows
    viewer.layers.selection.active = layer
    assert model.rowCount() == 2


def test_a_selected_label_without_lesion_shows_the_largest(make_napari_viewer, qtbot):
    _, layer, w, _, ref = synthetic_in_a_docked_widget(make_napari_viewer, qtbot, pixel_size=False)
    layer.selected_label = 7                          # e.g. about to paint a new lesion
    shown = w.figures.shown()
    largest = int(ref["area_px2"].idxmax())
    assert shown[""] == f"Lesion {largest} (the largest)" and "Label 7" in shown["message"]
    assert shown["Area"].startswith(f"{int(ref.loc[largest, 'area_px2'])}\u00a0px²")
    assert numbers(shown["Max. diameter"])[0] == pytest.approx(ref.loc[largest, "max_feret_px"], rel=5e-3)


def test_expected_dice_from_the_segmentation_is_shown_and_kept(make_napari_viewer, qtbot):
    from napari_nevus_seg._napari._segment_widget import confidence_features

    viewer = make_napari_viewer()
    labels, img = scene()
    _, layer = add_layers(viewer, labels, img)
    layer.features = confidence_features({2: 0.934, 5: 0.712}, 5)   # what the Segment widget leaves
    w = MeasureWidget(viewer)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None and w.table is not None, timeout=TIMEOUT)
    layer.selected_label = 5
    assert w.figures.shown()["Expected Dice"] == "0.71"
    layer.selected_label = 2
    assert w.figures.shown()["Expected Dice"] == "0.93"
    assert layer.features.loc[5, "expected_dice"] == pytest.approx(0.712)


def test_set_scale_after_measuring_measures_again_in_mm(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """Measured in pixels, then the user sets the scale from a ruler: the panel says the new pixel size and
    the table is measured again in mm. With re-measuring off, Export CSV warns that the table has the old
    pixel size."""
    from napari_nevus_seg._napari import _measure_widget
    from napari_nevus_seg._napari._scale_widget import apply_pixel_size

    warnings = []
    monkeypatch.setattr(_measure_widget, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    labels, img = scene()
    image, layer = add_layers(viewer, labels, img, scale=(1, 1), units=("pixel", "pixel"))
    w = MeasureWidget(viewer)
    run_and_wait(qtbot, w)
    assert "area_px2" in w.table and "area_mm2" not in w.table and "Pixel size unknown" in w.pixel_label.text()
    area_px = w.table.set_index("label").loc[5, "area_px2"]
    apply_pixel_size(viewer, image, 0.02)                         # what Set scale does
    assert w.pixel_label.text().startswith("Pixel size 20 × 20 µm")
    qtbot.waitUntil(lambda: "area_mm2" in w.table, timeout=TIMEOUT)
    assert w.table.set_index("label").loc[5, "area_mm2"] == pytest.approx(area_px * 0.02 ** 2)
    w.auto_refresh.setChecked(False)
    apply_pixel_size(viewer, image, 0.01)                         # corrected: half-millimetre ticks
    qtbot.wait(2 * _measure_widget.REFRESH_DELAY_MS)
    assert w.table.attrs["pixel_size_mm"] == (0.02, 0.02)         # not measured again: re-measuring is off
    monkeypatch.setattr(_measure_widget.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "t.csv"), ""))
    qtbot.mouseClick(w.export_button, Qt.MouseButton.LeftButton)
    assert (tmp_path / "t.csv").is_file() and any("pixel size" in m and "changed" in m for m in warnings)


def test_an_expert_mask_is_measured_with_the_image_it_was_opened_with(make_napari_viewer, qtbot):
    # two samples of the same size open: choosing one's ground truth left the other's photograph chosen, and
    # its colours were measured in the wrong image without a word
    from unittest import mock

    viewer = make_napari_viewer()
    viewer.open_sample("napari-nevus-seg", "synthetic_lesion")
    viewer.open_sample("napari-nevus-seg", "synthetic_multi")
    _, w = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Measure lesions")
    first, image, other = "synthetic lesion ground truth", "synthetic lesion", "synthetic lesions"
    w.image_combo.setCurrentText(other)
    w.labels_combo.setCurrentText(first)                  # chosen in the panel
    assert w.image_combo.currentText() == image
    w.image_combo.setCurrentText(other)
    viewer.layers.selection.active = viewer.layers[first]  # or clicked in the layer list
    assert w.image_combo.currentText() == image
    w.image_combo.setCurrentText(other)                   # the user insists on another image: measured, with a warning
    with mock.patch("napari_nevus_seg._napari._measure_widget.show_warning") as warn:
        qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert any(image in str(c) and other in str(c) for c in warn.call_args_list), warn.call_args_list
    # paired by the token the sample (and the reader) give both layers, not only by name: a renamed image and
    # a case opened twice ("... [1]") keep their masks
    viewer.layers[image].name = "my lesion"
    w.labels_combo.setCurrentText("synthetic lesions ground truth")
    assert w.image_combo.currentText() == other
    w.labels_combo.setCurrentText(first)
    assert w.image_combo.currentText() == "my lesion"
    viewer.open_sample("napari-nevus-seg", "synthetic_lesion")
    twin, twin_truth = (ly.name for ly in viewer.layers[-2:])
    assert twin_truth != f"{twin} ground truth"              # "... ground truth [1]": the name no longer pairs them
    w.labels_combo.setCurrentText(twin_truth)
    assert w.image_combo.currentText() == twin
