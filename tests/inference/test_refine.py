"""Outline refinement (refine.py) and the removal of fragments at the image's frame (postprocessing)."""

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from napari_nevus_seg import dice, load_model, postprocess, refine_outline, segment
from napari_nevus_seg.inference.refine import refine_small, work_shape
from napari_nevus_seg.io.cielab import lab_u8

SKIN = (214, 170, 150)
LESION = (120, 78, 60)


@pytest.fixture(scope="module")
def model():
    return load_model()


def disk_image(shape=(300, 400), centre=(150, 200), radius=60, seed=0, hair=False):
    """Skin with a brown disc (exact mask), mild noise; optionally a dark hair crossing the lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    dist = np.hypot(yy - centre[0], xx - centre[1])
    mask = dist <= radius
    img = np.where(mask[..., None], LESION, SKIN).astype(np.float32)
    img += rng.normal(0, 6, img.shape)
    if hair:
        img[np.abs(yy - centre[0]) <= 1] = (40, 30, 25)   # a horizontal hair through the whole image
    return np.clip(img, 0, 255).astype(np.uint8), mask, dist


def loose_probability(dist, radius):
    """A smooth map whose 0.5 level is a circle of ``radius`` (the network's too-large outline)."""
    return (1.0 / (1.0 + np.exp((dist - radius) / 4.0))).astype(np.float32)


def test_lab_matches_scikit_image():
    x = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert np.abs(lab_u8(x) - rgb2lab(x)).max() < 1e-3


def test_refinement_moves_a_loose_outline_onto_the_pigment_edge():
    img, mask, dist = disk_image()
    prob = loose_probability(dist, 66)  # 10 % too large (1.21x the area); the band reaches 6.6 px inside
    assert dice(prob > 0.5, mask) < 0.92
    out = refine_outline(img, prob)
    assert out.shape == prob.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    refined = out > 0.5
    assert dice(refined, mask) > 0.98
    assert abs(int(refined.sum()) - int(mask.sum())) < 0.03 * mask.sum()


def test_refinement_ignores_a_hair_leaving_the_lesion():
    img, mask, dist = disk_image(hair=True)
    refined = refine_outline(img, loose_probability(dist, 66)) > 0.5
    outside = ~mask & (dist <= 66)                          # the band the refinement re-decides
    assert np.count_nonzero(refined & outside) < 0.02 * mask.sum()
    assert dice(refined, mask) > 0.97


def test_refinement_also_grows_a_too_tight_outline_within_its_band():
    img, mask, dist = disk_image()
    refined = refine_outline(img, loose_probability(dist, 55)) > 0.5
    assert dice(refined, mask) > dice(loose_probability(dist, 55) > 0.5, mask)


@pytest.mark.parametrize("case", ["empty", "fills frame"])
def test_no_colour_model_keeps_the_networks_outline(case):
    img, mask, _dist = disk_image()
    prob = np.zeros(mask.shape, np.float32) if case == "empty" else np.full(mask.shape, 0.9, np.float32)
    prob[:5, :5] = 0.3
    out = refine_outline(img, prob, threshold=0.6)
    np.testing.assert_array_equal(out > 0.5, prob > 0.6)   # the threshold maps to the 0.5 level


def test_a_lesion_filling_most_of_the_frame_keeps_the_networks_outline():
    """Too little skin left around the lesion for a colour model (the skin ring lies mostly outside the
    image): refining would take lesion for skin, so the network's outline stays."""
    img, mask, dist = disk_image(shape=(200, 260), centre=(100, 130), radius=150)  # skin only in the corners
    prob = loose_probability(dist, 140)            # a too-tight outline that a refinement would move
    out = refine_outline(img, prob)
    np.testing.assert_array_equal(out > 0.5, prob > 0.5)
    img, mask, dist = disk_image(shape=(260, 300), centre=(130, 150), radius=85)   # skin all round: refined
    prob = loose_probability(dist, 93)
    assert dice(refine_outline(img, prob) > 0.5, mask) > dice(prob > 0.5, mask) + 0.03


def test_a_lesion_with_much_of_its_skin_ring_off_the_image_keeps_the_networks_outline():
    """Half the skin ring outside the image (a large lesion cut by the frame): the ring's visible part
    is too little to tell skin from lesion colours, so the network's outline stays (the threshold was
    30 % of the ring until model 1.5; 80 % since, chosen on the ISIC inside-lesion crops)."""
    for cx in (10, 30, 50):   # disc of radius 60 centred 10, 30, 50 px from the left edge
        img, _mask, dist = disk_image(shape=(200, 260), centre=(100, cx), radius=60)
        prob = loose_probability(dist, 68)
        np.testing.assert_array_equal(refine_outline(img, prob) > 0.5, prob > 0.5)


def test_refine_outline_checks_shapes():
    img, _mask, dist = disk_image()
    with pytest.raises(ValueError, match="same shape"):
        refine_outline(img[:-1], loose_probability(dist, 66))


@pytest.mark.parametrize("convert", [
    lambda i: i.astype(np.float32) / 255.0,            # float [0, 1]: was "arrays used as indices must be of integer"
    lambda i: i.astype(np.float64),                    # float 0..255
    lambda i: i.astype(np.uint16) * 257,               # 16-bit: was "index 47545 is out of bounds"
])
def test_refine_outline_converts_images_as_segment_does(convert):
    img, mask, dist = disk_image()
    prob = loose_probability(dist, 66)
    ref = refine_outline(img, prob)
    out = refine_outline(convert(img), prob)
    assert np.array_equal(out > 0.5, ref > 0.5) and dice(out > 0.5, mask) > 0.98


@pytest.mark.parametrize("image, match", [
    (lambda i: i[..., 0], r"RGB image of shape \(H, W, 3\).*to_rgb_uint8"),                    # grayscale
    (lambda i: np.dstack([i, np.full(i.shape[:2], 255, np.uint8)]), r"\(H, W, 3\)"),         # RGBA
    (lambda i: i > 100, "boolean"),
    (lambda i: i[:-1], "same shape"),
])
def test_refine_outline_refuses_wrong_images(image, match):
    img, _mask, dist = disk_image()
    with pytest.raises(ValueError, match=match):
        refine_outline(image(img), loose_probability(dist, 66))


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 1.5}, "threshold"), ({"threshold": 0.0}, "threshold"), ({"threshold": float("nan")}, "threshold"),
    ({"min_size": -1}, "min_size"), ({"band": 0.0}, "band"), ({"alpha": 1.5}, "alpha"),
])
def test_refine_outline_checks_arguments(kwargs, match):
    img, _mask, dist = disk_image()
    with pytest.raises(ValueError, match=match):
        refine_outline(img, loose_probability(dist, 66), **kwargs)


