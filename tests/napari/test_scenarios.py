"""Whole workflows as a person does them: open a file, click through the panels, paint, type, save.

Each runs on a synthetic image the project makes and, where ../shared/data is there, on PH2 cases.
Only real controls are used: napari's own file opening, button clicks, typing into fields, the layer
selection and the labels layer's brush.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from finetune_helpers import tiny_base
from PIL import Image
from qtpy.QtCore import Qt

from napari_nevus_seg import load_model, segment, synthetic_lesion_image
from napari_nevus_seg.model.library import ModelLibrary
from napari_nevus_seg.training.store import TrainingStore

pytestmark = pytest.mark.gui
PLUGIN = "napari-nevus-seg"
TIMEOUT_MS = 300_000


def _synthetic_files(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"lesion{i}.png"
        Image.fromarray(synthetic_lesion_image(seed=60 + i, shape=(192, 256)).image).save(path)
        paths.append(path)
    return paths


def _ph2_files(data_root, n):
    folders = sorted((data_root / "ph2-adapt" / "PH2 Dataset images").glob("IMD*"))[:n]
    if len(folders) < n:
        pytest.skip("PH2 cases not found")
    return folders


@pytest.fixture(params=["synthetic", "ph2"])
def images(request, tmp_path):
    """Three image files (or PH2 case folders) to open with napari."""
    if request.param == "synthetic":
        return _synthetic_files(tmp_path / "images", 3)
    return _ph2_files(request.getfixturevalue("data_root"), 3)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NEVUS_SEG_TRAINING_DIR", str(tmp_path / "training"))
    ModelLibrary().save(tiny_base(), "tiny")    # a small model: the scenario's training takes seconds
    return tmp_path


def click(qtbot, button):
    """A left click on a button, or on a check box's box (its centre can lie beyond its text)."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QCheckBox

    assert button.isEnabled(), button.text()
    pos = QPoint(8, button.height() // 2) if isinstance(button, QCheckBox) else button.rect().center()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=pos)


def type_into(qtbot, field, text):
    field.selectAll()
    qtbot.keyClicks(field, text)
    qtbot.keyClick(field, Qt.Key.Key_Enter)


def wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_segment_correct_add_fine_tune_keep_and_segment_again(make_napari_viewer, qtbot, env, images):
    viewer = make_napari_viewer()
    _, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
    _, ft = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune on corrections")
    seg.model_combo.setCurrentIndex(seg.model_combo.findText("tiny"))
    seg.device_combo.setCurrentText("cpu")
    painted = {}
    for path in images:
        viewer.open(str(path), plugin=PLUGIN)
        image = next(ly for ly in viewer.layers if getattr(ly, "rgb", False) and ly.name not in painted)
        viewer.layers.selection.active = image                     # the person picks the image
        click(qtbot, seg.run_button)
        wait(qtbot, seg)
        result = viewer.layers[f"{image.name} lesions"]
        h, w = result.data.shape
        before = result.data.copy()
        result.brush_size = max(4, h // 12)
        result.selected_label = 1
        spot = np.argwhere(before == 0)[len(np.argwhere(before == 0)) // 3]   # background the network left out
        result.paint(tuple(spot), 1)                               # the brush: lesion where the person sees one
        assert (result.data != before).any()                       # the correction changed the outline
        viewer.layers.selection.active = result                    # the corrected outline
        assert ft.labels_combo.layer() is result and ft.image_combo.layer() is image
        click(qtbot, ft.training.add_button)
        painted[image.name] = result.data.copy()
    store = TrainingStore(env / "training")
    assert sorted(store.names()) == sorted(painted)
    for name, _, mask in store:                                    # each saved mask is the painted layer
        np.testing.assert_array_equal(mask, painted[name] > 0)

    ft.base_combo.setCurrentIndex(ft.base_combo.findText("tiny"))
    ft.device_combo.setCurrentText("cpu")
    ft.advanced.toggle.click()
    type_into(qtbot, ft.epochs_spin.lineEdit(), "2")
    type_into(qtbot, ft.steps_spin.lineEdit(), "2")
    click(qtbot, ft.run_button)
    wait(qtbot, ft)
    assert ft.last_status == "ok" and "->" in ft.result_label.text()
    ft.name_edit.clear()
    qtbot.keyClicks(ft.name_edit, "my clinic")
    click(qtbot, ft.keep_button)
    assert "my clinic" in [e.name for e in ModelLibrary().list()]

    seg.model_combo.showPopup()                                  # the person opens the model list ...
    seg.model_combo.hidePopup()
    seg.model_combo.setCurrentIndex(seg.model_combo.findText("my clinic"))   # ... and picks the kept model
    assert seg.model_combo.currentText() == "my clinic"
    first = next(iter(painted))
    viewer.layers.selection.active = viewer.layers[first]
    click(qtbot, seg.run_button)
    wait(qtbot, seg)
    kept = load_model(ModelLibrary().path("my clinic"))
    np.testing.assert_array_equal(viewer.layers[f"{first} lesions"].data,
                                  segment(np.asarray(viewer.layers[first].data), model=kept, device="cpu"))

    # a second round from the widget: start from the kept model, fine-tune, keep under another name
    ft.base_combo.showPopup()
    ft.base_combo.hidePopup()
    ft.base_combo.setCurrentIndex(ft.base_combo.findText("my clinic"))
    click(qtbot, ft.run_button)
    wait(qtbot, ft)
    assert ft.last_status == "ok" and ft.result_label.text().startswith("my clinic -> tuned")
    ft.name_edit.clear()
    qtbot.keyClicks(ft.name_edit, "my clinic 2")
    click(qtbot, ft.keep_button)
    second = load_model(ModelLibrary().path("my clinic 2"))
    assert second.meta["fine_tune"]["base"] == "my clinic"
    # ... and a third from the command line, on the training set the widgets wrote, starting from round 2
    from napari_nevus_seg.cli.main import main

    out = env / "round3.pt"
    assert main(["train", str(env / "training"), "--init", "my clinic 2", "--out", str(out), "--epochs", "1",
                 "--device", "cpu"]) == 0
    third = load_model(out)
    assert third.meta["fine_tune"]["base"] == "my clinic 2" and third.meta["fine_tune"]["n_pairs"] == len(painted)
    assert sorted(TrainingStore(env / "training").names()) == sorted(painted)     # the set is as it was


def test_open_segment_measure_and_export_the_csv(make_napari_viewer, qtbot, tmp_path, images, monkeypatch):
    from napari_nevus_seg._napari import _measure_widget

    viewer = make_napari_viewer()
    viewer.open(str(images[0]), plugin=PLUGIN)
    image = viewer.layers[0]
    _, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lesions")
    seg.device_combo.setCurrentText("cpu")
    click(qtbot, seg.run_button)
    wait(qtbot, seg)
    result = viewer.layers[f"{image.name} lesions"]
    _, meas = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure lesions")
    viewer.layers.selection.active = result
    assert meas.labels_combo.layer() is result
    click(qtbot, meas.pixel.set_here)                           # no pixel size in a PNG/BMP: typed in
    assert meas.pixel.set_here.isChecked()
    type_into(qtbot, meas.pixel.row.lineEdit(), "0.02")
    type_into(qtbot, meas.pixel.col.lineEdit(), "0.02")
    assert meas.pixel.row.value() == meas.pixel.col.value() == 0.02
    click(qtbot, meas.run_button)
    wait(qtbot, meas)
    n = int(result.data.max())
    assert n >= 1 and meas.figures.shown()["Area"].endswith("mm²")    # the lesion's key figures in the dock
    out = tmp_path / "lesions.csv"
    monkeypatch.setattr(_measure_widget.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(out), "CSV files (*.csv)")))   # the person's choice
    click(qtbot, meas.export_button)
    table = pd.read_csv(out)
    assert len(table) == n and table["label"].tolist() == list(range(1, n + 1))
    assert (table["pixel_size_row_mm"] == 0.02).all() and (table["pixel_size_col_mm"] == 0.02).all()
    areas = np.bincount(result.data.ravel(), minlength=n + 1)[1:]
    np.testing.assert_allclose(table["area_mm2"], areas * 0.02 * 0.02, rtol=1e-9)
    assert {"max_feret_mm", "perimeter_mm"} <= set(table) and not {"max_feret_px", "perimeter_px"} & set(table)
