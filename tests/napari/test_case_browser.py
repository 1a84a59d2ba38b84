"""The case browser in a viewer: open a folder, step through cases, segment, correct, add to the training set."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_helpers import tiny_base
from napari.layers import Image, Labels

from napari_nevus_seg import segment
from napari_nevus_seg._napari import _case_browser, _job, _shared
from napari_nevus_seg._napari._case_browser import CaseBrowserWidget
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.io.mask_files import read_mask
from napari_nevus_seg.model.library import ModelLibrary
from napari_nevus_seg.training.store import TrainingStore

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000


@pytest.fixture
def browser(make_napari_viewer, make_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "training"))
    ModelLibrary().save(tiny_base(), "tiny")
    notes = []
    for mod in (_case_browser, _shared, _job):
        for fn in ("show_info", "show_error", "show_warning"):
            if hasattr(mod, fn):
                monkeypatch.setattr(mod, fn, lambda msg, fn=fn: notes.append((fn, msg)))
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="mine")           # a layer of the user's: must survive browsing
    w = CaseBrowserWidget(viewer)
    w.model_combo.refresh()
    w.model_combo.setCurrentIndex(w.model_combo.findText("tiny"))
    root, cases = make_dataset("ph2", n=3, shape=(60, 80))
    return viewer, w, root, cases, notes


def layer_names(viewer):
    return [ly.name for ly in viewer.layers]


def test_browse_segment_and_add(browser, qtbot, tmp_path):
    viewer, w, root, cases, _ = browser
    assert w.open_folder(root) == 3
    assert w.position_label.text() == "case 1/3: IMD001"
    assert layer_names(viewer) == ["mine", "IMD001", "IMD001 ground truth"]   # as the reader opens a case
    np.testing.assert_array_equal(viewer.layers["IMD001"].data, read_image(cases[0].image))
    np.testing.assert_array_equal(viewer.layers["IMD001 ground truth"].data > 0, read_mask(cases[0].mask) > 0)
    assert not w.prev_button.isEnabled() and w.next_button.isEnabled()

    w.segment_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    lab = viewer.layers["IMD001 lesions"]
    assert isinstance(lab, Labels) and lab is w.labels_layer
    np.testing.assert_array_equal(lab.data, segment(read_image(cases[0].image), model=ModelLibrary().load("tiny")))

    lab.data = (lab.data > 0).astype(np.int32)                # "corrected"
    lab.data[:5, :5] = 1
    w.training.add_button.click()
    store = TrainingStore(tmp_path / "training")
    assert store.names() == ["IMD001"] and w.training.count_label.text() == "1 pair in the training set"
    np.testing.assert_array_equal(store.load()[1][0], lab.data > 0)

    assert w.next()                                           # the previous case's layers are replaced
    assert layer_names(viewer) == ["mine", "IMD002", "IMD002 ground truth"]   # every case has its ground truth
    assert w.position_label.text() == "case 2/3: IMD002"
    assert w.next() and not w.next()                          # stops at the last case
    assert w.position_label.text() == "case 3/3: IMD003" and not w.next_button.isEnabled()
    assert w.previous() and layer_names(viewer) == ["mine", "IMD002", "IMD002 ground truth"]


def test_browser_and_fine_tune_widget_share_the_training_folder(browser, qtbot, tmp_path):
    from napari_nevus_seg._napari._finetune_widget import FineTuneWidget

    viewer, w, root, _, _ = browser
    ft = FineTuneWidget(viewer)
    w.training.set_folder(tmp_path / "shared set")
    assert ft.training.folder_edit.text() == str(tmp_path / "shared set")
    w.open_folder(root)
    viewer.add_labels(np.zeros((60, 80), np.int32) + 1, name="IMD001 lesions")   # drawn by hand
    w.training.add_button.click()
    assert ft.training.count_label.text() == "1 pair in the training set"
    assert TrainingStore(tmp_path / "shared set").names() == ["IMD001"]


def test_unsaved_corrections_are_not_dropped_silently(browser, qtbot):
    viewer, w, root, _, notes = browser
    w.open_folder(root)
    w.segment()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    lab = w.labels_layer
    lab.paint((10, 10), 1)                                    # a brush stroke
    assert not w.next()                                       # first press: a warning, nothing moves
    assert "IMD001 lesions" in layer_names(viewer)
    assert any("not in the training set" in m for f, m in notes if f == "show_warning")
    assert w.next()                                           # second press: the user chose to move on
    assert layer_names(viewer) == ["mine", "IMD002", "IMD002 ground truth"]


def test_a_data_set_opened_by_the_reader_is_continued(make_napari_viewer, make_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "training"))
    monkeypatch.setattr(_case_browser, "show_info", lambda msg: None)
    viewer = make_napari_viewer()
    root, _ = make_dataset("ph2", n=3, shape=(60, 80))
    viewer.open(str(root), plugin="napari-nevus-seg")         # the first case: image + ground truth
    opened = layer_names(viewer)
    assert opened[0] == "IMD001" and len(opened) == 2
    w = CaseBrowserWidget(viewer)
    assert w.folder_edit.text() == str(root) and "case 1/3" in w.position_label.text()
    assert w.image_layer is viewer.layers["IMD001"]           # taken over, not opened a second time
    assert w.next() and layer_names(viewer) == ["IMD002", "IMD002 ground truth"]   # the reader's layers left


def test_opening_another_folder_warns_about_unsaved_corrections(browser, qtbot):
    viewer, w, root, _, notes = browser
    w.open_folder(root)
    w.segment()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    w.labels_layer.paint((10, 10), 1)
    assert w.open_folder(root) == 0                           # first attempt: a warning, nothing closed
    assert "IMD001 lesions" in layer_names(viewer)
    assert any("not in the training set" in m for f, m in notes if f == "show_warning")
    assert w.open_folder(root) == 3 and layer_names(viewer) == ["mine", "IMD001", "IMD001 ground truth"]


def test_a_late_result_never_lands_on_another_case(browser, qtbot):
    viewer, w, root, _, notes = browser
    w.open_folder(root)
    w.segment()
    assert w.next()                                           # moved on while segmenting
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert layer_names(viewer) == ["mine", "IMD002", "IMD002 ground truth"]
    assert not any(isinstance(ly, Labels) and "lesions" in ly.name for ly in viewer.layers)
    assert any("after moving on" in m for f, m in notes)


def test_bad_folders_and_images(browser, tmp_path):
    viewer, w, _, cases, notes = browser
    assert w.open_folder(tmp_path / "missing") == 0
    (tmp_path / "empty").mkdir()
    assert w.open_folder(tmp_path / "empty") == 0
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.png").write_bytes(b"not an image")
    from PIL import Image as PILImage

    PILImage.fromarray(read_image(cases[1].image)).save(plain / "b.png")
    assert w.open_folder(plain) == 2                          # a plain folder of images works too
    assert any("cannot open a" in m for f, m in notes if f == "show_error")   # the corrupt one is reported
    assert w.next() and [ly.name for ly in viewer.layers if isinstance(ly, Image)] == ["mine", "b"]
    assert [f for f, m in notes if f == "show_error"]


def test_an_outline_drawn_by_hand_is_guarded_too(browser, qtbot):
    """Not only an outline the browser segmented: one the user drew ("<case> lesions") before moving on."""
    viewer, w, root, _, notes = browser
    w.open_folder(root)
    drawn = np.zeros((60, 80), np.int32)
    drawn[20:40, 30:50] = 1
    viewer.add_labels(drawn, name="IMD001 lesions")
    assert not w.next() and any("'IMD001 lesions' has corrections" in m for f, m in notes if f == "show_warning")
    w.training.add_button.click()                            # added: moving on is quiet
    notes.clear()
    assert w.next() and not any(f == "show_warning" for f, m in notes)
    viewer.add_labels(np.zeros((60, 80), np.int32), name="IMD002 lesions")   # nothing drawn: nothing to lose
    assert w.next()


def test_the_segment_widgets_settings_are_used_while_it_is_docked(browser, qtbot, monkeypatch):
    from qtpy.QtCore import Qt

    from napari_nevus_seg._napari import _segment_widget
    from napari_nevus_seg._napari._segment_widget import SegmentWidget
    from napari_nevus_seg.inference.options import SegmentOptions

    viewer, w, root, _, _ = browser
    w.open_folder(root)
    tiny = str(ModelLibrary().path("tiny"))
    assert w.options() == SegmentOptions(model=tiny)             # no Segment widget: the defaults, this model
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.model_combo.setCurrentIndex(seg.model_combo.findText("tiny"))
    seg.threshold.setValue(0.7)
    seg.largest_only.setChecked(True)
    seg.refine.setChecked(False)
    seg.device_combo.setCurrentText("cpu")
    expected = SegmentOptions(model=tiny, device="cpu", threshold=0.7, largest_only=True, refine=False)
    assert seg.options() == expected and w.options() == expected
    used, devices = [], []
    real, real_map = _segment_widget.labels_from_map, _segment_widget.network_map
    monkeypatch.setattr(_segment_widget, "labels_from_map", lambda *a, **kw: used.append(kw) or real(*a, **kw))
    monkeypatch.setattr(_segment_widget, "network_map",
                        lambda img, **kw: devices.append(kw["device"]) or real_map(img, **kw))
    qtbot.mouseClick(w.segment_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert used and all(kw["threshold"] == 0.7 and kw["largest_only"] and not kw["refine"] for kw in used)
    assert devices == ["cpu"]
    np.testing.assert_array_equal(viewer.layers["IMD001 lesions"].data,
                                  segment(read_image(w.cases[0].image), **expected.with_(
                                      model=ModelLibrary().load("tiny")).segment_kwargs()))
    viewer.window.remove_dock_widget(seg)                      # no longer docked: the browser's own defaults
    assert w.options() == SegmentOptions(model=tiny)


def test_cancel_stops_the_segmentation_and_leaves_the_case_unchanged(browser, qtbot, monkeypatch):
    import threading

    from qtpy.QtCore import Qt

    from napari_nevus_seg._napari import _segment_widget

    viewer, w, root, _, _ = browser
    w.open_folder(root)
    release = threading.Event()

    def slow_load(ref):   # holds the worker until the test has pressed Cancel
        release.wait(30)
        return ModelLibrary().load("tiny")

    monkeypatch.setattr(_segment_widget, "load_model", slow_load)
    assert not w.cancel_button.isEnabled()
    qtbot.mouseClick(w.segment_button, Qt.MouseButton.LeftButton)
    assert w.worker is not None and w.cancel_button.isEnabled() and not w.segment_button.isEnabled()
    qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    release.set()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert "Cancelled" in w.status.text()
    assert layer_names(viewer) == ["mine", "IMD001", "IMD001 ground truth"]
    assert w.segment_button.isEnabled() and not w.cancel_button.isEnabled()


def click(qtbot, button):
    from qtpy.QtCore import Qt

    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def dock(viewer, w):
    """Dock the browser and show the window, as napari does for a person (the buttons are on screen)."""
    viewer.window.add_dock_widget(w)
    viewer.window.show()


def data_set_files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_figures_and_saved_masks_through_three_cases(browser, qtbot, monkeypatch):
    """A person types the folder, then for each case clicks Segment, reads the figures, paints a correction,
    clicks Save mask and Next; coming back shows each case's figures again."""
    import re
    import time

    from qtpy.QtCore import Qt

    from napari_nevus_seg import dice, jaccard
    from napari_nevus_seg._napari import _segment_widget
    from napari_nevus_seg.io.labels import read_labels

    viewer, w, root, cases, notes = browser
    dock(viewer, w)
    before = data_set_files(root)
    qtbot.keyClicks(w.folder_edit, str(root))
    qtbot.keyClick(w.folder_edit, Qt.Key.Key_Return)
    assert w.position_label.text() == "case 1/3: IMD001" and w.lesions_label.text() == "not segmented yet"

    click(qtbot, w.save_button)                                 # nothing segmented yet: refused, nothing written
    assert "no result to save" in w.status.text()
    assert any("no result to save" in m for f, m in notes if f == "show_warning")
    masks = root.parent / f"{root.name}_nevus-seg-masks"      # beside the data set, not inside it
    assert not masks.exists()

    model = ModelLibrary().load("tiny")

    def slow_load(ref):   # the time shown is the segmentation's, model loading included
        time.sleep(0.3)
        return model

    monkeypatch.setattr(_segment_widget, "load_model", slow_load)
    scores, shown = [], {}
    for i, case in enumerate(cases):
        if i:
            click(qtbot, w.next_button)                         # saved corrections: no warning, it moves on
            assert w.position_label.text() == f"case {i + 1}/3: {case.name}"
            assert w.lesions_label.text() == "not segmented yet" and w.dice_label.text() == "–"
        click(qtbot, w.segment_button)
        qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
        lab = viewer.layers[f"{case.name} lesions"]
        np.testing.assert_array_equal(lab.data, segment(read_image(case.image), model=model))
        truth = viewer.layers[f"{case.name} ground truth"].data
        scores.append(dice(lab.data, truth))
        assert w.dice_label.text() == f"{scores[-1]:.3f} (Jaccard {jaccard(lab.data, truth):.3f})"
        assert w.lesions_label.text() == str(np.unique(lab.data[lab.data > 0]).size)
        assert re.fullmatch(r"\d+\.\d+ s", w.time_label.text()) and 0.3 <= float(w.time_label.text()[:-2]) < 60
        n = i + 1
        assert w.mean_label.text() == f"{np.mean(scores):.3f} over {n} case{'s' if n > 1 else ''}"
        shown[case.name] = (w.lesions_label.text(), w.time_label.text(), w.dice_label.text())

        lab.paint((10 + 5 * i, 12), 2 + i)                      # a correction with its own lesion number
        click(qtbot, w.save_button)
        saved = masks / f"{case.name}_lesions.tif"
        assert w.status.text() == f"Saved '{case.name} lesions' to {saved}"
        np.testing.assert_array_equal(read_labels(saved), lab.data)   # the painted layer, numbers kept
        assert (lab.data == 2 + i).any()
    assert not any("has corrections" in m for f, m in notes)
    assert sorted(p.name for p in masks.iterdir()) == [f"{c.name}_lesions.tif" for c in cases]

    for i in (1, 0):                                            # back: each case's own figures, and the mean
        click(qtbot, w.prev_button)
        assert (w.lesions_label.text(), w.time_label.text(), w.dice_label.text()) == shown[cases[i].name]
        assert w.mean_label.text() == f"{np.mean(scores):.3f} over 3 cases"
    assert data_set_files(root) == before                       # images and expert masks untouched, none added


