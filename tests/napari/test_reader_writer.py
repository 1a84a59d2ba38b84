"""The napari reader and writer in a real viewer (run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nevus_seg._napari import _reader, _writer
from napari_nevus_seg._napari._layers import pixel_size_mm
from napari_nevus_seg.io.labels import read_labels
from napari_nevus_seg.io.mask_files import read_mask
from napari_nevus_seg.io.synthetic import DATASET_LAYOUTS, dataset_folder, synthetic_lesion_image

pytestmark = pytest.mark.gui
PLUGIN = "napari-nevus-seg"


@pytest.fixture(scope="module")
def rgb():
    return synthetic_lesion_image(seed=4, shape=(96, 128)).image


@pytest.fixture
def notes(monkeypatch):
    """Messages the reader/writer show as napari notifications."""
    got = []
    monkeypatch.setattr(_reader, "show_info", got.append)
    monkeypatch.setattr(_reader, "show_warning", got.append)
    monkeypatch.setattr(_writer, "show_warning", got.append)
    monkeypatch.setattr(_writer, "show_error", got.append)
    return got


def _save(kind: str, rgb: np.ndarray, path):
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    if kind == "rgb":
        Image.fromarray(rgb).save(path, quality=95)
    elif kind == "gray":
        Image.fromarray(gray).save(path, quality=95)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(path)
    elif kind == "16bit":
        tifffile.imwrite(path, rgb.astype(np.uint16) * 257) if path.suffix == ".tif" else \
            Image.fromarray(gray.astype(np.uint16) * 257).save(path)


@pytest.mark.parametrize("name, kind", [
    ("a.png", "rgb"), ("a.bmp", "rgb"), ("a.jpg", "rgb"), ("a.tif", "rgb"), ("a.tiff", "rgb"),
    ("g.png", "gray"), ("g.jpg", "gray"), ("g.bmp", "gray"), ("r.png", "rgba"), ("s.tif", "16bit"),
    ("s.png", "16bit"),
])
def test_reader_opens_every_format(make_napari_viewer, tmp_path, rgb, name, kind):
    path = tmp_path / name
    _save(kind, rgb, path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1 and len(viewer.layers) == 1
    layer = viewer.layers[0]
    assert layer._type_string == "image" and layer.rgb
    assert layer.data.shape == (96, 128, 3) and layer.data.dtype == np.uint8
    assert layer.name == path.stem and layer.metadata["path"] == str(path)
    expected = rgb if kind in ("rgb", "rgba", "16bit") and path.suffix != ".png" or kind == "rgba" else None
    if kind == "16bit" and path.suffix == ".png":
        expected = np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, -1)
    if expected is not None:
        tol = 3 if path.suffix == ".jpg" else 0
        assert np.abs(layer.data.astype(int) - expected).mean() <= tol
    np.testing.assert_allclose(layer.scale, (1, 1))


def test_reader_pixel_size_from_tiff_tags(make_napari_viewer, tmp_path, rgb):
    path = tmp_path / "calibrated.tif"
    tifffile.imwrite(path, rgb, resolution=(500.0, 500.0), resolutionunit="CENTIMETER")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    layer = viewer.layers["calibrated"]
    np.testing.assert_allclose(layer.scale, (0.02, 0.02))
    assert [str(u) for u in layer.units] == ["millimeter", "millimeter"]
    assert layer.metadata["pixel_size_mm"] == pytest.approx((0.02, 0.02))


@pytest.mark.parametrize("layout", DATASET_LAYOUTS)
def test_reader_dataset_folder_opens_first_case(make_napari_viewer, tmp_path, notes, layout):
    cases = dataset_folder(tmp_path, layout, n=3, seed=20)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path), plugin=PLUGIN)
    first = cases[0]
    assert [la.name for la in viewer.layers] == [first.name, f"{first.name} ground truth"]
    image, gt = viewer.layers
    assert gt._type_string == "labels"
    assert np.array_equal(gt.data > 0, read_mask(first.mask)) and gt.data.max() == 1
    assert image.data.shape[:2] == gt.data.shape
    assert image.metadata["n_cases"] == 3 and image.metadata["dataset"] == str(tmp_path)
    assert any("Found 3 cases (3 with a ground-truth mask)" in m and "Case browser" in m for m in notes)


@pytest.mark.parametrize("layout", DATASET_LAYOUTS)
def test_reader_single_image_finds_its_mask(make_napari_viewer, tmp_path, notes, layout):
    cases = dataset_folder(tmp_path, layout, n=2, seed=30)
    viewer = make_napari_viewer()
    viewer.open(str(cases[1].image), plugin=PLUGIN)
    assert [la.name for la in viewer.layers] == [cases[1].name, f"{cases[1].name} ground truth"]
    assert np.array_equal(viewer.layers[1].data > 0, read_mask(cases[1].mask))
    assert notes == []


def test_reader_ph2_case_folder(make_napari_viewer, tmp_path, notes):
    cases = dataset_folder(tmp_path, "ph2", n=2, seed=40)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "PH2 Dataset images" / "IMD002"), plugin=PLUGIN)
    assert [la.name for la in viewer.layers] == ["IMD002", "IMD002 ground truth"]
    assert np.array_equal(viewer.layers[1].data > 0, read_mask(cases[1].mask))
    assert notes == []  # a single case: nothing to announce


def test_reader_mask_of_wrong_size_still_opens_image(make_napari_viewer, tmp_path, notes):
    cases = dataset_folder(tmp_path, "images_masks", n=1)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(cases[0].mask)
    viewer = make_napari_viewer()
    viewer.open(str(cases[0].image), plugin=PLUGIN)
    assert [la.name for la in viewer.layers] == ["case_000"]
    assert any("is 10x10 pixels but its image is 128x96" in m for m in notes)


def test_reader_returns_none_for_foreign_paths(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert _reader.napari_get_reader(str(tmp_path / "a.txt")) is None
    assert _reader.napari_get_reader(str(tmp_path / "empty")) is None
    assert _reader.napari_get_reader(str(tmp_path / "x.zarr")) is None
    assert _reader.napari_get_reader([str(tmp_path / "a.png"), str(tmp_path / "a.txt")]) is None
    assert callable(_reader.napari_get_reader(str(tmp_path / "a.png")))


# ---------------------------------------------------------------------------------------- writer
def test_writer_tif_round_trip_keeps_instances_and_scale(make_napari_viewer, tmp_path):
    case = synthetic_lesion_image(seed=5, n_lesions=3)
    viewer = make_napari_viewer()
    viewer.add_labels(case.labels, name="lesions", scale=(0.02, 0.02), units=("mm", "mm"))
    written = viewer.layers.save(str(tmp_path / "lesions.tif"), selected=True, plugin=PLUGIN)
    assert written == [str(tmp_path / "lesions.tif")]
    back = read_labels(written[0])
    assert back.dtype == np.uint16 and np.array_equal(back, case.labels)
    # and it reopens as a Labels layer with the same pixel size
    layers = viewer.open(written[0], plugin=PLUGIN)
    assert layers[0]._type_string == "labels" and np.array_equal(layers[0].data, case.labels)
    np.testing.assert_allclose(layers[0].scale, (0.02, 0.02))


@pytest.mark.parametrize(("scale", "units", "expected"), [
    ((12.5, 25.0), ("um", "micrometer"), (0.0125, 0.025)),
    ((0.002, 0.002), ("cm", "cm"), (0.02, 0.02)),
    ((0.02, 0.02), ("mm", "mm"), (0.02, 0.02)),
    ((3.0, 3.0), ("pixel", "pixel"), None),
    ((3.0, 3.0), ("px", "px"), None),
    ((3.0, 3.0), ("s", "s"), None),
])
def test_writer_pixel_size_from_any_length_unit(scale, units, expected):
    got = pixel_size_mm(scale, units)
    assert got == pytest.approx(expected) if expected else got is None


def test_writer_without_extension_saves_numbered_tif(make_napari_viewer, tmp_path):
    labels = np.zeros((40, 50), np.uint32)
    labels[5:15, 5:15], labels[20:30, 20:40] = 3, 70000
    viewer = make_napari_viewer()
    layer = viewer.add_labels(labels, name="c", scale=(0.02, 0.03), units=("mm", "mm"))
    written = layer.save(str(tmp_path / "c"), plugin=PLUGIN)
    assert written == [str(tmp_path / "c.tif")]             # napari adds the first extension listed: .tif
    assert np.array_equal(read_labels(written[0]), labels)


def test_writer_stack_says_why_and_one_plane_stack_is_saved(make_napari_viewer, tmp_path, notes):
    """napari drops a writer's ValueError ("not a valid writer"): the reason must reach the user."""
    case = synthetic_lesion_image(seed=6, shape=(64, 80))
    viewer = make_napari_viewer()
    stack = viewer.add_labels(np.stack([case.labels] * 3), name="stack")
    assert not stack.save(str(tmp_path / "stack.tif"), plugin=PLUGIN)
    assert any("is a stack (3, 64, 80)" in m and "napari builtins" in m for m in notes)
    assert not list(tmp_path.iterdir())
    one = viewer.add_labels(case.labels[None], name="one plane")
    assert one.save(str(tmp_path / "one.tif"), plugin=PLUGIN) == [str(tmp_path / "one.tif")]
    assert np.array_equal(read_labels(tmp_path / "one.tif"), case.labels)


