"""measure() on the 20 real PH2 cases with their expert masks (skipped when the data is absent).

Agreement with the experts is reported by ``benchmarks/ph2_agreement.py`` (and docs/measurements.md),
not asserted here: the rules are not tuned to these cases.
"""

from __future__ import annotations

import pytest

from napari_nevus_seg import iter_pairs, measure

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_ph2_expert_masks_are_measured(data_root):
    root = data_root / "ph2-adapt"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    n = 0
    for name, img, mask in iter_pairs(root):
        t = measure(mask, img)
        assert len(t) == 1, name
        row = t.iloc[0]
        assert row["area_px2"] == int(mask.sum())
        assert 0 < row["circularity"] <= 1.1
        assert 0 <= row["asymmetry_axis1"] <= row["asymmetry_axis2"] <= 1
        assert row["asymmetry_score"] in (0, 1, 2)
        assert 0 <= row["colour_count"] <= 6
        assert 0 < row["lab_L_mean"] < 100
        if not row["touches_image_edge"]:
            assert row["border_scored_sectors"] >= 6  # the band around it may leave the image
            assert row["border_contrast_dL"] > 0, name  # the skin around a pigmented lesion is lighter
        n += 1
    assert n == 20
