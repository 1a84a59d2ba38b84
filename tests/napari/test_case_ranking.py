"""The case browser's "Cases to correct first": rank a folder by the model's confidence, click through it."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_helpers import tiny_base
from PIL import Image
from qtpy.QtCore import Qt

from napari_nevus_seg import synthetic_lesion_image
from napari_nevus_seg._napari import _case_browser, _job, _shared
from napari_nevus_seg._napari._case_browser import CaseBrowserWidget
from napari_nevus_seg.model.library import ModelLibrary

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000
SHAPE = (192, 256)


@pytest.fixture
def folder(tmp_path):
    """a: a clear lesion; b: skin only; c: a faint lesion (20 % of its contrast): confidence b < c < a."""
    root = tmp_path / "cases"
    root.mkdir()
    lesion = synthetic_lesion_image(seed=3, shape=SHAPE)
    skin3 = synthetic_lesion_image(seed=3, shape=SHAPE, n_lesions=0).image
    images = {"a": synthetic_lesion_image(seed=1, shape=SHAPE).image,
              "b": synthetic_lesion_image(seed=2, shape=SHAPE, n_lesions=0).image,
              "c": (skin3 * 0.8 + lesion.image * 0.2).astype(np.uint8)}
    for name, img in images.items():
        Image.fromarray(img).save(root / f"{name}.png")
    return root


@pytest.fixture
def browser(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "training"))
    notes = []
    for mod in (_case_browser, _shared, _job):
        for fn in ("show_info", "show_error", "show_warning"):
            if hasattr(mod, fn):
                monkeypatch.setattr(mod, fn, lambda msg, fn=fn: notes.append((fn, msg)))
    viewer = make_napari_viewer(show=True)
    return viewer, CaseBrowserWidget(viewer), notes


def rows(w):
    return [w.ranking.list.item(i).text() for i in range(w.ranking.list.count())]


def click_row(qtbot, w, row):
    lst = w.ranking.list
    rect = lst.visualItemRect(lst.item(row))
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_ranking_orders_the_cases_least_confident_first(browser, folder, qtbot):
    viewer, w, _ = browser
    assert w.open_folder(folder) == 3
    assert w.position_label.text() == "case 1/3: a"
    viewer.window.add_dock_widget(w)
    assert w.isAncestorOf(w.ranking_section.toggle)                             # in the dock ...
    qtbot.waitUntil(w.ranking_section.toggle.isVisible, timeout=10_000)         # ... on screen
    assert not w.ranking.rank_button.isVisible()                                # closed at first
    qtbot.mouseClick(w.ranking_section.toggle, Qt.MouseButton.LeftButton)        # open the section
    assert w.ranking.rank_button.isVisible() and w.ranking.summary.text() == "not ranked yet"

    qtbot.mouseClick(w.ranking.rank_button, Qt.MouseButton.LeftButton)
    assert not w.segment_button.isEnabled()                # one job at a time
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    listed = rows(w)
    assert [r.split(":")[0] for r in listed] == ["b", "c", "a"]
    assert listed[0] == "b: no lesion found"
    c_dice, a_dice = (float(r.split("expected Dice ")[1][:4]) for r in listed[1:])
    assert 0.5 < c_dice < a_dice
    assert w.ranking.summary.text().startswith("3 cases ranked")

    # the case on screen stays open and is now the last of the order; Previous walks back up the list
    assert viewer.layers["a"] is w.image_layer
    assert w.position_label.text() == f"case 3/3: a (expected Dice {a_dice:.2f})"
    assert not w.next_button.isEnabled() and w.ranking.list.currentRow() == 2
    qtbot.mouseClick(w.prev_button, Qt.MouseButton.LeftButton)
    assert w.position_label.text().startswith("case 2/3: c (expected Dice")
    assert [ly.name for ly in viewer.layers] == ["c"]

    click_row(qtbot, w, 0)                                  # a click on a row opens that case
    assert [ly.name for ly in viewer.layers] == ["b"]
    assert w.position_label.text() == "case 1/3: b (no lesion found)"

    # another model: its confidences would differ, so the figures go (the order stays until ranked again)
    ModelLibrary().save(tiny_base(), "tiny")
    w.model_combo.refresh()
    w.model_combo.setCurrentIndex(w.model_combo.findText("tiny"))
    assert w.ranking.list.count() == 0 and w.position_label.text() == "case 1/3: b"
    assert w.ranking.summary.text() == "not ranked yet (another model was chosen: rank again)"


def test_another_folder_drops_the_ranking(browser, folder, qtbot, tmp_path):
    _, w, _ = browser
    w.open_folder(folder)
    w.rank()
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT_MS)
    assert w.ranking.list.count() == 3
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(synthetic_lesion_image(seed=5, shape=SHAPE).image).save(other / "z.png")
    w.open_folder(other)
    assert w.ranking.list.count() == 0 and w.ranking.summary.text() == "not ranked yet"
    assert w.position_label.text() == "case 1/1: z"
