"""The fine-tuning widget in a viewer: add corrected outlines, fine-tune, see before/after, keep or discard."""

from __future__ import annotations

import re

import numpy as np
import pytest
from finetune_helpers import cases, tiny_base
from qtpy.QtCore import Qt

from napari_nevus_seg._napari import _finetune_widget, _job, _model_manager, _shared
from napari_nevus_seg._napari._finetune_widget import FineTuneWidget
from napari_nevus_seg._napari._job import CancelToken
from napari_nevus_seg.model.library import ModelLibrary
from napari_nevus_seg.training.finetune_defaults import DEFAULTS
from napari_nevus_seg.training.store import TrainingStore

pytestmark = pytest.mark.gui
TIMEOUT_MS = 300_000


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Library and training folder in tmp_path; the tiny synthetic model saved as "tiny"; notifications caught."""
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "training"))
    ModelLibrary().save(tiny_base(), "tiny")
    notes = []
    for mod in (_finetune_widget, _shared, _model_manager, _job):
        for fn in ("show_info", "show_error", "show_warning"):
            if hasattr(mod, fn):
                monkeypatch.setattr(mod, fn, lambda msg, fn=fn: notes.append((fn, msg)))
    return tmp_path, notes


def make_widget(make_napari_viewer, n_pairs: int, look: str = "bluish"):
    viewer = make_napari_viewer()
    w = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(w)
    for i, c in enumerate(cases(range(200, 200 + n_pairs), look)):
        viewer.add_image(c.image, name=f"case{i}", rgb=True)
        viewer.add_labels(c.labels, name=f"case{i} lesions")
        w.image_combo.select(f"case{i}")
        w.labels_combo.select(f"case{i} lesions")
        w.training.add_button.click()
    w.base_combo.refresh()
    w.base_combo.setCurrentIndex(w.base_combo.findText("tiny"))
    w.device_combo.setCurrentText("cpu")
    return viewer, w


def ft_names(model):
    return model.meta["fine_tune"]["holdout_names"]


def test_add_fine_tune_keep(make_napari_viewer, qtbot, env):
    tmp_path, notes = env
    viewer, w = make_widget(make_napari_viewer, 5)
    # every pair was written at once, into the default training folder
    assert w.training.count_label.text() == "5 pairs in the training set"
    store = TrainingStore(tmp_path / "training")
    assert store.names() == [f"case{i}" for i in range(5)]
    np.testing.assert_array_equal(store.load()[1][3], viewer.layers["case3 lesions"].data != 0)

    w.epochs_spin.setValue(2)
    w.steps_spin.setValue(3)
    w.run_button.click()
    assert w.worker is not None and not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.last_status == "ok", notes
    ft = w.pending.meta["fine_tune"]
    assert ft["n_pairs"] == 5 and ft["n_holdout"] == 1 and ft["base"] == "tiny"
    assert ft["settings"]["epochs"] == 2 and ft["settings"]["steps_per_epoch"] == 3
    # before/after Dice are shown as computed
    shown = [float(x) for x in re.findall(r"\d\.\d{3}", w.result_label.text())[:2]]
    assert shown == [round(ft["before_dice"], 3), round(ft["after_dice"], 3)]
    assert w.keep_button.isEnabled() and w.discard_button.isEnabled()
    # the held-out pair, outlined before and after, side by side in the dock; its Dice are the report's
    assert not w.example.isHidden() and not w.example.picture.pixmap().isNull()
    assert w.example.picture.pixmap().width() == 340
    ex = w.example.example
    assert ex.name == ft["holdout_names"][0] == f"case{ft['holdout_index'][0]}"
    assert (ex.before_dice, ex.after_dice) == (ft["before_per_pair"][0], ft["after_per_pair"][0])
    assert f"before {ex.before_dice:.3f} (left), after {ex.after_dice:.3f} (right)" in w.example.caption.text()
    qtbot.mouseClick(w.example.open_button, Qt.MouseButton.LeftButton)
    shown_layer = viewer.layers[f"{ex.name}: before | after"]
    assert shown_layer.rgb and shown_layer.data.shape == (60, 2 * 80 + 8, 3)
    np.testing.assert_array_equal(shown_layer.data, ex.picture())

    assert w.keep("scope A") == "scope A"
    assert [e.name for e in ModelLibrary().list()] == ["scope A", "tiny"]
    assert ModelLibrary().list()[0].meta["fine_tune"]["after_dice"] == ft["after_dice"]
    assert "scope A" in w.models.names()
    assert w.base_combo.findText("scope A") >= 0              # selectable as a base (and in Segment)
    assert w.pending is None and not w.keep_button.isEnabled()


def test_discard_and_cancel_change_nothing(make_napari_viewer, qtbot, env):
    _, w = make_widget(make_napari_viewer, 3)            # 3 pairs: no hold-out, no early stop
    w.epochs_spin.setValue(400)
    w.run_button.click()
    qtbot.waitUntil(lambda: w.status_label.text().startswith("step"), timeout=TIMEOUT_MS)
    w.cancel_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)   # stops within seconds, not 400 epochs
    assert w.last_status == "cancelled" and w.pending is None
    assert "'tiny'" in w.status_label.text()
    assert ModelLibrary().names() == ["tiny"]
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()

    w.epochs_spin.setValue(1)
    w.steps_spin.setValue(2)
    w.run_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.last_status == "ok" and w.pending is not None
    assert not w.example.isHidden()
    w.discard_button.click()
    assert w.pending is None and "discarded" in w.result_label.text()
    assert w.example.isHidden() and w.example.example is None
    assert ModelLibrary().names() == ["tiny"]


@pytest.mark.parametrize("how", ["dock removed", "napari quits the worker"])
def test_training_stops_when_the_widget_is_removed_or_the_window_closes(make_napari_viewer, qtbot, env, how):
    viewer, w = make_widget(make_napari_viewer, 3)
    w.epochs_spin.setValue(400)
    w.run_button.click()
    qtbot.waitUntil(lambda: w.status_label.text().startswith("step"), timeout=TIMEOUT_MS)
    worker = w.worker
    if how == "dock removed":
        viewer.window.remove_dock_widget(w)                 # no closeEvent comes: only setParent(None)
    else:   # what closing the window does: napari cancels its registered tasks with worker.quit()
        viewer.window._task_status_manager.cancel_all()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)   # stops within seconds, not 400 epochs
    assert worker.abort_requested or w.last_status == "cancelled"
    assert w.last_status == "cancelled" and w.pending is None and ModelLibrary().names() == ["tiny"]
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()


def test_corrected_labels_bring_their_image_and_a_mismatch_is_refused(make_napari_viewer, qtbot, env):
    from napari_nevus_seg._napari._layers import add_or_update_labels

    _, notes = env
    viewer, w = make_widget(make_napari_viewer, 0)
    c0, c1 = cases([300, 301], "bluish")
    a = viewer.add_image(c0.image, name="A", rgb=True)
    viewer.add_image(c1.image, name="B", rgb=True)
    la = add_or_update_labels(viewer, "A lesions", c0.labels, like=a)
    viewer.add_points(name="marks")
    w.labels_combo.select("A lesions")
    assert w.image_combo.layer() is a                       # the image the outline was segmented from
    w.image_combo.select("B")                               # same size, another image: refused
    w.training.add_button.click()
    assert len(w.training.store) == 0
    assert any("segmented from another image" in m for f, m in notes if f == "show_error")
    w.image_combo.select("A")
    w.training.add_button.click()
    assert len(w.training.store) == 1 and la in viewer.layers


def test_bad_pairs_and_empty_set_are_reported(make_napari_viewer, qtbot, env):
    tmp_path, notes = env
    viewer = make_napari_viewer()
    w = FineTuneWidget(viewer)
    w.training.set_folder(tmp_path / "elsewhere")
    w.run_button.click()
    assert w.worker is None and any("empty" in m for f, m in notes if f == "show_error")
    c = cases([1])[0]
    viewer.add_image(c.image, name="img", rgb=True)
    viewer.add_labels(c.labels[:-4], name="wrong size")
    w.image_combo.select("img")
    w.labels_combo.select("wrong size")
    w.training.add_button.click()
    assert any("same size" in m or "is 80x56" in m for f, m in notes if f == "show_error"), notes
    assert len(TrainingStore(tmp_path / "elsewhere")) == 0
    assert [ly.name for ly in viewer.layers] == ["img", "wrong size"]     # nothing lost
    # an empty outline is stored (healthy skin is a valid example) with a warning the user sees
    viewer.add_labels(np.zeros(c.labels.shape, np.int32), name="nothing drawn")
    w.labels_combo.select("nothing drawn")
    w.training.add_button.click()
    assert len(TrainingStore(tmp_path / "elsewhere")) == 1
    assert any("mask is empty" in m for f, m in notes if f == "show_warning"), notes


def test_model_manager_rename_delete_export_import(make_napari_viewer, env):
    tmp_path, notes = env
    viewer = make_napari_viewer()
    w = FineTuneWidget(viewer)
    panel = w.models
    assert panel.names() == ["tiny"]
    assert panel.rename("tiny", "tiny 2") and panel.names() == ["tiny 2"]
    assert w.base_combo.findText("tiny 2") >= 0
    assert panel.export("tiny 2", tmp_path / "out.pt") and (tmp_path / "out.pt").is_file()
    assert panel.delete("tiny 2") and panel.names() == []
    assert panel.import_file(tmp_path / "out.pt") and panel.names() == ["out"]
    assert not panel.rename("out", "a/b")                     # refused with a message, nothing changed
    assert panel.names() == ["out"] and any("rename" in m for f, m in notes if f == "show_error")


def test_scores_on_training_pairs_are_never_called_held_out(make_napari_viewer, env):
    # with 3 pairs (none held out) the warning said "worse ... on the held-out pairs" and the Saved models
    # tooltip "held-out Dice"; adding the first pair said "(1 pairs in ...)"
    _, notes = env
    _, w = make_widget(make_napari_viewer, 1)
    assert any(f == "show_info" and "(1 pair in " in m for f, m in notes), notes
    model = tiny_base()
    model.meta["fine_tune"] = {"base": "tiny", "n_pairs": 3, "n_train": 3, "n_holdout": 0, "before_dice": 0.9,
                               "after_dice": 0.85, "improved": False, "worse": True, "scored_on": "training pairs",
                               "seconds": 1.0, "date": "2026-01-01"}
    w._set_pending(model)
    warned = [m for f, m in notes if f == "show_warning"]
    assert len(warned) == 1 and "held-out" not in warned[0] and "3 training pairs" in warned[0], warned
    assert w.keep_button.text() == "Keep anyway"
    assert w.keep("mine") == "mine"
    tip = w.models.list_widget.item(w.models.names().index("mine")).toolTip()
    assert "held-out" not in tip and "3 training pairs, optimistic" in tip and "0.900 -> 0.850" in tip, tip
    # a tiny drop is no measurable change: no warning, no "Keep anyway"
    model.meta["fine_tune"].update(after_dice=0.8999)
    w._set_pending(model)
    assert len([m for f, m in notes if f == "show_warning"]) == 1 and w.keep_button.text() == "Keep"
    assert "no measurable change" in w.result_label.text()


def test_the_widget_reads_pairs_from_disk_when_used_and_names_a_bad_pair_by_its_files(tmp_path, monkeypatch, env):
    # the widget's job loaded the whole training set into memory (the CLI reads pairs lazily) and named a
    # bad pair only by its number
    from PIL import Image

    from napari_nevus_seg.io.images import read_image
    from napari_nevus_seg.training import store as training_store

    store = TrainingStore(tmp_path / "big")
    for i, c in enumerate(cases(range(200, 206), "bluish")):
        store.add(c.image, c.labels, f"p{i}")
    live = []

    class Tracked(np.ndarray):   # counts how many read images are alive at once
        def __del__(self):
            if live:
                live.pop()

    def reader(path):
        live.append(1)
        assert len(live) <= 3, "images piled up in memory"
        return read_image(path).view(Tracked)

    monkeypatch.setattr(training_store, "read_image", reader)
    options = {"device": "cpu", "epochs": 1, "steps_per_epoch": 1}
    model, example = _finetune_widget.fine_tune_job(str(store.folder), str(ModelLibrary().path("tiny")), options,
                                                    cancel=CancelToken())
    assert example.name in ft_names(model)
    ft = model.meta["fine_tune"]
    assert ft["holdout_names"] == [f"p{i}" for i in ft["holdout_index"]]    # the pairs' names in the folder
    # a mask that no longer fits its image (edited by hand): the message names both files
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(store.mask_dir / "p3.png")
    with pytest.raises(Exception, match="does not match") as raised:
        _finetune_widget.fine_tune_job(str(store.folder), str(ModelLibrary().path("tiny")), options,
                                       cancel=CancelToken())
    exc = raised.value
    assert f"image {store.image_dir / 'p3.png'}, mask {store.mask_dir / 'p3.png'}" in str(exc), exc


def test_a_kept_model_shows_at_once_in_the_other_model_lists(make_napari_viewer, qtbot, env):
    # Keep saved the model but the Segment widget's and the case browser's lists showed it only once opened
    from napari_nevus_seg._napari._controls import ModelChoice

    _, w = make_widget(make_napari_viewer, 1)
    elsewhere = ModelChoice()                     # the model list of a Segment widget on screen
    qtbot.addWidget(elsewhere)
    elsewhere.show()
    assert elsewhere.findText("kept") < 0
    model = tiny_base()
    model.meta["fine_tune"] = {"base": "tiny", "n_pairs": 5, "n_holdout": 1, "before_dice": 0.8, "after_dice": 0.9,
                               "scored_on": "held-out pairs", "seconds": 1.0, "date": "2026-01-01"}
    w._set_pending(model)
    assert w.keep("kept") == "kept"
    assert elsewhere.findText("kept") >= 0


def test_a_new_run_while_a_result_waits_disables_keep_and_says_what_happens_to_it(make_napari_viewer, qtbot, env):
    # Keep stayed enabled during a second run (and would have saved the earlier model under a blank result);
    # when the run ended, the earlier result was replaced without a word
    _, notes = env
    _, w = make_widget(make_napari_viewer, 3)
    earlier = tiny_base()
    earlier.meta["fine_tune"] = {"base": "tiny", "n_pairs": 3, "n_holdout": 0, "before_dice": 0.8,
                                 "after_dice": 0.9, "scored_on": "training pairs", "seconds": 1.0,
                                 "date": "2026-01-01"}
    w._set_pending(earlier)
    shown = w.result_label.text()
    w.epochs_spin.setValue(400)
    w.run_button.click()
    assert not w.keep_button.isEnabled() and not w.discard_button.isEnabled()
    assert w.keep("too early") is None and ModelLibrary().names() == ["tiny"]
    assert any(f == "show_warning" and "not kept" in m and "replaces it" in m for f, m in notes), notes
    qtbot.waitUntil(lambda: w.status_label.text().startswith("step"), timeout=TIMEOUT_MS)
    w.cancel_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    # cancelled: the earlier result is back, to keep or discard
    assert w.pending is earlier and w.keep_button.isEnabled() and w.result_label.text() == shown
    w.epochs_spin.setValue(1)
    w.steps_spin.setValue(1)
    w.run_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.last_status == "ok" and w.pending is not None and w.pending is not earlier
    assert sum(f == "show_warning" and "not kept" in m for f, m in notes) == 2
    assert w.keep_button.isEnabled() and w.keep("second") == "second"


def test_corrected_labels_are_the_segmentation_not_the_ground_truth(make_napari_viewer, qtbot, env, tmp_path):
    # the plugin's reader opens a PH2 case with its expert mask; "Corrected labels" chose that ground truth,
    # did not follow the selection, and "Add to training set" stored the expert's mask
    from qtpy.QtCore import Qt

    from napari_nevus_seg._napari._layers import add_or_update_labels
    from napari_nevus_seg._napari._reader import napari_get_reader
    from napari_nevus_seg.io.synthetic import dataset_folder

    (case,) = dataset_folder(tmp_path / "ph2", "ph2", n=1, shape=(60, 80))
    viewer = make_napari_viewer()
    folder = str(case.image.parents[1])                      # the PH2 case folder IMDxxx
    for data, kwargs, kind in napari_get_reader(folder)(folder):   # as napari opens it: image and ground truth
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    image = next(ly for ly in viewer.layers if ly.__class__.__name__ == "Image")
    truth = next(ly for ly in viewer.layers if ly.name.endswith("ground truth"))
    w = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w.labels_combo.layer() is truth and "ground-truth layer" in w.status_label.text()   # the only one
    assert "segment the image first" in w.status_label.text()   # no result to choose yet: what to do instead
    corrected = np.zeros(truth.data.shape, np.int32)
    corrected[10:30, 20:50] = 1
    result = add_or_update_labels(viewer, f"{image.name} lesions", corrected, like=image)
    assert w.labels_combo.layer() is result and "ground-truth" not in w.status_label.text()
    viewer.layers.selection.active = truth                   # the user selects the ground truth: followed, warned
    assert w.labels_combo.layer() is truth and "ground-truth layer" in w.status_label.text()
    assert "choose the result layer" in w.status_label.text()
    viewer.layers.selection.active = result
    assert w.labels_combo.layer() is result and w.image_combo.layer() is image
    qtbot.mouseClick(w.training.add_button, Qt.MouseButton.LeftButton)
    store = w.training.store
    assert len(store) == 1
    np.testing.assert_array_equal(store.load()[1][0], corrected > 0)          # the correction, not the truth
    # a Fine-tune widget opened after segmenting starts on the result, even with the ground truth selected
    viewer.layers.selection.active = truth
    w2 = FineTuneWidget(viewer)
    assert w2.labels_combo.layer() is result


def click(qtbot, button):
    from qtpy.QtCore import Qt

    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def docked(make_napari_viewer, qtbot):
    """The widget docked in a shown napari window 1000 px tall (a laptop screen)."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 1000)
    w = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(w)
    qtbot.wait(50)
    return viewer, w