def test_writer_png_mask_and_merge_warning(make_napari_viewer, tmp_path, notes):
    case = synthetic_lesion_image(seed=6, n_lesions=2)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(case.labels, name="two")
    written = layer.save(str(tmp_path / "two.png"), plugin=PLUGIN)
    raw = np.asarray(Image.open(written[0]))
    assert set(np.unique(raw)) == {0, 255} and np.array_equal(raw > 0, case.mask)
    assert any("2 numbered lesions merged" in m for m in notes)
    one = viewer.add_labels(case.mask.astype(np.uint8), name="one")
    notes.clear()
    one.save(str(tmp_path / "one.png"), plugin=PLUGIN)
    assert notes == [] and np.array_equal(read_mask(tmp_path / "one.png"), case.mask)
    assert _writer.write_labels(str(tmp_path / "noext"), case.labels, {}) == [str(tmp_path / "noext.tif")]


# ------------------------------------------------------------------------------------- bad files
def _bad_files(tmp_path, rgb):
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    cut = tmp_path / "cut.jpg"
    Image.fromarray(rgb).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:600])
    text = tmp_path / "text.png"
    text.write_text("not an image")
    tiny = tmp_path / "tiny.bmp"
    Image.new("RGB", (1, 1)).save(tiny)
    return {zero: "empty (0 bytes)", cut: "truncated", text: "not a PNG image", tiny: "only 1x1 pixels"}


