"""The calibrated asymmetry score (outline, colour and structure asymmetry) on painted lesions, and its file.

Its agreement with the PH2 experts is cross-validated by ``benchmarks/calibrate_asymmetry.py`` (figures in
docs/measurements.md), not asserted here.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops

from napari_nevus_seg import measure, synthetic_lesion_image
from napari_nevus_seg.measurements import calibrated as mcal
from napari_nevus_seg.measurements.asymmetry import ASYMMETRY_FEATURES
from napari_nevus_seg.measurements.lesion import lesion_model_features

SKIN = (214, 166, 142)
BROWN = (150, 100, 70)
H = W = 240


def _disc():
    yy, xx = np.mgrid[:H, :W]
    return ((yy - 120) ** 2 + (xx - 120) ** 2 <= 80 ** 2).astype(np.int32)


def _teardrop():
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - 120, xx - 110)
    theta = np.arctan2(yy - 120, xx - 110)
    return (r <= 55 * (1 + 0.6 * np.cos(theta) ** 8 * (np.cos(theta) > 0))).astype(np.int32)


def _paint(labels, colour, seed=0):
    rng = np.random.default_rng(seed)
    img = np.empty((H, W, 3), float)
    img[:] = SKIN
    img[labels > 0] = np.asarray(colour, float)[labels > 0] if np.ndim(colour) == 3 else colour
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _asymmetric_image(labels):
    """Left part dark and mottled, right part light and smooth."""
    rng = np.random.default_rng(1)
    rgb = np.empty((H, W, 3), float)
    rgb[:] = BROWN
    left = np.zeros((H, W), bool)
    left[:, :100] = True
    rgb[left] = (70, 45, 35)
    rgb[left] += rng.normal(0, 18, (int(left.sum()), 1))   # coarse lightness texture on one side only
    return _paint(labels, rgb)


def test_symmetric_uniform_lesion_scores_zero():
    row = measure(_disc(), _paint(_disc(), BROWN)).iloc[0]
    assert row["asymmetry_score"] == 0 and row["asymmetry_shape_score"] == 0
    assert row["asymmetry_score_expected"] < 0.5


def test_shape_colour_and_structure_asymmetry_raise_the_score():
    uniform_disc = measure(_disc(), _paint(_disc(), BROWN)).iloc[0]
    teardrop = measure(_teardrop(), _paint(_teardrop(), BROWN)).iloc[0]
    two_tone = measure(_disc(), _asymmetric_image(_disc())).iloc[0]
    everything = measure(_teardrop(), _asymmetric_image(_teardrop())).iloc[0]
    assert teardrop["asymmetry_shape_score"] >= 1 and two_tone["asymmetry_shape_score"] == 0
    e = [r["asymmetry_score_expected"] for r in (uniform_disc, teardrop, two_tone, everything)]
    assert e[0] < e[1] < e[3] and e[0] < e[2] < e[3]
    assert everything["asymmetry_score"] == 2


def test_every_asymmetry_feature_raises_the_expected_score():
    """The shipped model never lowers the score when a lesion is more asymmetric in outline, colour or structure."""
    scorer = mcal.load_asymmetry_scorer()
    base = np.array([0.05, 0.08, 4.0, 1.0, 0.1, 0.05, 0.05, 0.02, 30.0, 15.0, 15.0])
    for i, name in enumerate(ASYMMETRY_FEATURES):
        more = base.copy()
        more[i] *= 3
        assert scorer.expected(more) > scorer.expected(base), name


def test_turning_the_image_keeps_the_score():
    labels, img = _teardrop(), _asymmetric_image(_teardrop())
    row = measure(labels, img).iloc[0]
    turned = measure(np.rot90(labels).copy(), np.rot90(img).copy()).iloc[0]
    assert turned["asymmetry_score"] == row["asymmetry_score"]
    assert turned["asymmetry_score_expected"] == pytest.approx(row["asymmetry_score_expected"], abs=0.1)


def test_without_colours_only_the_outline_score():
    labels = _teardrop()
    for image in (None, _paint(labels, BROWN).mean(axis=2).astype(np.uint8)):
        with pytest.warns(UserWarning) if image is not None else contextlib.nullcontext():
            row = measure(labels, image).iloc[0]
        assert row["asymmetry_score"] is pd.NA and np.isnan(row["asymmetry_score_expected"])
        assert row["asymmetry_shape_score"] >= 1


def test_the_score_is_the_models_on_the_features_of_the_benchmark_path():
    case = synthetic_lesion_image(seed=2, n_lesions=2, pixel_size_mm=0.02)
    t = measure(case.labels, case.image, case.pixel_size_mm).set_index("label")
    scorer = mcal.load_asymmetry_scorer()
    assert t.attrs["asymmetry_model_version"] == scorer.version and "PH2" in scorer.source
    for region in regionprops(case.labels):
        cf, af = lesion_model_features(region, case.labels, case.image, (0.02, 0.02))
        expected = scorer.expected(mcal.asymmetry_inputs(cf, af))
        assert t.loc[region.label, "asymmetry_score_expected"] == pytest.approx(expected, abs=1e-12)
        assert t.loc[region.label, "asymmetry_score"] == int(np.rint(expected))


def test_a_file_of_ones_own_and_broken_files(tmp_path):
    data = json.loads(mcal.ASYMMETRY_MODEL_PATH.read_text())
    assert data["features"] == list(ASYMMETRY_FEATURES + mcal.ASYMMETRY_COLOUR_FEATURES)
    mine = {**data, "cuts": [-50.0, -40.0], "model_version": "mine"}     # everything scores 2
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    t = measure(_disc(), _paint(_disc(), BROWN), asymmetry_model=path)
    assert t.loc[0, "asymmetry_score"] == 2 and t.attrs["asymmetry_model_version"] == "mine"
    for change, message in (({"cuts": [1.0, 0.5]}, "increase"), ({"cuts": [1.0]}, "2 finite"),
                            ({"features": data["features"][::-1]}, "made for the features"),
                            ({"weights": data["weights"][:-1]}, "11 finite"), ({"format_version": 3}, "format")):
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(mcal.ModelFileError, match=message):
            mcal.load_asymmetry_scorer(path)
