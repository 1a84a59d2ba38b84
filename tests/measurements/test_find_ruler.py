"""Finding a millimetre ruler's ticks: the spacing, direction and ends of rulers drawn at known spacings
into synthetic dermoscopy images, and no answer where there is no ruler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_nevus_seg
from napari_nevus_seg import pixel_size_from_ruler, synthetic_lesion_image
from napari_nevus_seg.io.synthetic_ruler import draw_ruler
from napari_nevus_seg.measurements.ruler import RulerTicks, find_ruler

# (image shape, ruler direction in degrees, tick spacing in px, number of ticks, first tick)
RULERS = [
    ((384, 512), 0.0, 12.3, 20, (330, 40)),         # along the bottom, ticks pointing down
    ((384, 512), 90.0, 9.7, 25, (40, 470)),         # down the right edge
    ((768, 1024), 33.0, 17.25, 20, (60, 40)),       # at a slant
    ((576, 768), 0.0, 50.0, 13, (520, 70)),         # coarse ticks: found in the coarser search image
    ((3000, 4000), -12.0, 61.7, 25, (2700, 400)),   # a 12-megapixel photograph
    ((384, 512), 180.0, 6.1, 40, (350, 470)),       # fine ticks, drawn right to left
    ((1200, 1600), 60.0, 80.0, 10, (100, 300)),     # few, far apart
    ((384, 512), 45.0, 16.0, 16, (40, 60)),         # diagonal: where an unsmoothed line's staircase beats too
    ((384, 512), 26.57, 13.4, 20, (60, 40)),
]


def ruler_image(seed, shape, angle, spacing, ticks, start, **kwargs):
    skin = synthetic_lesion_image(seed=seed, shape=shape).image
    return draw_ruler(skin, start=start, spacing_px=spacing, ticks=ticks, angle_deg=angle, **kwargs)


def on_a_tick(point, start, angle, spacing) -> float:
    """How far ``point`` lies, along the ruler, from the nearest tick (in spacings)."""
    a = np.radians(angle)
    along = (point[0] - start[0]) * np.sin(a) + (point[1] - start[1]) * np.cos(a)
    return abs(along / spacing - round(along / spacing))


def same_direction(a: float, b: float) -> float:
    """Difference of two line directions in degrees, ignoring which way they run."""
    return abs((a - b + 90.0) % 180.0 - 90.0)


@pytest.mark.parametrize("seed,case", list(enumerate(RULERS)))
def test_the_tick_spacing_direction_and_ends_of_a_drawn_ruler(seed, case):
    _shape, angle, spacing, ticks, start = case
    found = find_ruler(ruler_image(seed, *case))
    assert isinstance(found, RulerTicks)
    assert found.spacing_px == pytest.approx(spacing, rel=0.003)
    assert same_direction(found.angle_deg, angle) < 1.0
    assert found.spacings >= 0.7 * (ticks - 1)             # most of the ruler, not one tile of it
    for end in (found.start, found.end):                # the line runs from a tick to a tick
        assert on_a_tick(end, start, angle, spacing) < 0.1
    assert found.length_px == pytest.approx(found.spacings * found.spacing_px, rel=1e-6)
    assert found.regularity > 0.5
    # the line, with its length in mm, gives the pixel size as a hand-drawn line would
    assert pixel_size_from_ruler(found.start, found.end, float(found.spacings)) == pytest.approx(
        found.pixel_size_mm(), rel=1e-6)
    assert found.pixel_size_mm(0.5) == pytest.approx(0.5 / spacing, rel=0.003)


@pytest.mark.parametrize("seed,shape", [(0, (384, 512)), (1, (384, 512)), (2, (768, 1024)), (3, (576, 768)),
                                        (7, (1200, 1600)), (11, (256, 341)), (4, (3000, 4000))])
def test_no_ruler_no_answer(seed, shape):
    """Skin, hair, lesions with dotted texture and the dark vignette are not a ruler."""
    assert find_ruler(synthetic_lesion_image(seed=seed, shape=shape, n_lesions=1 + seed % 3).image) is None


def test_a_grid_is_not_a_ruler():
    """A texture as regular across as along (a grid of dots) has no one direction of ticks."""
    rows, cols = np.mgrid[0:384, 0:512]
    dots = ((rows % 9 < 3) & (cols % 9 < 3)).astype(np.uint8) * 120 + 80
    assert find_ruler(dots) is None


def test_thin_ticks_give_their_spacing_not_half_of_it():
    """Thin ticks beat as strongly at twice their rhythm; the spacing found is still theirs."""
    image = ruler_image(3, (384, 512), 0.0, 20.0, 18, (320, 50), tick_width_px=1.2)
    assert find_ruler(image).spacing_px == pytest.approx(20.0, rel=0.003)


def test_any_bit_depth_and_channel_layout_gives_the_same_ruler():
    """16-bit, float [0, 1], RGBA and channels-first copies of an image are read as the 8-bit one."""
    image = ruler_image(8, (384, 512), 0.0, 14.0, 22, (330, 40))
    found = find_ruler(image)
    for other in (image.astype(np.uint16) * 257, image.astype(np.float32) / 255.0, np.moveaxis(image, -1, 0),
                  np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])):
        again = find_ruler(other)
        assert again is not None and again.spacing_px == pytest.approx(found.spacing_px, rel=1e-3)
        assert again.spacings == found.spacings


def test_scaled_maps_pixel_centres_and_the_spacing():
    ticks = RulerTicks(start=(10.0, 20.0), end=(10.0, 70.0), spacings=5, spacing_px=10.0, angle_deg=0.0,
                       regularity=0.9, band_px=4.0)
    big = ticks.scaled(4)
    assert big.start == (41.5, 81.5) and big.end == (41.5, 281.5)
    assert big.spacing_px == pytest.approx(40.0) and big.spacings == 5 and big.band_px == 16.0
    wide = ticks.scaled(2, 3)                              # a pyramid level with other row and column steps
    assert wide.spacing_px == pytest.approx(30.0) and wide.angle_deg == pytest.approx(0.0)


def test_the_search_stops_when_cancelled():
    from napari_nevus_seg.measurements.ruler import RulerSearchCancelled

    class Cancelled:
        def is_set(self):
            return True

    with pytest.raises(RulerSearchCancelled):
        find_ruler(ruler_image(9, (384, 512), 0.0, 12.0, 20, (330, 40)), cancel=Cancelled())


def test_light_ticks_on_a_dark_ruler_and_grey_images():
    dark = np.full((384, 512), 40, np.uint8)
    image = draw_ruler(dark, start=(300, 60), spacing_px=15.0, ticks=25, strip=False, tick_value=220.0)
    found = find_ruler(image)                           # (H, W) grey
    assert found.spacing_px == pytest.approx(15.0, rel=0.003)
    assert on_a_tick(found.start, (300, 60), 0.0, 15.0) < 0.1
    rgba = np.dstack([image] * 3 + [np.full_like(image, 255)])
    assert find_ruler(rgba).spacing_px == pytest.approx(found.spacing_px)


def test_bad_input_is_refused_and_tiny_images_have_no_ruler():
    with pytest.raises(ValueError, match="find_ruler needs an"):
        find_ruler(np.zeros((2, 64, 64, 3), np.uint8))
    for path in ("photo.png", Path("photo.png")):          # a file name: told how to read the pixels
        with pytest.raises(TypeError, match=r"not a file name .*read_image\(path\)"):
            find_ruler(path)
    assert find_ruler(np.zeros((40, 60, 3), np.uint8)) is None
    assert find_ruler(np.zeros((300, 400), np.uint8)) is None    # flat


def test_a_threshold_above_an_answer_s_regularity_drops_it():
    image = ruler_image(5, (384, 512), 0.0, 12.0, 20, (330, 40))
    found = find_ruler(image)
    assert found is not None
    assert find_ruler(image, min_regularity=min(1.0, found.regularity + 1e-6)) is None


def test_public_api():
    assert napari_nevus_seg.find_ruler is find_ruler
    assert napari_nevus_seg.RulerTicks is RulerTicks


def test_a_half_millimetre_ruler_gives_its_tall_ticks():
    """Ticks alternating tall and short (half millimetres): the spacing found is the tall ticks'."""
    image = ruler_image(6, (384, 512), 10.0, 9.0, 36, (300, 40), long_every=2)
    found = find_ruler(image)
    assert found.spacing_px == pytest.approx(18.0, rel=0.003)
    assert on_a_tick(found.start, (300, 40), 10.0, 18.0) < 0.1     # on a tall tick, not a short one


