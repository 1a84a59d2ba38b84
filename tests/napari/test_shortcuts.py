"""Keyboard shortcuts: pressed on napari's canvas as a person does, they do what the buttons do."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_nevus_seg import synthetic_lesion_image
from napari_nevus_seg._napari._segment_widget import SegmentWidget
from napari_nevus_seg._napari._shortcuts import SHORTCUTS

pytestmark = pytest.mark.gui
TIMEOUT = 120_000


def press(viewer, qtbot, letter: str) -> None:
    """Shift+letter on the canvas (where napari's own shortcuts are read)."""
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{letter}"), Qt.KeyboardModifier.ShiftModifier)


def test_the_shortcuts_are_free_in_napari(make_napari_viewer):
    """None of the plugin's keys takes one of napari's own (viewer or layer shortcuts)."""
    from napari.utils.key_bindings import coerce_keybinding

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_lesion_image(seed=1, shape=(64, 64)).image, rgb=True)
    viewer.add_labels(synthetic_lesion_image(seed=1, shape=(64, 64)).labels)
    taken = set(viewer.keymap) | {k for layer in viewer.layers for k in layer.keymap}
    taken |= {coerce_keybinding(k) for layer in viewer.layers for k in type(layer).class_keymap}
    from napari._app_model import get_app_model

    taken |= {kb.keybinding for kb in get_app_model().keybindings}
    ours = {coerce_keybinding(key) for key, _ in SHORTCUTS.values()}
    assert not ours & {coerce_keybinding(k) for k in taken}


def test_shift_s_segments_and_closing_the_widget_frees_the_key(make_napari_viewer, qtbot):
    from napari.utils.key_bindings import coerce_keybinding

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_lesion_image(seed=2).image, name="skin", rgb=True)
    w = SegmentWidget(viewer)
    w.device_combo.setCurrentText("cpu")
    viewer.window.add_dock_widget(w)
    press(viewer, qtbot, "S")
    assert w.worker is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert "skin lesions" in viewer.layers
    assert "Shift+S" in w.run_button.toolTip()
    key = coerce_keybinding("Shift-S")
    assert key in viewer.keymap
    viewer.window.remove_dock_widget(w)
    w.deleteLater()
    qtbot.waitUntil(lambda: key not in viewer.keymap, timeout=5000)
    press(viewer, qtbot, "S")   # nothing bound any more: no error


def test_shift_t_adds_the_corrected_pair_in_the_fine_tune_widget(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_nevus_seg._napari._finetune_widget import FineTuneWidget
    from napari_nevus_seg.training.store import TrainingStore

    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "training"))
    viewer = make_napari_viewer()
    case = synthetic_lesion_image(seed=3, shape=(64, 80))
    viewer.add_image(case.image, name="clinic", rgb=True)
    viewer.add_labels(case.labels, name="clinic lesions")
    w = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.image_combo.select("clinic")
    w.labels_combo.select("clinic lesions")
    press(viewer, qtbot, "T")
    store = TrainingStore(tmp_path / "training")
    assert store.names() == ["clinic"]
    assert (store.load()[1][0] > 0).sum() == (case.labels > 0).sum()


def test_closing_the_panel_that_took_a_key_gives_it_back(make_napari_viewer, qtbot):
    """Segment panel, then the case browser (both Shift+S); closing the browser gives Shift+S back to the
    Segment panel, which segments again."""
    from napari.utils.key_bindings import coerce_keybinding

    from napari_nevus_seg._napari._case_browser import CaseBrowserWidget

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_lesion_image(seed=2).image, name="skin", rgb=True)
    seg = SegmentWidget(viewer)
    seg.device_combo.setCurrentText("cpu")
    viewer.window.add_dock_widget(seg)
    browser = CaseBrowserWidget(viewer)
    viewer.window.add_dock_widget(browser)
    key = coerce_keybinding("Shift-S")
    assert viewer.keymap[key].owner is browser                  # the panel opened last has the key
    viewer.window.remove_dock_widget(browser)
    browser.deleteLater()
    qtbot.waitUntil(lambda: getattr(viewer.keymap.get(key), "owner", None) is seg, timeout=5000)
    press(viewer, qtbot, "S")
    assert seg.worker is not None
    qtbot.waitUntil(lambda: seg.worker is None, timeout=TIMEOUT)
    assert "skin lesions" in viewer.layers
