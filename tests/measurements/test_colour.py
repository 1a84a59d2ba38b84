"""Dermoscopic colours, CIE Lab statistics and colour asymmetry on synthetic patches with known colours.

The shares and the fixed reference rule (``colour_rule="reference"``) are tested here; the calibrated
detector (the default) in ``test_colour_detector.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.color import rgb2lab

from napari_nevus_seg import measure
from napari_nevus_seg.measurements.colour import COLOUR_NAMES, REFERENCE_SETS

SKIN = (214, 166, 142)
H = W = 200


def _disc():
    yy, xx = np.mgrid[:H, :W]
    return ((yy - 100) ** 2 + (xx - 100) ** 2 <= 70 ** 2).astype(np.int32)


def _paint(labels, colour_of_pixel, noise=3.0, seed=0):
    rng = np.random.default_rng(seed)
    img = np.empty((H, W, 3), float)
    img[:] = SKIN
    img[labels > 0] = colour_of_pixel[labels > 0]
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _found(row):
    return {c for c in COLOUR_NAMES if row[f"colour_{c}"] is not pd.NA and bool(row[f"colour_{c}"])}


@pytest.mark.parametrize("ref_set", sorted(REFERENCE_SETS))
@pytest.mark.parametrize("colour", COLOUR_NAMES)
def test_each_reference_colour_found_and_only_it(ref_set, colour):
    labels = _disc()
    rgb = np.broadcast_to(np.array(REFERENCE_SETS[ref_set][colour], float), (H, W, 3))
    row = measure(labels, _paint(labels, rgb), reference_colours=ref_set, colour_rule="reference").iloc[0]
    assert _found(row) == {colour}
    assert row["colour_count"] == 1
    assert row[f"share_{colour}"] > 0.95


def test_three_colour_lesion_gives_exactly_those_three():
    labels = _disc()
    yy, xx = np.mgrid[:H, :W]
    ang = np.degrees(np.arctan2(yy - 100, xx - 100)) % 360
    ref = REFERENCE_SETS["normalised_rgb"]
    rgb = np.empty((H, W, 3), float)
    rgb[ang < 120] = ref["light_brown"]
    rgb[(ang >= 120) & (ang < 240)] = ref["dark_brown"]
    rgb[ang >= 240] = ref["blue_gray"]
    row = measure(labels, _paint(labels, rgb), colour_rule="reference").iloc[0]
    assert _found(row) == {"light_brown", "dark_brown", "blue_gray"}
    assert row["colour_count"] == 3
    for c in ("light_brown", "dark_brown", "blue_gray"):
        assert row[f"share_{c}"] == pytest.approx(1 / 3, abs=0.03)


@pytest.mark.parametrize("share,present", [(0.03, False), (0.08, True)])
def test_minimum_share_of_five_percent(share, present):
    labels = _disc()
    ref = REFERENCE_SETS["normalised_rgb"]
    rgb = np.empty((H, W, 3), float)
    rgb[:] = ref["light_brown"]
    inside = np.flatnonzero(labels.ravel())
    k = int(round(share * inside.size))
    rgb.reshape(-1, 3)[inside[:k]] = ref["black"]  # the first k lesion pixels (top rows) are black
    row = measure(labels, _paint(labels, rgb), colour_rule="reference").iloc[0]
    assert row["share_black"] == pytest.approx(share, abs=0.005)
    assert bool(row["colour_black"]) is present
    assert row["colour_count"] == 1 + present


def test_far_colours_stay_unassigned_and_custom_references():
    labels = _disc()
    rgb = np.broadcast_to(np.array([40.0, 200.0, 40.0]), (H, W, 3))  # green: no dermoscopic colour
    row = measure(labels, _paint(labels, rgb)).iloc[0]
    assert row["colour_count"] == 0
    assert sum(row[f"share_{c}"] for c in COLOUR_NAMES) == pytest.approx(0.0)
    assert row["share_unassigned"] == pytest.approx(1.0)
    row = measure(labels, _paint(labels, rgb), reference_colours={"red": (40, 200, 40)}, colour_rule="reference").iloc[0]
    assert _found(row) == {"red"}
    for bad in ({"purple": (1, 2, 3)}, {"red": (1, 2)}, {"red": (300, 0, 0)}, "no_such_set", {}):
        with pytest.raises(ValueError):
            measure(labels, _paint(labels, rgb), reference_colours=bad)


def test_lab_mean_and_spread():
    labels = _disc()
    colour = np.array([150.0, 100.0, 70.0])
    row = measure(labels, _paint(labels, np.broadcast_to(colour, (H, W, 3)), noise=0)).iloc[0]
    lab = rgb2lab(colour[None, None] / 255.0)[0, 0]
    assert [row["lab_L_mean"], row["lab_a_mean"], row["lab_b_mean"]] == pytest.approx(lab.tolist(), abs=0.01)
    assert row["lab_L_std"] == pytest.approx(0.0, abs=1e-6) and row["colour_spread_dE"] == pytest.approx(0.0, abs=1e-6)
    two = np.empty((H, W, 3), float)
    two[:, :100] = (150, 100, 70)
    two[:, 100:] = (60, 40, 30)
    row2 = measure(labels, _paint(labels, two, noise=0)).iloc[0]
    lab2 = rgb2lab(np.array([[[60, 40, 30]]], float) / 255.0)[0, 0]
    half_distance = np.linalg.norm(lab - lab2) / 2
    assert row2["colour_spread_dE"] == pytest.approx(half_distance, rel=0.02)
    assert row2["lab_L_std"] == pytest.approx(abs(lab[0] - lab2[0]) / 2, rel=0.02)


def test_colour_asymmetry_sees_a_two_tone_lesion():
    labels = _disc()
    uniform = measure(labels, _paint(labels, np.broadcast_to(np.array([150.0, 100, 70]), (H, W, 3)))).iloc[0]
    assert max(uniform["colour_asymmetry_axis1_dE"], uniform["colour_asymmetry_axis2_dE"]) < 1.0
    two = np.empty((H, W, 3), float)
    two[:, :100] = (150, 100, 70)
    two[:, 100:] = (60, 40, 30)
    row = measure(labels, _paint(labels, two)).iloc[0]
    # one axis splits the two tones (large difference), the other cuts both in half (none)
    hi = max(row["colour_asymmetry_axis1_dE"], row["colour_asymmetry_axis2_dE"])
    lo = min(row["colour_asymmetry_axis1_dE"], row["colour_asymmetry_axis2_dE"])
    assert hi > 15 and lo < 2
    assert row["asymmetry_shape_score"] == 0  # the shape is still a disc
    # the calibrated score sees the colours: higher for the two-tone disc than for the uniform one
    assert row["asymmetry_score_expected"] > uniform["asymmetry_score_expected"] + 0.3


def test_no_image_leaves_colour_columns_empty():
    t = measure(_disc(), None)
    row = t.iloc[0]
    assert np.isnan(row["lab_L_mean"]) and np.isnan(row["share_white"]) and np.isnan(row["border_sharpness"])
    assert row["colour_count"] is __import__("pandas").NA
    assert row["area_px2"] > 0


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_synthetic_lesions_colours_match_what_was_painted(seed):
    from napari_nevus_seg import synthetic_lesion_image

    case = synthetic_lesion_image(seed=seed, n_lesions=2, pixel_size_mm=0.02)
    t = measure(case.labels, case.image, case.pixel_size_mm, colour_rule="reference")
    assert len(t) == 2
    for i, row in t.iterrows():
        assert _found(row) == set(case.colours[i]), (i, case.colours[i], _found(row))


@pytest.mark.parametrize("look", ["dermoscopy", "bluish", "dim"])
def test_shares_add_up_to_one_on_synthetic_images(look):
    from napari_nevus_seg import synthetic_lesion_image

    names = [f"share_{c}" for c in COLOUR_NAMES] + ["share_unassigned"]
    for seed in (0, 5):
        case = synthetic_lesion_image(seed=seed, n_lesions=2, pixel_size_mm=0.02, look=look)
        t = measure(case.labels, case.image, case.pixel_size_mm)
        assert len(t) == 2
        np.testing.assert_allclose(t[names].sum(axis=1).to_numpy(float), 1.0, atol=1e-9)
        assert (t[names] >= 0).all().all()


def test_pixels_near_no_reference_are_the_unassigned_share():
    labels = _disc()
    ref = REFERENCE_SETS["normalised_rgb"]
    rgb = np.empty((H, W, 3), float)
    rgb[:] = ref["dark_brown"]
    rgb[:, 100:] = (40, 200, 40)                                 # green: no dermoscopic colour
    row = measure(labels, _paint(labels, rgb, noise=0), colour_rule="reference").iloc[0]
    right = (labels[:, 100:] > 0).sum() / (labels > 0).sum()
    assert row["share_unassigned"] == pytest.approx(right, abs=1e-9)
    assert row["share_dark_brown"] == pytest.approx(1 - right, abs=1e-9)
    assert "colour_unassigned" not in row.index                # not a colour: never counted in C
    assert row["colour_count"] == 1
    no_image = measure(labels, None).iloc[0]
    assert np.isnan(no_image["share_unassigned"])