@pytest.mark.parametrize("angle,width,value", [(8, 2, 40), (10, 2, 40), (12, 1, 120), (15, 1, 120), (40, 1, 40)])
def test_the_pixel_staircase_of_an_unsmoothed_line_is_not_a_ruler(angle, width, value):
    """A thin straight line drawn without smoothing steps a pixel every 1 / sin(angle) pixels: a rhythm
    along a straight line, as a ruler's, but not ticks."""
    from skimage.draw import line

    rng = np.random.default_rng(0)
    image = (200 + rng.normal(0, 3, (384, 512))).clip(0, 255).astype(np.uint8)
    a = np.radians(angle)
    rr, cc = line(40, 60, int(40 + 300 * np.sin(a)), int(60 + 300 * np.cos(a)))
    for w in range(width):
        image[np.clip(rr + w, 0, 383), cc] = value
    assert find_ruler(image) is None


def test_a_batch_time_limit_stops_the_search():
    """Inside a batch run's per-image time limit, the search stops between candidates once it is spent."""
    from napari_nevus_seg.io.deadline import Deadline, TimeLimitExceeded

    image = ruler_image(3, (384, 512), 0.0, 20.0, 12, (300, 60))
    with pytest.raises(TimeLimitExceeded, match="finding the ruler"), Deadline(1e-9).running():
        find_ruler(image)
    with Deadline(600).running():
        assert find_ruler(image) is not None


def test_the_ruler_sample_is_read_from_its_first_tick_to_its_last():
    # the most regular read (the short ticks' band) covered 8 of the sample's 12 spacings; a read of the same
    # ticks across the long ticks' band reaches both ends and is now preferred (issue 21's "check by eye")
    from napari_nevus_seg._napari._sample_data import sample_ruler

    image = sample_ruler()[0][0]                   # 13 ticks 50 px apart, from column 84 to 684, row 505
    turned = np.ascontiguousarray(np.rot90(image))   # upright: column c becomes row 767 - c
    for picture, axis, ends in ((image, 1, [84.0, 684.0]), (turned, 0, [83.0, 683.0])):
        found = find_ruler(picture)
        assert found.spacings == 12
        assert found.spacing_px == pytest.approx(50.0, rel=1e-3)
        assert sorted(p[axis] for p in (found.start, found.end)) == pytest.approx(ends, abs=1.5)
    # a longer read must reach the caller's threshold too: above its regularity (0.94), the most regular read
    strict = find_ruler(image, min_regularity=0.97)
    assert strict is not None and strict.spacings == 8 and strict.regularity >= 0.97
