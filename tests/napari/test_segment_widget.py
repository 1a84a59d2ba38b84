"""The "Segment lesions" widget: results, layers, units, selection changes mid-run, cancel, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt
from small_lesion import small_lesion_in_large_frame

from napari_nevus_seg import dice, segment, synthetic_lesion_image
from napari_nevus_seg._napari import _controls
from napari_nevus_seg._napari._job import CancelToken
from napari_nevus_seg._napari._segment_widget import SegmentWidget
from napari_nevus_seg.inference.options import SegmentOptions

pytestmark = pytest.mark.gui
TIMEOUT = 120_000


@pytest.fixture
def case():
    return synthetic_lesion_image(seed=2, colours=["dark_brown", "black"])


def make_widget(viewer) -> SegmentWidget:
    w = SegmentWidget(viewer)
    w.device_combo.setCurrentText("cpu")
    return w


def run_and_wait(qtbot, widget) -> None:
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)   # as a user does
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)


def test_segments_to_labels_layer_with_scale_and_units(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    image = viewer.add_image(case.image, name="skin", rgb=True, scale=(0.02, 0.03), translate=(5, 7),
                             units=("mm", "mm"))
    w = make_widget(viewer)
    assert w.image_combo.currentText() == "skin"
    run_and_wait(qtbot, w)
    layer = viewer.layers["skin lesions"]
    assert layer is w.labels_layer and layer.data.dtype == np.int32 and layer.data.shape == case.mask.shape
    np.testing.assert_allclose(layer.scale, (0.02, 0.03))
    np.testing.assert_allclose(layer.translate, (5, 7))
    assert [str(u) for u in layer.units] == ["millimeter", "millimeter"]
    assert layer.metadata["pixel_size_mm"] == pytest.approx((0.02, 0.03))
    assert dice(layer.data > 0, case.mask) >= 0.8
    assert np.array_equal(layer.data, segment(case.image, device="cpu"))
    assert image in viewer.layers  # the image is untouched
    assert "lesion" in w.status.text()


def test_rerun_updates_the_same_layer(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    first = w.labels_layer
    first.name = "my outline"  # renamed by the user: still the result layer of this image
    w.largest_only.setChecked(True)
    w.threshold.setValue(0.3)
    run_and_wait(qtbot, w)
    labels = [ly for ly in viewer.layers if ly._type_string == "labels"]
    assert labels == [first] and first.data.max() == 1


@pytest.mark.parametrize("with_prob", [False, True])
def test_refine_checkbox_gives_the_apis_outline(make_napari_viewer, qtbot, case, with_prob, monkeypatch):
    import napari_nevus_seg.inference.pipeline as inference

    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    assert w.refine.isChecked()                      # on by default, like segment()
    w.refine.setChecked(False)
    w.with_prob.setChecked(with_prob)
    run_and_wait(qtbot, w)
    np.testing.assert_array_equal(w.labels_layer.data, segment(case.image, device="cpu", refine=False))
    w.refine.setChecked(True)
    calls = []
    real_forward = inference._forward
    monkeypatch.setattr(inference, "_forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    run_and_wait(qtbot, w)
    assert len(calls) == 0              # the refinement is applied to the kept map: no second network pass
    monkeypatch.undo()
    np.testing.assert_array_equal(w.labels_layer.data, segment(case.image, device="cpu"))
    assert ("skin lesion probability" in viewer.layers) == with_prob


def test_result_goes_to_the_layer_it_was_computed_for(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    other = synthetic_lesion_image(seed=5, n_lesions=2)
    a = viewer.add_image(case.image, name="A", rgb=True, scale=(0.5, 0.5))
    b = viewer.add_image(other.image, name="B", rgb=True)
    viewer.layers.selection.active = a
    w = make_widget(viewer)
    assert w.image_combo.currentText() == "A"
    assert w.run() is not None
    # the user moves on while it runs: selects B, renames A, and B becomes the widget's choice
    viewer.layers.selection.active = b
    a.name = "A renamed"
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    names = [ly.name for ly in viewer.layers]
    assert "A renamed lesions" in names and not any(n.startswith("B lesions") for n in names)
    result = viewer.layers["A renamed lesions"]
    np.testing.assert_allclose(result.scale, (0.5, 0.5))
    assert np.array_equal(result.data, segment(case.image, device="cpu"))
    assert w.image_combo.currentText() == "B"  # the next run is for the newly selected image


def test_a_users_layer_with_the_same_name_is_never_overwritten(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    mine = viewer.add_labels(np.full(case.mask.shape, 7, np.int32), name="skin lesions")
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    assert np.all(mine.data == 7)
    assert w.labels_layer is not mine and w.labels_layer.data.max() >= 1


def test_stack_is_segmented_plane_by_plane(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    other = synthetic_lesion_image(seed=4, n_lesions=2)
    stack = np.stack([case.image, other.image, case.image])
    viewer.add_image(stack, name="visits", rgb=True, scale=(1, 0.02, 0.02))
    w = make_widget(viewer)
    w.with_prob.setChecked(True)
    run_and_wait(qtbot, w)
    lab = viewer.layers["visits lesions"]
    assert lab.data.shape == stack.shape[:3] and lab.data.dtype == np.int32
    np.testing.assert_allclose(lab.scale, (1, 0.02, 0.02))
    assert np.array_equal(lab.data[1], segment(other.image, device="cpu"))
    assert np.array_equal(lab.data[0], lab.data[2])
    prob = viewer.layers["visits lesion probability"]
    assert prob.data.shape == stack.shape[:3] and prob.data.dtype == np.float32
    assert 0 <= prob.data.min() and prob.data.max() <= 1


def test_grayscale_and_rgba_images_are_converted(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    gray = case.image.mean(-1).astype(np.uint16) * 257  # 16-bit grayscale
    viewer.add_image(gray, name="gray")
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    lab = viewer.layers["gray lesions"]
    assert lab.data.shape == gray.shape and lab.data.max() >= 1
    assert "converted" in w.status.text()
    rgba = np.dstack([case.image, np.full(case.mask.shape, 255, np.uint8)])
    viewer.add_image(rgba, name="rgba", rgb=True)
    w.image_combo.select("rgba")
    run_and_wait(qtbot, w)
    assert np.array_equal(viewer.layers["rgba lesions"].data, segment(case.image, device="cpu"))
    viewer.add_image(np.zeros((2, 2, 64, 80), np.uint8), name="4d")   # the message names the layer's own shape
    w.image_combo.select("4d")
    run_and_wait(qtbot, w)
    assert "has shape (2, 2, 64, 80)" in w.status.text() and "4d lesions" not in viewer.layers


def test_cancel_stops_without_touching_layers(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([case.image] * 24), name="long", rgb=True)
    w = make_widget(viewer)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    assert w.worker is not None and w.cancel_button.isEnabled() and not w.run_button.isEnabled()
    qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    assert [ly.name for ly in viewer.layers] == ["long"]
    assert "Cancelled" in w.status.text()
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()


def test_bad_model_file_is_reported_and_nothing_added(make_napari_viewer, qtbot, case, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is no model")
    w = make_widget(viewer)
    w.model_combo.add_file(bad)
    assert w.model_combo.model_ref() == str(bad)
    run_and_wait(qtbot, w)
    assert [ly.name for ly in viewer.layers] == ["skin"]
    assert w.status.text().startswith("Failed") and "broken.pt" in w.status.text()
    assert w.run_button.isEnabled()


def test_runtime_error_in_the_worker_is_reported_and_the_widget_stays_usable(make_napari_viewer, qtbot, case,
                                                                            monkeypatch):
    # superqt's generator workers end silently on a RuntimeError (its sign of a deleted worker); out of GPU
    # memory, CUDA errors and DeviceUnavailableError are RuntimeErrors
    import napari_nevus_seg._napari._segment_widget as sw

    def oom(*_, **__):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    with monkeypatch.context() as m:
        m.setattr(sw, "network_map", oom)
        run_and_wait(qtbot, w)
    assert w.status.text().startswith("Failed") and "out of memory" in w.status.text()
    assert w.run_button.isEnabled() and [ly.name for ly in viewer.layers] == ["skin"]
    run_and_wait(qtbot, w)                                    # and the next run works
    assert "skin lesions" in viewer.layers


def test_rerun_over_corrections_can_be_undone(make_napari_viewer, qtbot, case, monkeypatch):
    import napari_nevus_seg._napari._layers as layers_module

    warnings = []
    monkeypatch.setattr(layers_module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    layer = w.labels_layer
    run_and_wait(qtbot, w)                                    # nothing edited: replaced quietly
    assert not warnings
    layer.paint((5, 5), 7)                                    # the user's correction
    corrected = layer.data.copy()
    assert (corrected == 7).any()
    w.threshold.setValue(0.3)
    run_and_wait(qtbot, w)
    assert w.labels_layer is layer and not (layer.data == 7).any()
    assert np.array_equal(layer.data, segment(case.image, device="cpu", threshold=0.3))
    assert len(warnings) == 1 and "Undo" in warnings[0]
    layer.undo()                                              # Ctrl+Z: the corrections are back
    assert np.array_equal(layer.data, corrected)


def test_library_models_are_offered(make_napari_viewer, tmp_path, monkeypatch):
    from napari_nevus_seg import load_model
    from napari_nevus_seg.model.library import ModelLibrary

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    ModelLibrary().save(load_model(), "clinic A")
    w = make_widget(make_napari_viewer())
    items = [w.model_combo.itemText(i) for i in range(w.model_combo.count())]
    assert items[0] == "Default" and "clinic A" in items and items[-1] == "From file…"
    assert w.model_combo.model_ref() is None
    w.model_combo.setCurrentIndex(items.index("clinic A"))
    assert w.model_combo.model_ref() == str(ModelLibrary().path("clinic A"))
    assert w.device_combo.itemText(0) == "auto" and "cpu" in [w.device_combo.itemText(i)
                                                             for i in range(w.device_combo.count())]


def test_a_chosen_model_renamed_elsewhere_is_not_silently_replaced(make_napari_viewer, tmp_path, monkeypatch):
    from napari_nevus_seg import load_model
    from napari_nevus_seg.model.library import ModelLibrary

    warned = []
    monkeypatch.setattr(_controls, "show_warning", warned.append)
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    ModelLibrary().save(load_model(), "clinic")
    w = make_widget(make_napari_viewer())
    w.model_combo.refresh()
    w.model_combo.setCurrentIndex(w.model_combo.findText("clinic"))
    chosen = w.model_combo.model_ref()
    ModelLibrary().rename("clinic", "clinic v2")             # from the command line, or another window
    w.model_combo.refresh()                                   # (opening the list refreshes it)
    assert w.model_combo.currentText() == "(missing) clinic" and w.model_combo.model_ref() == chosen
    assert warned and "gone" in warned[0]
    assert "clinic v2" in [w.model_combo.itemText(i) for i in range(w.model_combo.count())]


def test_no_image_layer_is_reported(make_napari_viewer):
    w = make_widget(make_napari_viewer())
    assert w.run() is None and w.worker is None


def test_widget_from_the_plugin_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Segment lesions")
    assert isinstance(widget, SegmentWidget)


def test_a_large_lazy_stack_is_read_a_batch_at_a_time(case, monkeypatch):
    # a dask-backed layer: the worker reads and converts BATCH planes at a time, never the whole stack
    from napari_nevus_seg._napari import _segment_widget as sw

    small = case.image[::4, ::4]
    planes = np.stack([small] * (2 * sw.BATCH + 3))
    asked, converted = [], []
    real_convert = sw.rgb_from_data

    def counting_convert(data, rgb, name):
        out = real_convert(data, rgb, name)
        converted.append(len(out) if out.ndim == 4 else 1)
        return out

    monkeypatch.setattr(sw, "rgb_from_data", counting_convert)

    class LazyStack:
        shape, dtype, ndim = planes.shape, planes.dtype, planes.ndim

        def __getitem__(self, key):
            part = planes[key]
            asked.append(len(part) if isinstance(key, slice) else 1)
            return part

        def __array__(self, *a, **k):
            raise AssertionError("the whole stack was read at once")

    steps = []
    labels, prob, _, confidence = sw.segment_layer_data(LazyStack(), True, "lazy", SegmentOptions(device="cpu"),
                                                        False, cancel=CancelToken(), progress=steps.append)
    assert steps[-1]["step"] == steps[-1]["steps"] == len(planes)
    assert len(confidence) == len(planes) and all(set(c) == {1} for c in confidence)
    assert labels.shape == planes.shape[:3] and prob is None
    assert max(asked) <= sw.BATCH and max(converted) <= sw.BATCH
    np.testing.assert_array_equal(labels[-1], segment(small, device="cpu"))


def test_closing_the_viewer_mid_run_gives_no_error(make_napari_viewer, qtbot, case):
    """napari quits the worker when its window closes; the result callbacks then find the widget gone
    (they used to raise "wrapped C/C++ object of type QLabel has been deleted")."""
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([case.image] * 24), name="long", rgb=True)
    w = make_widget(viewer)
    viewer.window.add_dock_widget(w)
    worker = w.run()
    qtbot.waitUntil(lambda: w.task.pbar is not None and w.task.pbar.n > 0, timeout=TIMEOUT)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT)
    qtbot.wait(200)   # the worker's last signals are delivered


def test_corrections_are_kept_when_the_new_result_has_another_size(make_napari_viewer, qtbot, case, monkeypatch):
    """The image was cropped in place: the edited layer cannot take the result undoably, so it stays."""
    import napari_nevus_seg._napari._layers as layers_module

    warnings = []
    monkeypatch.setattr(layers_module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    layer = w.labels_layer
    layer.paint((5, 5), 7)
    corrected = layer.data.copy()
    image.data = case.image[:300, :400]
    run_and_wait(qtbot, w)
    assert w.labels_layer is not layer and w.labels_layer.data.shape == (300, 400)
    assert layer in viewer.layers and np.array_equal(layer.data, corrected)   # the user's layer, untouched
    assert len(warnings) == 1 and "kept as it is" in warnings[0]
    run_and_wait(qtbot, w)                                    # later runs update the new result layer
    assert w.labels_layer.data.shape == (300, 400) and np.array_equal(layer.data, corrected)
    assert len([ly for ly in viewer.layers if ly.name.startswith("skin lesions")]) == 2


def test_users_feature_columns_are_kept_aside_when_resegmenting(make_napari_viewer, qtbot, case, monkeypatch):
    import pandas as pd

    import napari_nevus_seg._napari._layers as layers_module

    warnings = []
    monkeypatch.setattr(layers_module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    layer = w.labels_layer
    layer.features = pd.DataFrame({"index": [0, 1], "area_px2": [None, 100.0], "diagnosis": [None, "nevus"]})
    run_and_wait(qtbot, w)
    assert list(layer.features.columns) == ["expected_dice"]   # the old table went; the new outlines' own
    assert layer.metadata[layers_module.FEATURES_BEFORE_KEY]["diagnosis"].iloc[1] == "nevus"
    assert len(warnings) == 1 and "'diagnosis'" in warnings[0]
    layer.features = pd.DataFrame({"index": [0, 1], "area_px2": [None, 100.0]})   # measurements only: quietly
    run_and_wait(qtbot, w)
    assert len(warnings) == 1


def test_a_model_renamed_in_the_model_manager_stays_chosen_under_its_new_name(make_napari_viewer, tmp_path,
                                                                              monkeypatch):
    from napari_nevus_seg import load_model
    from napari_nevus_seg._napari._model_manager import ModelManagerPanel
    from napari_nevus_seg.model.library import ModelLibrary

    warned = []
    monkeypatch.setattr(_controls, "show_warning", warned.append)
    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    ModelLibrary().save(load_model(), "clinic")
    ModelLibrary().save(load_model(), "other")
    w = make_widget(make_napari_viewer())
    w.show()                                                  # on screen: it follows at once
    w.model_combo.refresh()
    w.model_combo.setCurrentIndex(w.model_combo.findText("clinic"))
    manager = ModelManagerPanel()
    assert manager.rename("clinic", "clinic v2")
    assert w.model_combo.currentText() == "clinic v2" and not warned     # followed, without opening the list
    assert w.model_combo.model_ref() == str(ModelLibrary().path("clinic v2"))
    assert manager.delete("other")                                          # the list follows other changes too
    assert "other" not in [w.model_combo.itemText(i) for i in range(w.model_combo.count())]


def test_options_are_the_widgets_settings(make_napari_viewer):
    viewer = make_napari_viewer()
    w = make_widget(viewer)
    assert w.options() == SegmentOptions(device="cpu", refine=True)   # the box: ticked, as the default model says
    w.threshold.setValue(0.35)
    w.tta.setChecked(True)
    w.min_size.setValue(200)
    w.largest_only.setChecked(True)
    w.refine.setChecked(False)
    w.zoom_small.setChecked(False)
    assert w.options() == SegmentOptions(model=None, device="cpu", threshold=0.35, tta=True, min_size=200,
                                         largest_only=True, refine=False, zoom_small=False)


def test_the_zoom_box_gives_a_small_lesion_its_zoomed_outline(make_napari_viewer, qtbot):
    image, truth = small_lesion_in_large_frame(seed=3)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="wide view", rgb=True)
    w = make_widget(viewer)
    assert w.zoom_small.isChecked()                   # on by default, like segment()
    run_and_wait(qtbot, w)
    np.testing.assert_array_equal(w.labels_layer.data, segment(image, device="cpu"))
    assert dice(w.labels_layer.data > 0, truth) > 0.97
    w.zoom_small.click()                              # as a user ticks it off
    assert not w.zoom_small.isChecked()
    run_and_wait(qtbot, w)
    np.testing.assert_array_equal(w.labels_layer.data, segment(image, device="cpu", zoom_small=False))
    assert dice(w.labels_layer.data > 0, truth) < 0.9 and "wide view lesions" in viewer.layers   # 0.86


def test_results_are_outlines_a_click_fills_them_and_the_expert_mask_has_its_own_colour(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-nevus-seg", "synthetic_multi")
    truth = viewer.layers["synthetic lesions ground truth"]
    np.testing.assert_allclose(truth.colormap.map(np.array([1, 2, 3])), [[1, 0, 1, 1]] * 3)   # magenta, every lesion
    assert truth.opacity < 0.5 and truth.contour == 0                                          # pigment shows through
    w = make_widget(viewer)
    w.image_combo.setCurrentText("synthetic lesions")
    run_and_wait(qtbot, w)
    result = viewer.layers["synthetic lesions lesions"]
    assert result.contour >= 2 and result.opacity == 1.0        # outlines: the pigment inside stays visible
    assert truth.contour >= 2                                    # the expert's outline beside the result's
    # bright outlines that stand out against the pigment: far from every pixel colour of the lesions
    colours = result.colormap.map(np.arange(1, int(result.data.max()) + 1))[:, :3]
    image = viewer.layers["synthetic lesions"].data[result.data > 0].reshape(-1, 3) / 255.0
    nearest = np.sqrt(((colours[:, None, :] - image[None, ::50, :]) ** 2).sum(-1)).min(axis=1)
    assert (nearest > 0.25).all(), nearest
    assert len({tuple(c) for c in colours}) == len(colours)      # lesions told apart
    w.fill.click()                                               # as a user ticks the box
    assert result.contour == 0
    w.fill.click()
    assert result.contour >= 2
    w.fill.click()
    run_and_wait(qtbot, w)                                       # a new run follows the box
    assert viewer.layers["synthetic lesions lesions"].contour == 0


def test_each_lesion_gets_its_expected_dice_and_doubtful_outlines_are_named(make_napari_viewer, qtbot,
                                                                             monkeypatch):
    from napari_nevus_seg.inference import confidence

    viewer = make_napari_viewer()
    viewer.open_sample("napari-nevus-seg", "synthetic_multi")
    w = make_widget(viewer)
    w.image_combo.setCurrentText("synthetic lesions")
    run_and_wait(qtbot, w)
    layer = viewer.layers["synthetic lesions lesions"]
    feats = layer.features
    n = int(layer.data.max())
    assert len(feats) == n + 1 and "index" not in feats          # napari's rows: one per label value, in order
    values = feats["expected_dice"].to_numpy(dtype=float)
    assert np.isnan(values[0]) and np.all((values[1:] >= 0) & (values[1:] <= 1))
    assert "check" not in w.status.text()                        # crisp synthetic outlines: nothing to check
    monkeypatch.setattr(confidence, "DEFAULT_CALIBRATION", {"raw": [0, 1], "dice": [0.5, 0.5]})
    run_and_wait(qtbot, w)
    assert "check lesion 1 (expected Dice 0.50)" in w.status.text()
    assert "expected_dice" in viewer.layers["synthetic lesions lesions"].features.columns


def test_a_new_threshold_reuses_the_probability_map(make_napari_viewer, qtbot, case, monkeypatch):
    """Typing a new threshold and clicking Segment outlines from the kept map: the network does not run again,
    and the result is what a full run at that threshold gives. Another model or device does run it."""
    from napari_nevus_seg.inference import pipeline

    calls = []
    forward = pipeline._forward
    monkeypatch.setattr(pipeline, "_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    viewer = make_napari_viewer()
    viewer.add_image(case.image, name="skin", rgb=True)
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    assert len(calls) == 1
    w.threshold.clear()
    qtbot.keyClicks(w.threshold, "0.3")            # typed, as a person does
    qtbot.keyClick(w.threshold, Qt.Key.Key_Enter)
    assert w.threshold.value() == pytest.approx(0.3)
    w.with_prob.setChecked(True)
    run_and_wait(qtbot, w)
    assert len(calls) == 1                          # no network run
    assert "from the last probability map" in w.status.text()
    want, want_prob = segment(case.image, device="cpu", threshold=0.3, return_proba=True)
    np.testing.assert_array_equal(viewer.layers["skin lesions"].data, want)
    np.testing.assert_allclose(viewer.layers["skin lesion probability"].data, want_prob, atol=1e-6)
    w.tta.setChecked(True)                          # the map depends on TTA: the network runs
    run_and_wait(qtbot, w)
    assert len(calls) > 1
    np.testing.assert_array_equal(viewer.layers["skin lesions"].data,
                                  segment(case.image, device="cpu", threshold=0.3, tta=True))
    viewer.layers["skin"].data = case.image.copy()  # new pixels: the network runs again
    w.tta.setChecked(False)
    before = len(calls)
    run_and_wait(qtbot, w)
    assert len(calls) == before + 1


def test_the_refine_box_follows_the_chosen_model(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A model fine-tuned on unrefined outlines unticks the box when chosen (the user may tick it again),
    and the result is what that choice gives."""
    from napari_nevus_seg import load_model
    from napari_nevus_seg.model.library import ModelLibrary
    from napari_nevus_seg.training.loop import init_from

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    loose = init_from(load_model())
    loose.meta["refine"] = False
    ModelLibrary().save(loose, "loose outlines")
    viewer = make_napari_viewer()
    viewer.add_image(synthetic_lesion_image(seed=2).image, name="skin", rgb=True)
    w = make_widget(viewer)
    assert w.refine.isChecked()
    w.model_combo.setCurrentIndex(w.model_combo.findText("loose outlines"))   # as a choice in the list
    assert not w.refine.isChecked()
    run_and_wait(qtbot, w)
    np.testing.assert_array_equal(viewer.layers["skin lesions"].data,
                                  segment(viewer.layers["skin"].data, device="cpu", refine=False))
    w.model_combo.setCurrentIndex(w.model_combo.findText("Default"))
    assert w.refine.isChecked()


