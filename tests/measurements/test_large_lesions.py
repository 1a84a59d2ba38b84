"""Lesions larger than the measuring budget are measured on a coarser grid: bounded memory, same answers."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from napari_nevus_seg import measure
from napari_nevus_seg.measurements import lesion

R, PX = 700, 0.01   # a disc of radius 700 px at 0.01 mm: 7 mm, 1.54 million pixels


@pytest.fixture(scope="module")
def disc_image():
    yy, xx = np.mgrid[:1600, :1600]
    inside = (yy - 800.0) ** 2 + (xx - 810.0) ** 2 < R ** 2
    labels = inside.astype(np.int32)
    rng = np.random.default_rng(0)
    img = np.empty((1600, 1600, 3), np.uint8)
    img[...] = (215, 180, 160)                                   # skin
    img[inside] = (120, 80, 55)                                  # brown lesion
    img[inside & (xx < 810)] = (60, 40, 30)                      # dark brown left half: colour asymmetry
    img = np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    return img, labels


def _measure(img, labels, budget, monkeypatch):
    monkeypatch.setattr(lesion, "MEASURE_PIXELS", budget)
    tracemalloc.start()
    try:
        table = measure(labels, img, pixel_size_mm=PX)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return table.iloc[0], peak


def test_measure_step():
    assert lesion.measure_step(4_000_000) == 1
    assert lesion.measure_step(4_000_001) == 2
    assert lesion.measure_step(64_000_000) == 4
    assert lesion.measure_step(10, budget=1) == 4


def test_a_large_lesion_is_measured_on_a_coarser_grid_with_the_same_answers(disc_image, monkeypatch):
    img, labels = disc_image
    full, full_peak = _measure(img, labels, 10 ** 9, monkeypatch)
    coarse, coarse_peak = _measure(img, labels, 250_000, monkeypatch)   # the crop (~2.1 MP) at step 3
    # exact where it can be: the pixel count, the area, the pixel size reported, the bounding box
    assert coarse["area_px2"] == full["area_px2"] == int(labels.sum())
    assert coarse["area_mm2"] == pytest.approx(math.pi * (R * PX) ** 2, rel=1e-3)
    assert (coarse["pixel_size_row_mm"], coarse["pixel_size_col_mm"]) == (PX, PX)
    assert coarse["bbox_min_row"] == full["bbox_min_row"] and coarse["bbox_max_col"] == full["bbox_max_col"]
    # the known answers of a disc, within the grid's step
    assert coarse["perimeter_mm"] == pytest.approx(2 * math.pi * R * PX, rel=0.01)
    assert coarse["max_feret_mm"] == pytest.approx(2 * R * PX, rel=0.005)
    assert coarse["major_axis_mm"] == pytest.approx(2 * R * PX, rel=0.005)
    assert coarse["centroid_row_px"] == pytest.approx(800, abs=1.5)
    assert coarse["centroid_col_px"] == pytest.approx(810, abs=1.5)
    # and what full resolution gives, for the measures without a closed form
    for col in ("solidity", "circularity", "border_convexity", "lab_L_mean", "lab_a_mean", "lab_b_mean",
                "colour_spread_dE", "colour_asymmetry_axis1_dE", "colour_asymmetry_axis2_dE"):
        assert coarse[col] == pytest.approx(full[col], rel=0.02, abs=0.05), col   # (0.05 dE: invisible)
    assert max(full["colour_asymmetry_axis1_dE"], full["colour_asymmetry_axis2_dE"]) > 10   # the halves differ
    assert coarse["colour_count"] == full["colour_count"]
    assert coarse_peak < full_peak / 3   # the point of it: memory follows the budget, not the lesion
