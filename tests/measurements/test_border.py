"""Border irregularity and the eight-sector abruptness count (B) on synthetic edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_nevus_seg import measure

H = W = 400
YY, XX = np.mgrid[:H, :W]
R = np.hypot(YY - 200.3, XX - 199.6)
DISC = R <= 100
LESION, SKIN = np.array([110.0, 70, 50]), np.array([215.0, 170, 150])


def _image(alpha, seed=0):
    rng = np.random.default_rng(seed)
    img = alpha[..., None] * LESION + (1 - alpha[..., None]) * SKIN + rng.normal(0, 3, (H, W, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _row(alpha, mask=DISC, **kw):
    return measure(mask.astype(np.int32), _image(alpha), **kw).iloc[0]


def test_sharp_edge_is_abrupt_all_round():
    row = _row(DISC.astype(float))
    assert row["border_scored_sectors"] == 8
    assert row["border_abrupt_sectors"] == 8
    assert row["border_sharpness"] > 0.9
    assert row["border_contrast_dL"] > 30  # skin is much lighter than the lesion


def test_gradual_fade_is_not_abrupt():
    row = _row(ndimage.gaussian_filter(DISC.astype(float), 20))
    assert row["border_abrupt_sectors"] == 0
    assert row["border_sharpness"] < 0.5


def test_half_sharp_half_fading_gives_about_four():
    alpha = np.where(XX < 200, DISC.astype(float), ndimage.gaussian_filter(DISC.astype(float), 20))
    row = _row(alpha)
    assert 3 <= row["border_abrupt_sectors"] <= 5
    # turning the image does not change the count (sectors start at the lesion's own axis)
    rot = measure(np.rot90(DISC).astype(np.int32), np.rot90(_image(alpha), axes=(0, 1))).iloc[0]
    assert abs(int(rot["border_abrupt_sectors"]) - int(row["border_abrupt_sectors"])) <= 1


def test_invisible_edge_is_not_abrupt():
    row = _row(0.05 * DISC)  # a step of about 2 L* units
    assert abs(row["border_contrast_dL"]) < 4
    assert row["border_abrupt_sectors"] == 0


def test_lesion_filling_the_image_is_not_scored():
    full = np.ones((H, W), bool)
    row = measure(full.astype(np.int32), _image(full.astype(float))).iloc[0]
    assert row["border_scored_sectors"] == 0
    assert row["border_abrupt_sectors"] is __import__("pandas").NA
    assert bool(row["touches_image_edge"])


def test_other_lesions_are_not_taken_for_skin():
    labels = DISC.astype(np.int32)
    ring = (R > 100) & (R <= 130)
    labels[ring] = 2  # a second, darker lesion hugging the first
    alpha = (labels > 0).astype(float)
    row = measure(labels, _image(alpha)).iloc[0]
    # the first lesion has no skin around it: nothing to score
    assert row["border_scored_sectors"] == 0


def test_irregularity_smooth_versus_ragged_outline():
    phi = np.arctan2(YY - 200, XX - 200)
    ragged = R <= 100 * (1 + 0.08 * np.sin(23 * phi) + 0.05 * np.sin(41 * phi + 1))
    smooth = measure(DISC.astype(np.int32), None).iloc[0]
    rough = measure(ragged.astype(np.int32), None).iloc[0]
    assert smooth["border_fractal_dimension"] == pytest.approx(1.0, abs=0.08)
    assert rough["border_fractal_dimension"] > smooth["border_fractal_dimension"] + 0.08
    assert smooth["border_roughness"] < 0.005
    assert rough["border_roughness"] > 0.03
    assert smooth["border_convexity"] > 0.98 and rough["border_convexity"] < 0.8
    assert rough["circularity"] < 0.5
    assert smooth["circularity"] > 0.95


def test_ellipse_is_not_rough():
    # elongation and smooth lobes are shape, not border roughness
    u, v = (XX - 200) / 150, (YY - 200) / 60
    ell = u ** 2 + v ** 2 <= 1
    row = measure(ell.astype(np.int32), None).iloc[0]
    assert row["border_roughness"] < 0.005
    assert row["border_convexity"] > 0.98


def test_border_measures_describe_the_outer_outline_of_the_largest_piece():
    # holes and other pieces are no part of the border: a smooth disc with a jagged hole, or beside a
    # smaller second piece, has the border measures of the disc alone
    disc = measure(DISC.astype(np.int32), None).iloc[0]
    phi = np.arctan2(YY - 200, XX - 200)
    star_hole = R <= 40 * (1 + 0.3 * np.sin(9 * phi))
    holed = measure((DISC & ~star_hole).astype(np.int32), None).iloc[0]
    ring = measure((DISC & (R > 50)).astype(np.int32), None).iloc[0]
    two = DISC.copy()
    two[(YY - 40) ** 2 + (XX - 40) ** 2 <= 30 ** 2] = True        # a second, smaller piece
    pieces = measure(two.astype(np.int32), None).iloc[0]
    for row in (holed, ring, pieces):
        for col in ("border_convexity", "border_fractal_dimension", "border_roughness"):
            assert row[col] == pytest.approx(disc[col], abs=1e-9), col
    assert ring["border_convexity"] > 0.98                      # a ring's outline is convex
    assert holed["perimeter_px"] > disc["perimeter_px"] + 200     # the hole still counts in the perimeter


@pytest.mark.parametrize("side", [1, 3, 6])
def test_circularity_never_exceeds_one(side):
    lab = np.zeros((20, 20), np.int32)
    lab[5:5 + side, 5:5 + side] = 1
    assert 0 < measure(lab, None).iloc[0]["circularity"] <= 1.0


def _fd(mask):
    return measure(mask.astype(np.int32), None).iloc[0]["border_fractal_dimension"]


def test_fractal_dimension_does_not_depend_on_size_or_grid():
    """The same shape at 50 to 300 px radius, and a rectangle turned on the pixel grid, keep their
    box-counting dimension (the box sizes used to run from 2 px, on one axis-aligned grid: a disc gave
    1.16 at 15 px and 1.04 at 300 px, a 200x50 px rectangle 1.18 at 0 degrees and 0.97 at 45)."""
    def shape(radius, lobes=0.0):
        n = int(2.4 * radius) + 20
        y, x = np.mgrid[:n, :n] - (n / 2 - 0.5)
        return np.hypot(y, x) <= radius * (1 + lobes * np.cos(12 * np.arctan2(y, x)))

    discs = [_fd(shape(r)) for r in (50, 100, 300)]
    stars = [_fd(shape(r, 0.1)) for r in (50, 100, 300)]
    assert max(discs) - min(discs) < 0.02 and max(stars) - min(stars) < 0.03, (discs, stars)
    assert min(stars) > max(discs) + 0.02
    assert all(abs(d - 1.0) < 0.03 for d in discs)
    y, x = np.mgrid[:320, :320] - 159.5
    turned = [_fd((abs(np.cos(a) * x - np.sin(a) * y) <= 100) & (abs(np.sin(a) * x + np.cos(a) * y) <= 25))
              for a in np.radians([0, 20, 45])]
    assert max(turned) - min(turned) < 0.03, turned
    assert np.isnan(_fd(shape(20)))   # under ~64 px across: too few box sizes to fit a dimension
