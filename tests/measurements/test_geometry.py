"""Size and shape of shapes with known answers, at several (and anisotropic) pixel sizes."""

from __future__ import annotations

import numpy as np
import pytest
from measure_shapes import disc, ellipse, ellipse_perimeter, rectangle

from napari_nevus_seg import measure

PIXEL_SIZES = [0.01, 0.02, 0.04, (0.02, 0.03), (0.03, 0.015)]


def _one(mask, spacing):
    table = measure(mask.astype(np.int32), None, pixel_size_mm=spacing)
    assert len(table) == 1
    return table.iloc[0]


def _px(spacing):
    return float(np.max(spacing))


def _close(value, truth, rel=0.02):
    return abs(value - truth) <= rel * truth


# name, builder(spacing), area, perimeter, max Feret, min Feret  (mm)
SHAPES = [
    ("disc r1.2", lambda s: disc(1.2, s), np.pi * 1.2 ** 2, 2 * np.pi * 1.2, 2.4, 2.4),
    ("disc r3.5", lambda s: disc(3.5, s), np.pi * 3.5 ** 2, 2 * np.pi * 3.5, 7.0, 7.0),
    ("ellipse 2x1 at 30", lambda s: ellipse(2.0, 1.0, 30, s), 2 * np.pi, ellipse_perimeter(2.0, 1.0), 4.0, 2.0),
    ("ellipse 1.5x0.9 at 75", lambda s: ellipse(1.5, 0.9, 75, s), np.pi * 1.35, ellipse_perimeter(1.5, 0.9), 3.0, 1.8),
    ("square 2 at 0", lambda s: rectangle(2.0, 2.0, 0, s), 4.0, 8.0, 2 * np.sqrt(2), 2.0),
    ("square 2 at 20", lambda s: rectangle(2.0, 2.0, 20, s), 4.0, 8.0, 2 * np.sqrt(2), 2.0),
    ("rectangle 3x1.2 at 35", lambda s: rectangle(3.0, 1.2, 35, s), 3.6, 8.4, np.hypot(3, 1.2), 1.2),
    ("rectangle 4x1.6 at 110", lambda s: rectangle(4.0, 1.6, 110, s), 6.4, 11.2, np.hypot(4, 1.6), 1.6),
]


@pytest.mark.parametrize("spacing", PIXEL_SIZES, ids=str)
@pytest.mark.parametrize("name,build,area,perimeter,max_feret,min_feret", SHAPES, ids=[s[0] for s in SHAPES])
def test_size_known_answers(name, build, area, perimeter, max_feret, min_feret, spacing):
    row = _one(build(spacing), spacing)
    assert _close(row["area_mm2"], area), (row["area_mm2"], area)
    assert _close(row["perimeter_mm"], perimeter), (row["perimeter_mm"], perimeter)
    assert abs(row["max_feret_mm"] - max_feret) <= _px(spacing), (row["max_feret_mm"], max_feret)
    assert abs(row["min_feret_mm"] - min_feret) <= _px(spacing), (row["min_feret_mm"], min_feret)
    assert row["min_feret_mm"] <= row["max_feret_mm"]
    assert _close(row["equivalent_diameter_mm"], 2 * np.sqrt(area / np.pi))
    s = np.broadcast_to(np.asarray(spacing, float), (2,))
    assert row["area_px2"] == pytest.approx(row["area_mm2"] / (s[0] * s[1]))


def test_axes_eccentricity_and_shape_indices():
    s = 0.02
    e = _one(ellipse(2.0, 1.0, 30, s), s)
    assert e["major_axis_mm"] == pytest.approx(4.0, rel=0.02)
    assert e["minor_axis_mm"] == pytest.approx(2.0, rel=0.02)
    assert e["eccentricity"] == pytest.approx(np.sqrt(1 - 0.25), abs=0.01)
    assert e["orientation_deg"] == pytest.approx(30.0, abs=1.0)
    assert e["max_feret_angle_deg"] == pytest.approx(30.0, abs=2.0)
    d = _one(disc(1.5, s), s)
    assert d["eccentricity"] < 0.05
    assert d["circularity"] == pytest.approx(1.0, abs=0.03)
    assert d["solidity"] > 0.98
    sq = _one(rectangle(2.0, 2.0, 20, s), s)
    assert sq["circularity"] == pytest.approx(np.pi / 4, rel=0.03)
    rect = _one(rectangle(4.0, 1.0, 0, s), s)
    assert rect["circularity"] == pytest.approx(4 * np.pi * 4.0 / 10.0 ** 2, rel=0.03)
    assert rect["solidity"] > 0.99


