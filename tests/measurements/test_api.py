"""measure(): inputs of every kind, errors, units, empty labels, progress/cancel, napari layer features."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from measure_shapes import two_lesion_scene

from napari_nevus_seg import measure
from napari_nevus_seg.measurements.table import MeasureCancelled, column_names

_scene = two_lesion_scene


def test_one_row_per_label_sorted_with_label_column():
    labels, img = _scene()
    t = measure(labels, img, 0.02)
    assert t["label"].tolist() == [2, 7]
    assert list(t.columns) == column_names("mm")
    assert t.loc[0, "area_px2"] == int((labels == 2).sum())
    assert t.loc[1, "area_mm2"] == pytest.approx((labels == 7).sum() * 0.02 ** 2)
    assert t.attrs["length_unit"] == "mm" and t.attrs["pixel_size_mm"] == (0.02, 0.02)


def test_units_in_column_names():
    labels, img = _scene()
    mm, px = measure(labels, img, 0.05), measure(labels, img)
    assert list(px.columns) == column_names("px")
    assert not any(c.endswith(("_mm", "_mm2")) for c in px.columns)
    assert px.loc[0, "perimeter_px"] * 0.05 == pytest.approx(mm.loc[0, "perimeter_mm"])
    assert px.loc[0, "max_feret_px"] * 0.05 == pytest.approx(mm.loc[0, "max_feret_mm"])
    assert px["diameter_gt_6mm"].isna().all() and mm["diameter_gt_6mm"].notna().all()


@pytest.mark.parametrize("pixel_size", [0.02, (0.02, 0.02), np.array([0.02, 0.02]), [0.02]])
def test_pixel_size_forms(pixel_size):
    labels, img = _scene()
    assert measure(labels, img, pixel_size).loc[0, "area_mm2"] == pytest.approx((labels == 2).sum() * 4e-4)


@pytest.mark.parametrize("bad", [0, -0.01, float("nan"), (0.01, 0.02, 0.03), "0.02x", (0.01, 0)])
def test_bad_pixel_size(bad):
    labels, img = _scene()
    with pytest.raises(ValueError, match="pixel_size_mm"):
        measure(labels, img, bad)


@pytest.mark.parametrize("unit", ["mm", "px"])
def test_empty_labels_give_empty_table_with_columns(unit):
    t = measure(np.zeros((50, 60), np.uint8), np.zeros((50, 60, 3), np.uint8), 0.01 if unit == "mm" else None)
    assert len(t) == 0 and list(t.columns) == column_names(unit)
    assert t["label"].dtype == np.int64 and t["area_px2"].dtype == np.int64


def test_mismatched_shapes():
    labels, img = _scene()
    with pytest.raises(ValueError, match=r"160x120.*159x120|same height and width"):
        measure(labels, img[:, :-1])


def test_image_conversions_give_the_same_measurements():
    labels, img = _scene()
    ref = measure(labels, img)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    pd.testing.assert_frame_equal(measure(labels, rgba), ref)
    img16 = img.astype(np.uint16) * 257
    pd.testing.assert_frame_equal(measure(labels, img16), ref)
    imgf = img.astype(np.float32) / 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # scales that need no guess: no warning
        pd.testing.assert_frame_equal(measure(labels, img16), ref)
        pd.testing.assert_frame_equal(measure(labels, imgf), ref)


def test_an_inferred_intensity_scale_is_announced():
    """Colours hang on the value taken as full intensity; where it is guessed from the brightest pixel,
    a warning says which. A few hot pixels in a [0, 1] float image are clipped (one pixel of 2.5 used to
    make the whole image 0..255 data: L* near 0); many values above 2 make it 0..255 data."""
    labels, img = _scene()
    ref = measure(labels, img)
    with pytest.warns(UserWarning, match=r"uint16.*full intensity at 4095 \(12-bit data\)"):
        t12 = measure(labels, img.astype(np.uint16) * 16)
    assert np.allclose(t12["lab_L_mean"], ref["lab_L_mean"], atol=1.0)
    # alpha counts in the scale as the conversion counts it: 12-bit colours beside a 16-bit opaque alpha
    # are converted as 16-bit data, and the warning must not claim 4095
    rgba16 = np.dstack([img.astype(np.uint16) * 16, np.full(img.shape[:2], 65535, np.uint16)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        measure(labels, rgba16)
    clean = img.astype(np.float32) / 255.0
    hot = clean.copy()
    hot[0, 0] = 2.5
    with pytest.warns(UserWarning, match="values above 1: colours are measured as \\[0, 1\\] data"):
        pd.testing.assert_frame_equal(measure(labels, hot), measure(labels, clean))
    hot[:, :2] = 2.5                                  # a whole strip: no longer a few hot pixels
    with pytest.warns(UserWarning, match="values above 2: colours are measured as 0..255 data"):
        t = measure(labels, hot)
    assert t["lab_L_mean"].max() < 5 < ref["lab_L_mean"].min()
    with pytest.warns(UserWarning, match="values above 1: colours are measured as \[0, 1\] data"):
        measure(labels, np.minimum(img.astype(np.float32) / 255.0 * 1.5, 1.5))


def test_grayscale_image_gives_lightness_and_border_but_no_colours():
    labels, img = _scene()
    ref = measure(labels, img)
    grey = img.mean(axis=2).astype(np.uint8)
    with pytest.warns(UserWarning, match="grayscale"):
        table = measure(labels, grey)
    with pytest.warns(UserWarning, match="grayscale"):  # grey stored as RGB, or with an alpha channel
        pd.testing.assert_frame_equal(measure(labels, np.repeat(grey[..., None], 3, axis=2)), table)
    with pytest.warns(UserWarning, match="grayscale"):
        pd.testing.assert_frame_equal(measure(labels, np.dstack([grey, np.full_like(grey, 255)])), table)
    assert table.attrs["colour_image"] is False and ref.attrs["colour_image"] is True
    assert table["area_px2"].tolist() == ref["area_px2"].tolist()
    assert table["lab_L_mean"].notna().all() and table["border_scored_sectors"].gt(0).all()
    empty = ["colour_count", "colour_spread_dE", "lab_a_mean", "lab_b_std", "colour_asymmetry_axis1_dE"]
    empty += [c for c in table.columns if c.startswith(("share_", "colour_white", "colour_black"))]
    assert table[empty].isna().all().all(), table[empty]
    assert (table["lab_L_mean"] < ref["lab_L_mean"] + 20).all()  # the lesions are dark in both


def test_black_image_without_lesions_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(measure(np.zeros((50, 60), np.uint8), np.zeros((50, 60, 3), np.uint8))) == 0


def test_labels_without_pixels_are_a_clear_error():
    with pytest.raises(ValueError, match="no pixels"):
        measure(np.zeros((0, 5), np.int32))


def test_unusable_image():
    labels, _ = _scene()
    with pytest.raises(ValueError):
        measure(labels, np.zeros((120, 160, 3, 2)))
    with pytest.raises(ValueError):
        measure(labels, np.zeros((120, 160, 5)))


def test_label_dtypes():
    labels, img = _scene()
    ref = measure(labels, img)
    for conv in (np.uint8, np.uint16, np.int64, np.uint64, np.float32, np.float64):
        pd.testing.assert_frame_equal(measure(labels.astype(conv), img), ref)
    pd.testing.assert_frame_equal(measure(labels[None], img), ref)  # (1, H, W) from a 3-D layer
    boolean = measure(labels > 0, img)
    assert boolean["label"].tolist() == [1] and boolean.loc[0, "area_px2"] == int((labels > 0).sum())


@pytest.mark.parametrize("bad,match", [
    (lambda l: l.astype(float) + 0.5, "whole numbers"),
    (lambda l: np.where(l == 2, -1, l), "negative"),
    (lambda l: np.where(l == 2, np.nan, l.astype(float)), "NaN"),
    (lambda l: l.astype(complex), "dtype"),
    (lambda l: l[0], "2-D"),
    (lambda l: np.stack([l, l]), "2-D"),
])
def test_bad_labels(bad, match):
    labels, _ = _scene()
    with pytest.raises(ValueError, match=match):
        measure(bad(labels), None)


def test_split_lesion_and_hole_are_one_label():
    labels = np.zeros((100, 100), np.int32)
    labels[10:40, 10:40] = 1
    labels[60:90, 60:90] = 1
    labels[15:35, 15:35] = 0  # a hole
    with pytest.warns(UserWarning, match="label 1 is in 2 separate pieces"):
        t = measure(labels, None)
    assert len(t) == 1 and t.loc[0, "area_px2"] == 2 * 900 - 400 and t.loc[0, "pieces"] == 2
    assert t.loc[0, "perimeter_px"] == pytest.approx(2 * 120 + 80, rel=0.03)  # the hole's outline counts


def test_a_stray_pixel_is_counted_and_named():
    """One pixel of the same label 2.3 mm away adds 1.3 mm to a 2 mm disc's greatest diameter: the table
    says the label is in two pieces and a warning names it; the pixel size is in the table (and CSV)."""
    y, x = np.mgrid[:300, :300]
    labels = (((y - 100) ** 2 + (x - 100) ** 2) <= 50 ** 2).astype(np.int32)
    labels[200:230, 200:230] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = measure(labels, None, (0.02, 0.025))
    assert list(clean["pieces"]) == [1, 1]
    assert list(clean["pixel_size_row_mm"]) == [0.02, 0.02] and list(clean["pixel_size_col_mm"]) == [0.025] * 2
    labels[100, 215] = 1
    with pytest.warns(UserWarning, match="label 1 is in 2 separate pieces") as record:
        t = measure(labels, None, 0.02)
    assert len(record) == 1 and list(t["pieces"]) == [2, 1]
    assert "pixel_size_row_mm" not in measure(labels, None).columns   # lengths in pixels: no pixel size


def test_tiny_lesions_do_not_fail():
    labels = np.zeros((40, 40), np.int32)
    labels[5, 5] = 1
    labels[10, 10:13] = 2
    labels[20:22, 20:22] = 3
    img = np.full((40, 40, 3), 200, np.uint8)
    t = measure(labels, img, 0.01)
    assert t["label"].tolist() == [1, 2, 3]
    assert t["area_px2"].tolist() == [1, 3, 4]
    assert (t["max_feret_mm"] >= t["min_feret_mm"]).all()
    assert t[["perimeter_mm", "asymmetry_axis1", "eccentricity"]].notna().all().all()


def test_progress_and_cancel():
    labels, img = _scene()
    seen = []
    measure(labels, img, progress=seen.append)
    assert [p["step"] for p in seen] == [1, 2] and all(p["steps"] == 2 for p in seen)
    ev = threading.Event()
    ev.set()
    with pytest.raises(MeasureCancelled):
        measure(labels, img, cancel=ev)


@pytest.mark.parametrize("big,dtype", [(2**62, np.int64), (2**40, np.int64), (200_000_000, np.int32),
                                       (2**63 + 5, np.uint64)])
def test_huge_label_values_are_measured_fast_and_keep_their_value(big, dtype):
    # regionprops keeps one slot per label value: 2**62 crashed the process, 2**40 ran out of memory and
    # 200_000_000 took 28 s and 8 GB; labels are renumbered first, the table keeps the user's values
    import time
    labels, img = _scene()
    ref = measure(labels, img, 0.02)
    if dtype == np.uint64 and big > np.iinfo(np.int64).max:
        with pytest.raises(ValueError, match="too large"):
            measure(np.where(labels == 7, np.uint64(big), labels.astype(np.uint64)), img)
        return
    huge = np.where(labels == 7, big, labels.astype(np.int64)).astype(dtype)
    start = time.perf_counter()
    t = measure(huge, img, 0.02)
    assert time.perf_counter() - start < 5
    assert t["label"].tolist() == [2, big] and t["label"].dtype == np.int64
    pd.testing.assert_frame_equal(t.drop(columns="label"), ref.drop(columns="label"))


def test_one_huge_label_alone_and_with_small_ones_in_order():
    labels = np.zeros((96, 128), np.int64)
    labels[30:60, 40:90] = 2**62
    t = measure(labels)
    assert t["label"].tolist() == [2**62] and t.loc[0, "area_px2"] == 30 * 50
    labels[5:15, 5:15] = 70_000
    labels[70:90, 5:25] = 1
    t = measure(labels.astype(float))  # whole-number floats too
    assert t["label"].tolist() == [1, 70_000, 2**62]
    assert t["area_px2"].tolist() == [400, 100, 1500]
    assert t.loc[2, "bbox_min_row"] == 30 and t.loc[2, "bbox_max_col"] == 90


def test_negative_labels_are_refused_not_treated_as_background():
    labels, _ = _scene()
    for value in (-1, -(2**62)):
        with pytest.raises(ValueError, match="must not be negative"):
            measure(np.where(labels == 2, value, labels.astype(np.int64)))
    with pytest.raises(ValueError, match="too large"):
        measure(np.where(labels == 2, 1e30, labels.astype(float)))


def test_measure_is_the_function():
    import napari_nevus_seg
    import napari_nevus_seg.measurements.table  # noqa: F401 - importing the module must not shadow the function

    labels, img = _scene()
    assert napari_nevus_seg.measure(labels, img)["label"].tolist() == [2, 7]


@pytest.mark.parametrize("shape", [(3, 100), (100, 4), (5, 5)])
def test_what_segment_accepts_can_be_measured_with_its_image(shape):
    """segment() takes images from 2 px a side; measure() refused the image under 8 px."""
    from napari_nevus_seg import segment

    img = np.full((*shape, 3), (200, 170, 150), np.uint8)
    labels = np.zeros(shape, np.int32)
    labels[1:3, 1:3] = 1
    img[labels > 0] = (90, 50, 30)
    assert segment(img).shape == shape
    t = measure(labels, img)
    assert t["label"].tolist() == [1] and t["area_px2"].tolist() == [4] and t["lab_L_mean"].notna().all()


@pytest.mark.parametrize("bad", [True, "0.1", 1e-30, 0.0, float("nan"), -0.02, (0.02, 0.02, 0.02)])
def test_pixel_sizes_that_are_not_sizes_are_refused(bad):
    labels, img = _scene()
    with pytest.raises(ValueError, match="pixel_size_mm must be a number of mm per pixel"):
        measure(labels, img, bad)
