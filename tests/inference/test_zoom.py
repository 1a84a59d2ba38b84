"""The zoomed second look at small lesions: windows, replacement rules, and the default model on a small lesion."""

from __future__ import annotations

import numpy as np
import pytest
from small_lesion import small_lesion_in_large_frame

from napari_nevus_seg import SegmentOptions, dice, labels_from_map, network_map, segment
from napari_nevus_seg.inference import zoom
from napari_nevus_seg.inference.masks import labels_from_mask
from napari_nevus_seg.inference.pipeline import zoom_labels


def disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


@pytest.mark.parametrize("box, shape, side, expected", [
    ((slice(40, 60), slice(100, 120)), (400, 600), 40, (30, 90, 40, 40)),       # centred
    ((slice(0, 10), slice(0, 10)), (400, 600), 64, (0, 0, 64, 64)),             # shifted into the corner
    ((slice(390, 400), slice(590, 600)), (400, 600), 64, (336, 536, 64, 64)),   # the opposite corner
    ((slice(100, 120), slice(100, 120)), (100, 600), 200, (0, 10, 100, 200)),   # cut to the image's height
])
def test_zoom_window(box, shape, side, expected):
    assert zoom.zoom_window(box, shape, side) == expected


def test_the_crop_outline_replaces_the_first_one_in_place():
    shape = (300, 400)
    labels = disc(shape, 150, 200, 6).astype(np.int32)           # the first look: too small
    truth = disc(shape, 150, 200, 9)
    seen = []

    def segment_crop(crop):
        seen.append(crop.shape[:2])
        y0, x0 = 150 - crop.shape[0] // 2, 200 - crop.shape[1] // 2   # the window is centred on the lesion
        return disc(crop.shape[:2], 150 - y0, 200 - x0, 9).astype(np.int32)

    image = np.zeros(shape + (3,), np.uint8)
    out, replaced, relabel, _ = zoom.zoom_small_lesions(image, labels, segment_crop)
    assert replaced == 1 and not relabel and seen == [(zoom.MIN_WINDOW, zoom.MIN_WINDOW)]   # 2 x 11 px < 64 px
    assert np.array_equal(out, truth.astype(np.int32))


def test_large_lesions_and_unconfirmed_ones_keep_their_first_outline():
    shape = (200, 200)
    labels = np.zeros(shape, np.int32)
    labels[disc(shape, 100, 100, 40)] = 1                         # 12.6 % of the frame: no second look
    labels[disc(shape, 20, 20, 5)] = 2                            # small, but the crop finds nothing there
    calls = []

    def segment_crop(crop):
        calls.append(crop.shape)
        return np.zeros(crop.shape[:2], np.int32)

    out, replaced, _, _ = zoom.zoom_small_lesions(np.zeros(shape + (3,), np.uint8), labels, segment_crop)
    assert replaced == 0 and len(calls) == 1
    assert np.array_equal(out, labels)


def test_an_outline_cut_by_the_window_makes_it_grow_until_whole_image():
    shape = (600, 600)
    labels = disc(shape, 300, 300, 10).astype(np.int32)
    sides = []

    def segment_crop(crop):              # the lesion is "really" much larger: it fills every crop
        sides.append(crop.shape[0])
        return np.ones(crop.shape[:2], np.int32)

    out, replaced, _, _ = zoom.zoom_small_lesions(np.zeros(shape + (3,), np.uint8), labels, segment_crop)
    assert sides == [64, 128, 256, 512]  # 600 px would be the whole image: the first look's view
    assert replaced == 0 and np.array_equal(out, labels)


def test_an_outline_at_the_image_edge_is_not_cut():
    shape = (300, 300)
    labels = np.zeros(shape, np.int32)
    labels[:8, 140:160] = 1                                       # a lesion at the top edge of the image

    def segment_crop(crop):
        out = np.zeros(crop.shape[:2], np.int32)
        out[:12, 20:44] = 1                                       # reaches the window's top = the image's top
        return out

    out, replaced, _, _ = zoom.zoom_small_lesions(np.zeros(shape + (3,), np.uint8), labels, segment_crop)
    assert replaced == 1 and np.count_nonzero(out[:12] == 1) == 12 * 24 and not out[12:].any()


def test_an_outline_that_joins_another_lesion_asks_for_new_labels():
    shape = (300, 300)
    labels = np.zeros(shape, np.int32)
    labels[140:160, 100:120] = 1
    labels[140:160, 124:144] = 2                                  # 4 px to the right of lesion 1

    calls = []

    def segment_crop(crop):           # the first zoomed look (at lesion 1) reaches into lesion 2; then nothing
        calls.append(crop.shape)
        out = np.zeros(crop.shape[:2], np.int32)
        if len(calls) == 1:
            out[22:42, 10:48] = 1     # the window is rows 118-182, columns 78-142: lesion 1 and 2's first columns
        return out

    out, replaced, relabel, _ = zoom.zoom_small_lesions(np.zeros(shape + (3,), np.uint8), labels, segment_crop)
    assert len(calls) == 2 and replaced == 1 and relabel
    assert np.count_nonzero(out) == 20 * 38 + 20 * 20 - 20 * 2   # the new outline overlaps lesion 2 by 2 columns


@pytest.mark.parametrize("seed", [1, 3])
@pytest.mark.parametrize("refine", [True, False])
def test_the_default_model_outlines_a_small_lesion_better_when_zoomed(seed, refine):
    image, truth = small_lesion_in_large_frame(seed)
    assert truth.mean() < 0.005
    first = dice(segment(image, refine=refine, zoom_small=False) > 0, truth)
    zoomed = segment(image, refine=refine)                        # the zoomed look is the default
    assert dice(zoomed > 0, truth) > 0.97 and dice(zoomed > 0, truth) - first > 0.1   # first: 0.73-0.86
    # renumbered from the kept areas: as if the whole mask had been labelled again
    assert np.array_equal(zoomed, labels_from_mask(zoomed > 0, drop_edge_fragments=True))
    plane, small = network_map(image)                             # the same labels from a kept map
    assert np.array_equal(labels_from_map(plane, small, refine=refine), zoomed)
    first_labels = labels_from_map(plane, small, refine=refine, zoom_small=False)
    assert np.array_equal(zoom_labels(image, first_labels, None, SegmentOptions(refine=refine)), zoomed)