def test_anisotropic_pixels_agree_with_square_pixels():
    iso = _one(ellipse(2.0, 1.2, 40, 0.01), 0.01)
    for spacing in [(0.01, 0.025), (0.03, 0.012)]:
        ani = _one(ellipse(2.0, 1.2, 40, spacing), spacing)
        for col in ("area_mm2", "perimeter_mm", "max_feret_mm", "min_feret_mm", "major_axis_mm", "minor_axis_mm"):
            assert ani[col] == pytest.approx(iso[col], rel=0.02), col
        assert ani["eccentricity"] == pytest.approx(iso["eccentricity"], abs=0.02)
        assert ani["orientation_deg"] == pytest.approx(40.0, abs=2.0)
        assert ani["asymmetry_axis2"] < 0.04


def test_pixel_units_when_pixel_size_unknown():
    mask = disc(30.0, (1.0, 1.0))  # radius 30 px
    table = measure(mask, None)
    assert "perimeter_px" in table and "perimeter_mm" not in table and "area_mm2" not in table
    row = table.iloc[0]
    assert row["perimeter_px"] == pytest.approx(2 * np.pi * 30, rel=0.02)
    assert abs(row["max_feret_px"] - 60) <= 1
    assert row["area_px2"] == pytest.approx(np.pi * 900, rel=0.02)
    assert row["diameter_gt_6mm"] is pd_na()


def pd_na():
    import pandas as pd

    return pd.NA


@pytest.mark.parametrize("radius,expected", [(3.5, True), (2.5, False)])
def test_six_millimetre_flag(radius, expected):
    row = _one(disc(radius, 0.05), 0.05)
    assert bool(row["diameter_gt_6mm"]) is expected


def test_touching_edge_and_centroid():
    lab = np.zeros((100, 120), np.int32)
    lab[0:40, 30:90] = 4
    lab[60:80, 70:100] = 2
    t = measure(lab, None)
    assert t["label"].tolist() == [2, 4]
    assert t["touches_image_edge"].tolist() == [False, True]
    assert t.loc[0, "centroid_row_px"] == pytest.approx(69.5)
    assert t.loc[0, "centroid_col_px"] == pytest.approx(84.5)
    assert t.loc[1, ["bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col"]].tolist() == [0, 30, 40, 90]
    assert t.loc[1, "perimeter_px"] == pytest.approx(200, rel=0.02)  # the side on the image edge counts


def test_solidity_is_regionprops_own():
    """solidity's convex area is counted from the outline's hull, row by row: the same pixels as
    scikit-image's area_convex (which tests each pixel of the bounding box) on lesions, scattered pixels,
    lines and single pixels."""
    from skimage.measure import regionprops

    from napari_nevus_seg import synthetic_lesion_image

    rng = np.random.default_rng(0)
    masks = [synthetic_lesion_image(seed=s, shape=(200, 260), n_lesions=1 + s % 3).labels > 0 for s in range(4)]
    masks += [rng.random((40, 50)) < 0.1 for _ in range(10)]
    for cells in ([(5, slice(3, 15))], [(5, 5)], [(slice(3, 10), slice(3, 10))]):
        m = np.zeros((20, 20), bool)
        for cell in cells:
            m[cell] = True
        masks.append(m)
    masks[-1][3:10, 3:10] = np.eye(7, dtype=bool)          # a diagonal line
    for m in masks:
        row = measure(m.astype(np.int32), None).iloc[0]
        assert row["solidity"] == pytest.approx(regionprops(m.astype(np.uint8))[0].solidity, abs=1e-12)


@pytest.mark.parametrize("angle", [0, 17, 30, 45, 90, 137])
def test_greatest_diameter_direction_of_an_ellipse(angle):
    """On an ellipse's rounded ends many vertex pairs are as long as each other to a pixel: the direction
    is their mean, on the axis (the single longest pair lay up to 2.6 degrees off for 200 x 100 px)."""
    s = 0.01
    row = _one(ellipse(1.0, 0.5, angle, s), s)          # 200 x 100 px
    assert abs((row["max_feret_angle_deg"] - angle + 90) % 180 - 90) < 1.5