def test_the_dock_fits_a_1000_px_screen(make_napari_viewer, qtbot, env):
    # the dock asked for 723 px (at least 660): taller than napari's dock area on a 1000 px screen
    _, w = docked(make_napari_viewer, qtbot)
    assert not w.advanced.expanded() and not w.epochs_spin.isVisible() and not w.models.isVisible()
    assert w.run_button.isVisible() and w.base_combo.isVisible()      # what a run needs is on screen
    assert w.sizeHint().height() <= 600 and w.minimumSizeHint().height() <= 600
    click(qtbot, w.advanced.toggle)                                  # the settings, one click away
    assert w.advanced.expanded() and w.epochs_spin.isVisible() and w.adapt_spin.isVisible()
    assert w.sizeHint().height() <= 700
    click(qtbot, w.saved_models.toggle)                             # everything open still fits the dock area
    assert w.models.isVisible() and w.minimumSizeHint().height() <= 850
    click(qtbot, w.advanced.toggle)
    assert not w.epochs_spin.isVisible()


def test_the_plainly_named_settings_drive_fine_tuning(make_napari_viewer, qtbot, env, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QLabel

    viewer, w = docked(make_napari_viewer, qtbot)
    for i, c in enumerate(cases(range(200, 203), "bluish")):
        viewer.add_image(c.image, name=f"case{i}", rgb=True)
        viewer.add_labels(c.labels, name=f"case{i} lesions")
        w.training.add_button.click()
    w.base_combo.refresh()
    w.base_combo.setCurrentIndex(w.base_combo.findText("tiny"))
    texts = {lab.text() for lab in w.findChildren(QLabel)}
    assert {"Start from:", "Run on:", "Training rounds:", "Steps per round:", "Adapt to your images:",
            "Corrected outline:"} <= texts
    assert not any("blend" in t.lower() or "epoch" in t.lower() or "encoder" in t.lower() for t in texts)
    assert w.freeze_encoder.text() == "Train the outlining part only"
    assert "starting model" in w.adapt_spin.toolTip() and "100 %" in w.adapt_spin.toolTip()
    assert w.adapt_spin.text() == "50 %" and w.options()["blend"] == pytest.approx(DEFAULTS["blend"]) == 0.5
    assert w.options()["replay"] == DEFAULTS["replay"] == 20 and "Practice images:" in texts

    click(qtbot, w.advanced.toggle)
    for spin, value in ((w.adapt_spin, "100"), (w.epochs_spin, "1"), (w.steps_spin, "2")):
        spin.selectAll()
        qtbot.keyClicks(spin, value)                                  # typed, as a person does
        qtbot.keyClick(spin, Qt.Key.Key_Tab)
    w.device_combo.setCurrentText("cpu")
    qtbot.mouseClick(w.freeze_encoder, Qt.MouseButton.LeftButton)
    calls = []
    real = _finetune_widget.fine_tune
    monkeypatch.setattr(_finetune_widget, "fine_tune", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    click(qtbot, w.run_button)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.last_status == "ok"
    (kw,) = calls
    assert kw["blend"] == 1.0 and kw["freeze_encoder"] is True and kw["epochs"] == 1 and kw["steps_per_epoch"] == 2
    assert kw["device"] == "cpu" and kw["lr"] == pytest.approx(3e-4)
    settings = w.pending.meta["fine_tune"]["settings"]
    assert settings["blend"] == 1.0 and settings["freeze_encoder"] is True


def test_fine_tuning_a_conditioned_model_teaches_the_convention_chosen_for_segmenting(make_napari_viewer, qtbot,
                                                                                      env):
    """The corrected outlines follow the convention the Segment widget drew them in: fine-tuning the same
    model trains that convention, and the tuned model draws it (not the model's stored one)."""
    from conditioned import conditioned_default

    from napari_nevus_seg._napari._segment_widget import SegmentWidget

    _, notes = env
    ModelLibrary().save(conditioned_default(), "two conventions")
    viewer, w = make_widget(make_napari_viewer, 4)
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.model_combo.setCurrentIndex(seg.model_combo.findText("two conventions"))
    seg.convention.combo.setCurrentIndex(seg.convention.combo.findText("loose"))
    w.base_combo.refresh()
    w.base_combo.setCurrentIndex(w.base_combo.findText("two conventions"))
    w.epochs_spin.setValue(1)
    w.steps_spin.setValue(1)
    w.replay_spin.setValue(0)
    w.run_button.click()
    assert "(outline convention loose)" in w.status_label.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.last_status == "ok", notes
    assert w.pending.convention_name == "loose" and w.pending.conventions == ("loose", "tight")
    seg.model_combo.setCurrentIndex(seg.model_combo.findText("Default"))   # another model: its own convention
    w.base_combo.setCurrentIndex(w.base_combo.findText("two conventions"))
    w.run_button.click()
    assert "outline convention" not in w.status_label.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.pending.convention_name == "tight"
