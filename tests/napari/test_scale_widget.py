"""The "Set scale from a ruler" widget: draw a line, type its length, click; the pixel size reaches the image,
its results, the measurements and the saved TIFF."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_nevus_seg import synthetic_lesion_image
from napari_nevus_seg._napari._layers import add_or_update_image, add_or_update_labels, pixel_size_mm_from_layer
from napari_nevus_seg._napari._scale_widget import ScaleWidget
from napari_nevus_seg.io.labels import file_pixel_size, read_labels

pytestmark = pytest.mark.gui


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_a_line_along_the_ruler_sets_the_scale_everywhere(make_napari_viewer, qtbot, tmp_path):
    case = synthetic_lesion_image(seed=5, shape=(192, 256))
    viewer = make_napari_viewer()
    image = viewer.add_image(case.image, name="skin", rgb=True)
    result = add_or_update_labels(viewer, "skin lesions", case.labels, like=image)   # a segmentation result
    prob = add_or_update_image(viewer, "skin lesion probability", case.labels.astype(np.float32), like=image)
    truth = viewer.add_labels(case.labels, name="skin ground truth", metadata={"ground_truth": True})
    other = viewer.add_labels(np.zeros((10, 10), np.int32), name="unrelated")
    w = ScaleWidget(viewer)
    viewer.window.add_dock_widget(w)
    click(qtbot, w.draw_button)
    ruler = viewer.layers["skin ruler"]
    assert ruler.mode == "add_line" and viewer.layers.selection.active is ruler
    ruler.add_lines(np.array([[10.0, 20.0], [10.0, 220.0]]))   # what drawing a line adds: 200 px along the ruler
    w.length.lineEdit().selectAll()
    qtbot.keyClicks(w.length.lineEdit(), "5")
    qtbot.keyClick(w.length.lineEdit(), Qt.Key.Key_Enter)
    assert w.length.value() == 5
    click(qtbot, w.set_button)
    np.testing.assert_allclose(other.scale, (1, 1))                 # a layer of the user's is left alone
    for layer in (image, result, prob, truth):                      # the expert outline stays over the lesion
        np.testing.assert_allclose(layer.scale, (0.025, 0.025))
        assert [str(u) for u in layer.units] == ["millimeter", "millimeter"]
        assert pixel_size_mm_from_layer(layer) == pytest.approx((0.025, 0.025))
    assert "25.00 µm" in w.status.text() and "200 px" in w.status.text()
    # a second line after the view is in mm (the ruler layer's data stay image pixels): the same answer
    ruler.add_lines(np.array([[20.0, 40.0], [20.0, 140.0]]))   # 100 px along 2.5 mm of the ruler
    w.length.setValue(2.5)
    click(qtbot, w.set_button)
    np.testing.assert_allclose(image.scale, (0.025, 0.025))
    # the measurements and the saved label file use it
    from napari_nevus_seg._napari._measure_widget import MeasureWidget

    m = MeasureWidget(viewer)
    m.labels_combo.select("skin lesions")
    click(qtbot, m.run_button)
    qtbot.waitUntil(lambda: m.worker is None, timeout=60_000)
    assert m.table["area_mm2"].iloc[0] == pytest.approx((case.labels == 1).sum() * 0.025 ** 2)
    out = viewer.layers["skin lesions"].save(str(tmp_path / "skin_lesions.tif"), plugin="napari-nevus-seg")
    saved = out[0] if isinstance(out, list) else out
    assert file_pixel_size(saved) == pytest.approx((0.025, 0.025))
    np.testing.assert_array_equal(read_labels(saved), case.labels)


def test_without_a_line_or_image_the_widget_says_what_to_do(make_napari_viewer, qtbot, monkeypatch):
    from napari_nevus_seg._napari import _scale_widget

    errors = []
    monkeypatch.setattr(_scale_widget, "show_error", errors.append)
    viewer = make_napari_viewer()
    w = ScaleWidget(viewer)
    click(qtbot, w.draw_button)
    assert errors and "open or choose an image" in errors[-1]
    viewer.add_image(synthetic_lesion_image(seed=6, shape=(64, 64)).image, name="skin", rgb=True)
    click(qtbot, w.set_button)
    assert "draw a line along the ruler first" in errors[-1] and w.status.text().startswith("Draw a line along")
    click(qtbot, w.draw_button)
    viewer.layers["skin ruler"].add_lines(np.array([[5.0, 5.0], [5.0, 5.5]]))   # half a pixel: refused
    click(qtbot, w.set_button)
    assert "at least a few pixels" in errors[-1]
    np.testing.assert_allclose(viewer.layers["skin"].scale, (1, 1))          # nothing changed


def test_find_the_ruler_draws_a_line_over_its_ticks_and_set_scale_uses_it(make_napari_viewer, qtbot):
    """The ruler sample: Find the ruler, check the line, Set scale: 50 px per mm, 0.02 mm per pixel."""
    viewer = make_napari_viewer()
    image, truth = viewer.open_sample("napari-nevus-seg", "synthetic_ruler")
    np.testing.assert_allclose(image.scale, (1, 1))                  # no pixel size yet
    w = ScaleWidget(viewer)
    viewer.window.add_dock_widget(w)
    click(qtbot, w.draw_button)                                       # a line of the user's first: kept
    ruler = viewer.layers[f"{image.name} ruler"]
    ruler.add_lines(np.array([[100.0, 100.0], [100.0, 300.0]]))
    click(qtbot, w.find_button)
    qtbot.waitUntil(lambda: not w.task.running, timeout=60_000)
    assert ruler is viewer.layers[f"{image.name} ruler"] and ruler.mode == "select"
    assert len(ruler.data) == 2 and ruler.shape_type == ["line", "line"]
    np.testing.assert_allclose(ruler.data[0], [[100.0, 100.0], [100.0, 300.0]])
    start, end = np.asarray(ruler.data[-1])                           # Set scale takes the last line
    ticks = int(w.length.value())
    assert ticks >= 6                                                 # at least half of the 12 mm drawn
    assert np.hypot(*(end - start)) / ticks == pytest.approx(50.0, rel=0.002)
    assert abs(start[0] - end[0]) < 1.0                               # along the ruler at the bottom
    assert f"Found {ticks + 1} tick marks" in w.status.text() and "Set scale" in w.status.text()
    assert ruler.selected_data == {1} and "the selected line, the last one" in w.status.text()
    click(qtbot, w.find_button)                                       # again: the found line is replaced
    qtbot.waitUntil(lambda: not w.task.running, timeout=60_000)
    assert len(ruler.data) == 2
    np.testing.assert_allclose(ruler.data[-1], [start, end])
    click(qtbot, w.set_button)
    for layer in (image, truth):
        np.testing.assert_allclose(layer.scale, (0.02, 0.02), rtol=0.002)
    # the user moves an end of the line to the next tick and corrects the length: the scale follows
    ruler.data = [ruler.data[0], np.array([start, end + (end - start) / ticks])]
    w.length.setValue(ticks + 1)
    click(qtbot, w.set_button)
    np.testing.assert_allclose(image.scale, (0.02, 0.02), rtol=0.002)


def test_a_ruler_found_after_the_user_chose_another_image_leaves_their_choice_alone(make_napari_viewer, qtbot):
    """The user starts a search, then chooses another image and types a length: the line is drawn over
    the searched image's ruler, the image chosen, the length typed and the active layer stay theirs, and
    the status says how to use the line found."""
    viewer = make_napari_viewer()
    image, _truth = viewer.open_sample("napari-nevus-seg", "synthetic_ruler")
    other = viewer.add_image(synthetic_lesion_image(seed=4, shape=(64, 64)).image, name="other", rgb=True)
    w = ScaleWidget(viewer)
    w.image_combo.select(image.name)
    click(qtbot, w.find_button)
    w.image_combo.select("other")                                     # before the answer comes back
    w.length.setValue(3.0)
    viewer.layers.selection.active = other
    qtbot.waitUntil(lambda: not w.task.running, timeout=60_000)
    assert w.image_combo.layer() is other and w.length.value() == 3.0
    assert viewer.layers.selection.active is other
    ruler = viewer.layers[f"{image.name} ruler"]
    start, end = np.asarray(ruler.data[-1])
    assert len(ruler.data) == 1 and np.hypot(*(end - start)) > 300     # drawn over the searched image
    spacings = round(np.hypot(*(end - start)) / 50.0)
    assert f"in {image.name!r}" in w.status.text() and f"choose {image.name!r}" in w.status.text()
    assert f"{spacings} mm" in w.status.text()
    np.testing.assert_allclose(image.scale, (1, 1))                   # nothing set yet


def test_find_the_ruler_says_when_there_is_none_and_changes_nothing(make_napari_viewer, qtbot, monkeypatch):
    from napari_nevus_seg._napari import _scale_widget

    errors = []
    monkeypatch.setattr(_scale_widget, "show_error", errors.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(synthetic_lesion_image(seed=3, shape=(384, 512)).image, name="skin", rgb=True)
    w = ScaleWidget(viewer)
    click(qtbot, w.find_button)
    qtbot.waitUntil(lambda: not w.task.running, timeout=60_000)
    assert "No ruler found in 'skin'" in w.status.text() and "by hand" in w.status.text()
    assert [ly.name for ly in viewer.layers] == ["skin"] and w.length.value() == 1.0
    np.testing.assert_allclose(image.scale, (1, 1))
    viewer.add_image(np.zeros((3, 64, 64), np.uint8), name="stack")
    w.image_combo.select("stack")
    click(qtbot, w.find_button)
    assert "is a stack" in errors[-1] and not w.task.running


def test_find_the_ruler_in_a_pyramid_reads_a_coarser_level_and_answers_in_full_resolution(make_napari_viewer, qtbot):
    from napari_nevus_seg.io.synthetic_ruler import draw_ruler

    full = draw_ruler(synthetic_lesion_image(seed=12, shape=(2400, 3200)).image, start=(2150.0, 300.0),
                      spacing_px=120.0, ticks=20)
    viewer = make_napari_viewer()
    image = viewer.add_image([full, full[::2, ::2]], name="big", rgb=True, multiscale=True)
    w = ScaleWidget(viewer)
    click(qtbot, w.find_button)
    qtbot.waitUntil(lambda: not w.task.running, timeout=120_000)
    start, end = np.asarray(viewer.layers["big ruler"].data[-1])
    spacings = int(w.length.value())
    assert spacings >= 10 and np.hypot(*(end - start)) / spacings == pytest.approx(120.0, rel=0.005)
    assert abs((start[1] - 300.0) / 120.0 - round((start[1] - 300.0) / 120.0)) < 0.1   # on a tick of the full image
    click(qtbot, w.set_button)
    np.testing.assert_allclose(image.scale, (1 / 120.0, 1 / 120.0), rtol=0.005)


def test_an_image_closed_while_its_ruler_is_looked_for_gets_nothing_drawn(make_napari_viewer, qtbot):
    from napari_nevus_seg.measurements.ruler import RulerTicks

    viewer = make_napari_viewer()
    image = viewer.add_image(synthetic_lesion_image(seed=3, shape=(64, 64)).image, name="skin", rgb=True)
    other = viewer.add_image(synthetic_lesion_image(seed=4, shape=(64, 64)).image, name="other", rgb=True)
    w = ScaleWidget(viewer)
    viewer.layers.remove(image)
    w._on_found(image, RulerTicks((1.0, 1.0), (1.0, 41.0), 4, 10.0, 0.0, 0.9, 4.0))   # the job's late answer
    assert "'skin' was closed" in w.status.text() and "nothing drawn" in w.status.text()
    assert [ly.name for ly in viewer.layers] == ["other"] and w.length.value() == 1.0
    np.testing.assert_allclose(other.scale, (1, 1))


def test_three_docks_in_a_900_px_window_scroll_instead_of_overlapping_or_growing_the_window(make_napari_viewer, qtbot):
    # Set scale, Segment and Measure docked one under the other did not fit a 900 px window: the window grew
    # taller than asked (off a laptop's screen) and the Set scale dock drew its rows over each other
    from qtpy.QtWidgets import QApplication, QScrollArea

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 900)
    viewer.add_image(synthetic_lesion_image(seed=5, shape=(192, 256)).image, name="skin", rgb=True)
    docks = [viewer.window.add_plugin_dock_widget("napari-nevus-seg", name)[1]
             for name in ("Set scale from a ruler", "Segment lesions", "Measure lesions")]
    for _ in range(20):
        QApplication.processEvents()
    assert viewer.window._qt_window.height() <= 900
    scale, segment, measure = docks
    for rows in ((scale.image_combo, scale.length, scale.draw_button), (segment.image_combo, segment.model_combo),
                 (measure.labels_combo, measure.image_combo)):
        tops = [row.mapTo(row.window(), row.rect().topLeft()).y() for row in rows]
        bottoms = [top + row.height() for top, row in zip(tops, rows, strict=True)]
        assert all(bottoms[i] <= tops[i + 1] for i in range(len(rows) - 1)), (tops, bottoms)
    for w in docks:   # each dock shows its first rows and scrolls to the rest
        area = w.findChild(QScrollArea)
        assert area.height() >= min(100, area.widget().sizeHint().height())
        assert w.image_combo.isVisible()
    # the column's height is shared by what the docks need: napari gave the first dock all it asked for (a blank
    # band under Set scale) and squeezed the last one, whose Measure button was out of sight
    assert not measure.run_button.visibleRegion().isEmpty()
    assert scale.height() <= scale.findChild(QScrollArea).widget().sizeHint().height() + 10
    # a longer text in a row widens the dock, as without the scroll area: no row is cut off on the right
    scale.status.setWordWrap(False)
    scale.status.setText("a status line much longer than the dock is wide, " * 2)
    for _ in range(20):
        QApplication.processEvents()
    area = scale.findChild(QScrollArea)
    assert area.viewport().width() >= area.widget().minimumSizeHint().width() >= scale.status.sizeHint().width()


def test_all_five_docks_fit_a_laptop_window(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication, QScrollArea

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 740)
    viewer.add_image(synthetic_lesion_image(seed=5, shape=(192, 256)).image, name="skin", rgb=True)
    docks = [viewer.window.add_plugin_dock_widget("napari-nevus-seg", name)[1]
             for name in ("Set scale from a ruler", "Segment lesions", "Measure lesions", "Fine-tune on corrections",
                          "Case browser")]
    for _ in range(20):
        QApplication.processEvents()
    assert viewer.window._qt_window.height() <= 740    # was 1081: off a 768 px screen, status bar included
    for w in docks:                                    # each shows its first rows (about three), and scrolls
        area = w.findChild(QScrollArea)
        assert area.viewport().height() >= 90 and area.verticalScrollBar().maximum() > 0