def test_a_conditioned_model_shows_its_outline_conventions(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Choosing a model of several outline conventions shows them (hidden for the default model); choosing
    one sets the refinement box as that convention says, and Segment draws it."""
    from conditioned import conditioned_default

    from napari_nevus_seg.model.library import ModelLibrary

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    ModelLibrary().save(conditioned_default(), "two conventions")
    viewer = make_napari_viewer()
    img = synthetic_lesion_image(seed=4, shape=(192, 256)).image
    viewer.add_image(img, name="skin", rgb=True)
    w = make_widget(viewer)
    assert w.convention.isHidden() and w.options().convention is None
    w.model_combo.setCurrentIndex(w.model_combo.findText("two conventions"))   # as a choice in the list
    combo = w.convention.combo
    assert not w.convention.isHidden()
    assert [combo.itemText(i) for i in range(combo.count())] == ["loose", "tight"]
    assert combo.itemData(0, Qt.ItemDataRole.ToolTipRole) == "a little outside the pigment"
    assert combo.currentText() == "tight" and w.refine.isChecked()    # the model's stored convention
    combo.setCurrentIndex(combo.findText("loose"))
    assert not w.refine.isChecked()                                    # "loose" is not refined
    run_and_wait(qtbot, w)
    model = ModelLibrary().load("two conventions")
    loose = segment(img, model=model, convention="loose", device="cpu")
    np.testing.assert_array_equal(viewer.layers["skin lesions"].data, loose)
    combo.setCurrentIndex(combo.findText("tight"))
    assert w.refine.isChecked()                         # "tight" is refined ...
    w.refine.setChecked(False)                          # ... unless the user says otherwise
    run_and_wait(qtbot, w)                              # the kept map was the other convention's: run again
    assert "last probability map" not in w.status.text()
    tight = segment(img, model=model, convention="tight", refine=False, device="cpu")
    assert not np.array_equal(loose, tight)
    np.testing.assert_array_equal(viewer.layers["skin lesions"].data, tight)
    w.model_combo.setCurrentIndex(w.model_combo.findText("Default"))
    assert w.convention.isHidden() and w.options().convention is None and w.refine.isChecked()


def test_the_convention_row_follows_a_model_saved_again_under_its_name(make_napari_viewer, qtbot, tmp_path,
                                                                        monkeypatch):
    """The chosen library model replaced by one of a single convention (same name, e.g. a fine-tuned model
    kept over it): the row goes and Segment runs, instead of sending a convention the model does not have."""
    import os

    from conditioned import conditioned_default

    from napari_nevus_seg import load_model
    from napari_nevus_seg.model.library import ModelLibrary

    monkeypatch.setenv("NEVUS_SEG_MODEL_DIR", str(tmp_path / "models"))
    path = ModelLibrary().save(conditioned_default(), "m")
    viewer = make_napari_viewer()
    img = synthetic_lesion_image(seed=4, shape=(192, 256)).image
    viewer.add_image(img, name="skin", rgb=True)
    w = make_widget(viewer)
    w.model_combo.setCurrentIndex(w.model_combo.findText("m"))
    assert w.options().convention == "tight"
    stamp = os.stat(path).st_mtime_ns
    ModelLibrary().save(load_model(), "m", overwrite=True)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))   # a later time stamp even on a coarse clock
    w.model_combo.refresh()                             # the same entry, no change signal
    assert w.options().convention is None and w.convention.isHidden()
    run_and_wait(qtbot, w)
    np.testing.assert_array_equal(viewer.layers["skin lesions"].data, segment(img, device="cpu", refine=w.refine.isChecked()))


def test_closing_the_image_lets_its_pixels_and_kept_map_go(make_napari_viewer, qtbot):
    """The map kept for a new threshold holds the image's array and an 8-bit copy: once the user closes the
    image layer, the widget holds neither (a 24-megapixel photograph is 150 MB of them)."""
    import gc
    import weakref

    viewer = make_napari_viewer()
    pixels = synthetic_lesion_image(seed=2, shape=(256, 320)).image.copy()
    gone = weakref.ref(pixels)
    viewer.add_image(pixels, name="skin", rgb=True)
    w = make_widget(viewer)
    run_and_wait(qtbot, w)
    plane = weakref.ref(w._netmap.plane)
    del pixels
    viewer.layers.remove("skin")
    qtbot.wait(10)
    gc.collect()
    assert gone() is None and plane() is None
    other = viewer.add_image(synthetic_lesion_image(seed=3, shape=(128, 160)).image, name="other", rgb=True)
    run_and_wait(qtbot, w)                          # the widget goes on working
    assert viewer.layers["other lesions"].data.max() >= 1 and w._netmap.data is other.data


@pytest.mark.parametrize("when", ["closed during the run", "a pyramid"])
def test_a_closed_image_is_freed_when_closed_mid_run_or_multiscale(make_napari_viewer, qtbot, when):
    """The same for an image closed while it is being segmented, and for a multiscale image."""
    import gc
    import weakref

    viewer = make_napari_viewer()
    pixels = synthetic_lesion_image(seed=2, shape=(256, 320)).image.copy()
    gone = weakref.ref(pixels)
    if when == "a pyramid":
        viewer.add_image([pixels, pixels[::2, ::2]], name="skin", rgb=True, multiscale=True)
    else:
        viewer.add_image(pixels, name="skin", rgb=True)
    del pixels
    w = make_widget(viewer)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    if when == "closed during the run":
        viewer.layers.remove("skin")
    qtbot.waitUntil(lambda: w.worker is None, timeout=TIMEOUT)
    if when == "a pyramid":
        assert "skin lesions" in [ly.name for ly in viewer.layers]
        viewer.layers.remove("skin")
    else:   # no outlines without their image (they used to be added, over nothing)
        assert [ly.name for ly in viewer.layers] == [] and "closed during the run" in w.status.text()
    qtbot.wait(10)
    gc.collect()
    assert gone() is None