def test_save_mask_refuses_the_data_sets_own_folders(browser, qtbot, monkeypatch, tmp_path):
    from napari_nevus_seg.io.labels import read_labels

    viewer, w, root, cases, _ = browser
    dock(viewer, w)
    before = data_set_files(root)
    w.open_folder(root)
    click(qtbot, w.segment_button)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    for chosen in (cases[0].mask.parent, cases[0].image.parent):   # the expert masks' folder, the images'
        monkeypatch.setattr(_case_browser.QFileDialog, "getExistingDirectory", lambda *a, c=chosen: str(c))
        click(qtbot, w.folder_button)
        click(qtbot, w.save_button)
        assert w.status.text().startswith("Not saved") and "holds the data set's images or expert masks" \
            in w.status.text()
    assert data_set_files(root) == before
    elsewhere = tmp_path / "my masks"
    elsewhere.mkdir()
    monkeypatch.setattr(_case_browser.QFileDialog, "getExistingDirectory", lambda *a: str(elsewhere))
    gone = tmp_path / "removed since" / "masks"                 # a folder that cannot be written: says what helps
    monkeypatch.setattr(_case_browser.QFileDialog, "getExistingDirectory", lambda *a: str(gone))
    click(qtbot, w.folder_button)
    click(qtbot, w.save_button)
    assert w.status.text().startswith("Not saved") and "choose another folder with 'Folder...'" in w.status.text()
    monkeypatch.setattr(_case_browser.QFileDialog, "getExistingDirectory", lambda *a: str(elsewhere))
    click(qtbot, w.folder_button)                               # a folder of the user's: kept for the session
    click(qtbot, w.save_button)
    np.testing.assert_array_equal(read_labels(elsewhere / "IMD001_lesions.tif"), w.labels_layer.data)
    click(qtbot, w.next_button)
    viewer.add_labels(np.ones((60, 80), np.int32), name="IMD002 lesions")   # drawn by hand, no Segment
    click(qtbot, w.save_button)
    assert (elsewhere / "IMD002_lesions.tif").is_file() and w.dice_label.text() == "–"