def test_bad_files_give_clear_errors_and_keep_layers(make_napari_viewer, tmp_path, rgb):
    """Opening with the plugin chosen (as napari does after the reader dialog): a specific error,
    which napari turns into an error notification; the viewer and its layers are unharmed."""
    from napari_nevus_seg.io.files import ImageReadError

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_lesion")
    before = [la.name for la in viewer.layers]
    for path, message in _bad_files(tmp_path, rgb).items():
        with pytest.raises(ImageReadError, match=str(path.name)) as info:
            viewer.open(str(path), plugin=PLUGIN)
        assert message in str(info.value)
        assert [la.name for la in viewer.layers] == before
    ok = tmp_path / "ok.png"
    Image.fromarray(rgb).save(ok)
    viewer.open(str(ok), plugin=PLUGIN)
    assert len(viewer.layers) == len(before) + 1  # the viewer still works


def test_bad_file_dropped_in_gui_shows_message(make_napari_viewer, tmp_path, rgb, monkeypatch):
    """Drag and drop / File > Open with this plugin remembered for .png: napari catches the failure
    and shows our message in its reader dialog (here cancelled by the user)."""
    from napari._qt.dialogs import qt_reader_dialog
    from napari.settings import get_settings
    from qtpy.QtWidgets import QLabel

    shown = []

    def fake_choices(self):
        shown.extend(w.text() for w in self.findChildren(QLabel))
        return None, False  # the user cancels

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", fake_choices)
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_lesion")
    settings = get_settings().plugins
    saved = dict(settings.extension2reader)
    settings.extension2reader = {**saved, "*.png": PLUGIN}
    try:
        for path, message in _bad_files(tmp_path, rgb).items():
            if path.suffix != ".png":
                continue
            shown.clear()
            viewer.window._qt_viewer._qt_open([str(path)], stack=False)
            assert any(message in text and "ImageReadError" in text for text in shown), shown
            assert len(viewer.layers) == 2
    finally:
        settings.extension2reader = saved


