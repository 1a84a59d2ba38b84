"""The Measure dock's "Show colour map" button, clicked as a person does, on a synthetic image with known colours."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_nevus_seg import measure, synthetic_lesion_image
from napari_nevus_seg.measurements.colour_map import (
    CLASS_NAMES,
    CLASS_OF_COLOUR,
    CLASS_RGB,
    NOT_COUNTED,
    colour_class_map,
)

pytestmark = pytest.mark.gui
TIMEOUT = 60_000


def _measured(make_napari_viewer, qtbot, image=True):
    case = synthetic_lesion_image(seed=3, n_lesions=2, pixel_size_mm=0.02)
    viewer = make_napari_viewer(show=True)
    viewer.add_image(case.image, name="skin", rgb=True, scale=(0.02, 0.02))
    layer = viewer.add_labels(case.labels, name="lesions", scale=(0.02, 0.02))
    _, w = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Measure lesions")
    if not image:
        w.image_combo.setCurrentText("(none: shape only)")
    assert not w.colour_map_button.isEnabled()            # nothing measured yet
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None and w.table is not None, timeout=TIMEOUT)
    return viewer, layer, w, case


def test_show_colour_map_adds_a_layer_of_the_colours_counted(make_napari_viewer, qtbot):
    viewer, layer, w, case = _measured(make_napari_viewer, qtbot)
    assert w.colour_map_button.isEnabled()
    n_layers = len(viewer.layers)
    qtbot.mouseClick(w.colour_map_button, Qt.MouseButton.LeftButton)
    assert w.worker is not None                           # computed in the background job
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert len(viewer.layers) == n_layers + 1
    cmap = viewer.layers["lesions colours"]
    table = measure(case.labels, case.image, 0.02)
    expected = colour_class_map(case.labels, case.image, table)
    np.testing.assert_array_equal(cmap.data, expected)
    assert tuple(cmap.scale) == tuple(layer.scale) and cmap.contour == 0
    # what the person sees: lesion 1's light brown and white where they were painted; lesion 2's dark brown,
    # which the detector does not count (a known miss), in grey
    for value, name in ((CLASS_OF_COLOUR["light_brown"], "light brown"), (CLASS_OF_COLOUR["white"], "white")):
        assert (cmap.data[case.labels == 1] == value).mean() > 0.3
        np.testing.assert_allclose(cmap.get_color(value)[:3], np.array(CLASS_RGB[value]) / 255, atol=0.01)
        assert cmap.features.loc[value, "colour class"] == name
    assert (cmap.data[case.labels == 2] == NOT_COUNTED).mean() > 0.3
    assert (cmap.data[case.labels == 0] == 0).all()
    assert list(cmap.features["colour class"]) == list(CLASS_NAMES)
    assert "light brown" in w.status.text() and "white" in w.status.text()
    # the measured layer stays selected, and the widget still measures it
    assert viewer.layers.selection.active is layer and w.labels_combo.currentText() == "lesions"
    qtbot.mouseClick(w.colour_map_button, Qt.MouseButton.LeftButton)   # again: the same layer is updated
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert len(viewer.layers) == n_layers + 1


def test_a_layer_removed_while_its_map_is_computed_gets_none(make_napari_viewer, qtbot):
    viewer, layer, w, _ = _measured(make_napari_viewer, qtbot)
    qtbot.mouseClick(w.colour_map_button, Qt.MouseButton.LeftButton)
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert "lesions colours" not in [ly.name for ly in viewer.layers]
    assert "removed before its colour map was ready" in w.status.text()


def test_without_an_image_no_colour_map(make_napari_viewer, qtbot):
    viewer, _, w, _ = _measured(make_napari_viewer, qtbot, image=False)
    n_layers = len(viewer.layers)
    assert not w.colour_map_button.isEnabled()            # measured without an image: no colours to map
    w.colour_map_button.setEnabled(True)                   # (and if it were clicked anyway: nothing added)
    qtbot.mouseClick(w.colour_map_button, Qt.MouseButton.LeftButton)
    assert len(viewer.layers) == n_layers


def test_the_colour_map_never_becomes_the_layer_measured_or_trained_on(make_napari_viewer, qtbot):
    # with the image selected in the layer list, the new colour-map layer became the Measure panel's and the
    # Fine-tune panel's Labels choice: Measure then measured the colour classes as "6 lesions"
    viewer, layer, w, case = _measured(make_napari_viewer, qtbot)
    _, tune = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Fine-tune on corrections")
    tune.labels_combo.select("lesions")
    viewer.layers.selection.active = viewer.layers["skin"]
    qtbot.mouseClick(w.colour_map_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None and "lesions colours" in viewer.layers, timeout=TIMEOUT)
    for combo in (w.labels_combo, tune.labels_combo):
        assert combo.currentText() == "lesions"
        assert "lesions colours" not in [combo.itemText(i) for i in range(combo.count())]
    viewer.layers.selection.active = viewer.layers["lesions colours"]   # clicked in the layer list
    assert w.labels_combo.currentText() == "lesions" and tune.labels_combo.currentText() == "lesions"
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert sorted(w.table["label"]) == [1, 2]