def test_a_case_without_expert_mask_has_no_dice(browser, qtbot):
    viewer, w, root, cases, _ = browser
    dock(viewer, w)
    cases[1].mask.unlink()
    w.open_folder(root)
    for i in range(2):
        if i:
            click(qtbot, w.next_button)
        click(qtbot, w.segment_button)
        qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert "IMD002 ground truth" not in layer_names(viewer)
    assert w.dice_label.text() == "no expert mask for this case" and w.lesions_label.text().isdigit()
    assert w.mean_label.text().endswith("over 1 case, 1 without expert mask")


def test_keyboard_shortcuts_drive_the_browser(browser, qtbot, tmp_path):
    """Shift+S segments the case, Shift+T adds the corrected pair, Shift+N and Shift+B move between cases:
    pressed on napari's canvas, as a person does."""
    from qtpy.QtCore import Qt

    viewer, w, root, cases, _ = browser
    viewer.window.add_dock_widget(w)
    w.open_folder(root)
    canvas = viewer.window._qt_viewer.canvas.native

    def press(letter):
        canvas.setFocus()
        qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{letter}"), Qt.KeyboardModifier.ShiftModifier)

    press("S")
    qtbot.waitUntil(lambda: w.worker is None and "IMD001 lesions" in viewer.layers, timeout=TIMEOUT_MS)
    lab = viewer.layers["IMD001 lesions"]
    lab.paint((2, 2), 1)                                       # a correction with the brush
    press("T")
    assert TrainingStore(tmp_path / "training").names() == ["IMD001"]
    press("N")
    assert w.position_label.text() == "case 2/3: IMD002"
    press("B")
    assert w.position_label.text() == "case 1/3: IMD001"
    press("B")                                                 # the first case: the button is off, nothing happens
    assert w.position_label.text() == "case 1/3: IMD001"
    assert "Shift+N" in w.next_button.toolTip() and "Shift+T" in w.training.add_button.toolTip()


def test_a_case_left_behind_is_freed(browser, qtbot):
    """Browsing a folder does not pile up its images: once the browser moved on from a segmented case,
    nothing holds that case's pixels (napari's activity list keeps every finished worker)."""
    import gc
    import weakref

    viewer, w, root, _cases, _ = browser
    w.open_folder(root)
    gone = weakref.ref(viewer.layers["IMD001"].data)
    w.segment_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert "IMD001 lesions" in layer_names(viewer)
    assert w.next()
    qtbot.wait(10)
    gc.collect()
    assert gone() is None
