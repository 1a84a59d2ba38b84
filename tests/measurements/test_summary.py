"""A lesion's key figures as text: the numbers shown are the table's, rounded; missing figures say why."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from napari_nevus_seg import measure, synthetic_lesion_image
from napari_nevus_seg.measurements.summary import FIGURE_HELP, key_figures, number, percent


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


@pytest.fixture(scope="module")
def case():
    return synthetic_lesion_image(seed=3, n_lesions=2, pixel_size_mm=0.02)


def test_number_and_percent_formats():
    assert [number(v) for v in (12.345, 0.012345, 1234.5, 2.0, 0.0)] == ["12.3", "0.0123", "1234", "2.00", "0"]
    assert percent(0.623) == "62\u00a0%" and percent(0.0734, 1) == "7.3\u00a0%"


def test_key_figures_are_the_tables_numbers(case):
    table = measure(case.labels, case.image, case.pixel_size_mm)
    for _, row in table.iterrows():
        shown = dict(key_figures(row))
        assert list(shown) == ["Area", "Max. diameter", "Asymmetry A", "Border B", "Colours C"]
        assert set(shown) <= set(FIGURE_HELP)
        assert numbers(shown["Area"])[0] == pytest.approx(row["area_mm2"], rel=5e-3) and "mm²" in shown["Area"]
        feret = row["max_feret_mm"]
        assert numbers(shown["Max. diameter"])[0] == pytest.approx(feret, rel=5e-3)
        assert ("> 6" in shown["Max. diameter"]) == (feret > 6)
        score, of, a1, a2, expected = numbers(shown["Asymmetry A"])   # "1 of 2 (outline 3.1 %, 12.0 % ...; expected 0.84)"
        assert (score, of) == (row["asymmetry_score"], 2)
        assert [a1, a2] == pytest.approx([100 * row["asymmetry_axis1"], 100 * row["asymmetry_axis2"]], abs=0.051)
        assert expected == pytest.approx(row["asymmetry_score_expected"], abs=0.0051)
        abrupt, scored, convexity = numbers(shown["Border B"])
        assert (abrupt, scored) == (row["border_abrupt_sectors"], row["border_scored_sectors"])
        assert convexity == pytest.approx(row["border_convexity"], abs=0.006)
        text = shown["Colours C"].replace("\u00a0", " ")   # no-break spaces keep "light brown 59 %" together
        # "2: light brown, dark brown; pixels: light brown 59 %, ..., unassigned 9 %; not assessed: red"
        counted, pixels, unassessed = text.split("; ")
        assert numbers(counted)[0] == row["colour_count"] and pixels.startswith("pixels: ")
        assert unassessed == "not assessed: red" and row["colour_red"] is pd.NA
        for c in ("white", "light_brown", "dark_brown", "blue_gray", "black"):
            name = "blue-gray" if c == "blue_gray" else c.replace("_", " ")
            assert (name in counted) == bool(row[f"colour_{c}"])
        _check_shares(row, pixels)


def _check_shares(row, text):
    for c in ("white", "red", "light_brown", "dark_brown", "blue_gray", "black"):
        name = "blue-gray" if c == "blue_gray" else c.replace("_", " ")
        listed = re.search(rf"{name} (\d+) %", text)
        assert (listed is not None) == (row[f"share_{c}"] >= 0.005)
        if listed:
            assert float(listed.group(1)) == pytest.approx(100 * row[f"share_{c}"], abs=0.51)
    unassigned = re.search(r"unassigned (\d+) %", text)
    assert float(unassigned.group(1)) == pytest.approx(100 * row["share_unassigned"], abs=0.51)
    shares = numbers(text.replace("under 5 %:", ""))    # every share shown: 100 %, but for rounding
    assert sum(shares) == pytest.approx(100, abs=0.5 * len(shares) + 0.5 * (7 - len(shares)))


def test_key_figures_of_the_reference_rule(case):
    table = measure(case.labels, case.image, case.pixel_size_mm, colour_rule="reference")
    for _, row in table.iterrows():
        text = dict(key_figures(row))["Colours C"].replace("\u00a0", " ")
        counted = text.split("; ")[0]                 # "2: light brown 59 %, ..." then traces, then unassigned
        assert numbers(counted)[0] == row["colour_count"]
        for c in ("white", "red", "light_brown", "dark_brown", "blue_gray", "black"):
            name = "blue-gray" if c == "blue_gray" else c.replace("_", " ")
            assert (re.search(rf"{name} ", counted) is not None) == bool(row[f"colour_{c}"])
        _check_shares(row, text[text.index(":") + 1:])
    assert "under 5\u00a0%: black\u00a02\u00a0%" in dict(key_figures(table.iloc[1]))["Colours C"]   # lesion 2's trace


def test_without_pixel_size_image_or_colour(case):
    row = measure(case.labels, None).iloc[0]
    shown = dict(key_figures(row))
    assert shown["Area"].startswith(f"{int(row['area_px2'])}\u00a0px²") and "px" in shown["Max. diameter"]
    assert "not measured (no image)" in shown["Colours C"] and "not measured" in shown["Border B"]
    assert shown["Asymmetry A"].startswith(f"{row['asymmetry_shape_score']} of 2 axes, outline only (")
    assert row["asymmetry_score"] is pd.NA        # the calibrated score needs the colours
    grey = measure(case.labels, case.image.mean(axis=2).astype(np.uint8)).iloc[0]
    assert dict(key_figures(grey))["Colours C"] == "not measured (grayscale image)"


def test_expected_dice_and_notes_when_present(case):
    row = measure(case.labels, case.image, 0.02).iloc[1].to_dict()
    row.update({"expected_dice": 0.8765, "touches_image_edge": True, "pieces": 3})
    shown = dict(key_figures(row))
    assert shown["Expected Dice"] == "0.88"
    assert "image edge" in shown["Note"] and "3 separate pieces" in shown["Note"]
    row["expected_dice"] = float("nan")
    assert "Expected Dice" not in dict(key_figures(row))