def test_refine_outline_probability_maps():
    img, mask, dist = disk_image()
    nan = np.full(mask.shape, np.nan, np.float32)
    out = refine_outline(img, nan)              # was all NaN
    assert not np.isnan(out).any() and not (out > 0.5).any()
    prob = loose_probability(dist, 66)
    holed = prob.copy()
    holed[::7, ::7] = np.nan                    # NaN counts as 0: the lesion is still found and refined
    assert dice(refine_outline(img, holed) > 0.5, mask) > 0.97
    for bad, match in ((prob * 10 - 5, r"in \[0, 1\]"), (prob[None], "2-D"), (prob.astype(complex), "numbers")):
        with pytest.raises(ValueError, match=match):
            refine_outline(img, bad)


def test_work_grid_is_bounded_and_never_upsamples():
    assert work_shape((4000, 6000)) == (256, 384)
    assert work_shape((576, 768)) == (288, 384)
    assert work_shape((256, 341)) == (256, 341)     # the ISIC training copies: refined at their own size


def test_refine_small_works_from_the_network_grid_for_a_large_image():
    img, mask, dist = disk_image(shape=(1200, 1600), centre=(600, 800), radius=240)
    small = torch.from_numpy(loose_probability(dist, 264)[::8, ::8].copy())   # a (150, 200) network-like map
    out = refine_small(img, small)
    assert out.shape == work_shape(mask.shape) and out.dtype == torch.float32
    from napari_nevus_seg.inference.postprocess import labels_from_small
    lab = labels_from_small(out, mask.shape, 0.5)
    assert lab.max() == 1 and dice(lab > 0, mask) > 0.97


def test_segment_refine_option_changes_only_the_outline(model):
    img, _mask, _ = disk_image()
    plain = segment(img, model=model, device="cpu", refine=False)
    refined = segment(img, model=model, device="cpu")
    assert plain.max() == refined.max() == 1
    assert dice(refined > 0, plain > 0) > 0.8


# ------------------------------------------------------------------------------ frame fragments
def fragments_map():
    p = np.zeros((200, 300), np.float32)
    p[60:140, 100:200] = 1.0     # the lesion, 8000 px
    p[0:30, 0:40] = 1.0          # a dark corner of the field of view: touches the frame, 1200 px (15 %)
    p[80:100, 20:40] = 1.0       # a small lesion away from the frame, 400 px
    return p


def test_small_fragments_touching_the_frame_are_dropped():
    lab = postprocess(fragments_map(), min_size=1)
    assert lab.max() == 2
    assert lab[100, 150] == 1 and lab[90, 30] == 2 and lab[10, 10] == 0
    kept = postprocess(fragments_map(), min_size=1, drop_edge_fragments=False)
    assert kept.max() == 3 and kept[10, 10] == 2 and kept[90, 30] == 3


def test_a_large_lesion_touching_the_frame_is_kept():
    p = fragments_map()
    p[0:60, 0:60] = 1.0          # 3600 px = 45 % of the largest: a real lesion cut by the frame
    lab = postprocess(p, min_size=1)
    assert lab.max() == 3 and lab[10, 10] == 2


def test_the_largest_lesion_is_kept_even_when_it_touches_the_frame():
    p = np.zeros((100, 100), np.float32)
    p[0:50, 0:50] = 1.0
    lab = postprocess(p, min_size=1)
    assert lab.max() == 1 and lab[0, 0] == 1


def test_labels_from_a_refined_map_on_its_own_grid_match_the_exact_computation():
    from napari_nevus_seg.inference.postprocess import labels_from_small, upsample_proba

    img, mask, dist = disk_image(shape=(1500, 2000), centre=(700, 900), radius=300)
    img[1400:, 1850:] = 20                                   # a dark frame corner
    prob = loose_probability(dist, 330)
    prob[1420:, 1880:] = 0.9
    out = refine_small(img, torch.from_numpy(prob[::4, ::4].copy()))
    fast = labels_from_small(out, mask.shape, 0.5, work_factor=1)
    exact = postprocess(upsample_proba(out, mask.shape), 0.5)
    assert fast.max() == exact.max() == 1                    # the corner fragment is dropped in both
    assert np.count_nonzero(fast != exact) <= 10
    assert dice(fast > 0, mask) > 0.97


def test_refinement_keeps_holes_when_asked():
    img, mask, dist = disk_image()
    hole = dist <= 12
    img[hole] = SKIN                                          # skin-coloured centre: a hole in the lesion
    prob = loose_probability(dist, 66)
    prob[dist <= 12] = 0.0
    assert (refine_outline(img, prob, fill_holes=False) <= 0.5)[150, 200]
    assert (refine_outline(img, prob) > 0.5)[150, 200]