@pytest.mark.data
def test_real_ph2_folder_opens_first_case(make_napari_viewer, data_root, notes):
    folder = data_root / "ph2-adapt"
    if not folder.is_dir():
        pytest.skip("ph2-adapt not present")
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin=PLUGIN)
    image, gt = viewer.layers
    assert gt.name == f"{image.name} ground truth" and image.data.shape[:2] == gt.data.shape
    assert image.metadata["n_cases"] == 20
    assert any("Found 20 cases (20 with a ground-truth mask)" in m for m in notes)


@pytest.mark.parametrize("labels_max", [3, 70000])
def test_labels_saved_by_napari_own_writer_reopen_as_labels(make_napari_viewer, tmp_path, labels_max):
    viewer = make_napari_viewer()
    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:15], labels[20:30, 20:40] = 1, labels_max
    layer = viewer.add_labels(labels, name="IMD002 lesions")
    path = tmp_path / "IMD002 lesions.tif"
    layer.save(str(path))                                   # napari's built-in writer: no plugin marker
    back = viewer.open(str(path), plugin=PLUGIN)
    assert back[0]._type_string == "labels" and np.array_equal(back[0].data, labels)


def test_the_segment_widgets_box_makes_the_plugin_naparis_reader(make_napari_viewer, qtbot, tmp_path):
    """Ticking "Open image files with this plugin" lets File > Open and a dropped file use the plugin's reader
    without asking which reader: the expert mask opens too. Unticking gives the choice back to napari."""
    from napari.settings import get_settings
    from qtpy.QtCore import QPoint, Qt

    from napari_nevus_seg._napari._reader_choice import reader_patterns
    from napari_nevus_seg._napari._segment_widget import SegmentWidget

    settings = get_settings().plugins
    settings.extension2reader = {"*.czi": "another-plugin"}      # a preference of the user's: kept
    case = dataset_folder(tmp_path, "isic_flat", n=1, seed=31)[0]
    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert not w.default_reader.isChecked()
    box = w.default_reader
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert box.isChecked()
    prefs = settings.extension2reader
    assert {p: prefs[p] for p in reader_patterns()} == dict.fromkeys(reader_patterns(), PLUGIN)
    assert prefs["*.czi"] == "another-plugin" and "*.png" in reader_patterns()
    viewer.window._qt_viewer._qt_open([str(case.image)], stack=False)   # what File > Open and a drop call
    assert [la.name for la in viewer.layers] == [case.name, f"{case.name} ground truth"]   # no dialog, both layers
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert not box.isChecked()
    assert settings.extension2reader == {"*.czi": "another-plugin"}
    assert SegmentWidget(viewer).default_reader.isChecked() is False   # a new widget shows the saved state
