"""Synthetic dermoscopy images: determinism, exact labels, colours, looks, fixture trees."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nevus_seg.io.datasets import discover_cases
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.io.mask_files import read_mask
from napari_nevus_seg.io.synthetic import (
    DATASET_LAYOUTS,
    DERMOSCOPIC_COLOURS,
    LOOKS,
    dataset_folder,
    synthetic_lesion_image,
)


def _gray(img):
    return img.astype(float).mean(axis=-1)


def test_types_shapes_and_determinism():
    a = synthetic_lesion_image(seed=7, shape=(200, 300))
    b = synthetic_lesion_image(seed=7, shape=(200, 300))
    c = synthetic_lesion_image(seed=8, shape=(200, 300))
    assert a.image.shape == (200, 300, 3) and a.image.dtype == np.uint8
    assert a.labels.shape == (200, 300) and a.labels.dtype == np.int32
    assert a.mask.dtype == bool and np.array_equal(a.mask, a.labels > 0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_instances_numbered_and_separate(n):
    case = synthetic_lesion_image(seed=n, n_lesions=n)
    assert sorted(np.unique(case.labels)) == list(range(n + 1))
    assert len(case.colours) == n
    # lesions do not touch: dilating one lesion by 1 px never reaches another
    from scipy import ndimage

    for k in range(1, n + 1):
        grown = ndimage.binary_dilation(case.labels == k)
        assert set(np.unique(case.labels[grown])) <= {0, k}


@pytest.mark.parametrize("seed", range(8))
def test_lesions_darker_than_skin_and_plausible_size(seed):
    case = synthetic_lesion_image(seed=seed)
    g = _gray(case.image)
    h, w = g.shape
    yy, xx = np.ogrid[:h, :w]
    central = np.hypot(yy - h / 2, xx - w / 2) < 0.4 * min(h, w)  # away from the dark vignette
    skin = g[central & ~case.mask]
    assert g[case.mask].mean() < skin.mean() - 40
    assert 0.04 < case.mask.mean() < 0.35


def test_vignette_corners_dark_and_centre_bright():
    case = synthetic_lesion_image(seed=3, n_lesions=0, hair=False)
    g = _gray(case.image)
    assert case.labels.max() == 0 and case.colours == []
    assert g[:5, :5].mean() < 30 and g[-5:, -5:].mean() < 30
    assert g[180:200, 240:270].mean() > 120


def test_hair_drawn_over_image_but_not_in_labels():
    with_hair = synthetic_lesion_image(seed=4, hair=True)
    no_hair = synthetic_lesion_image(seed=4, hair=False)
    assert np.array_equal(with_hair.labels, no_hair.labels)
    darker = _gray(no_hair.image) - _gray(with_hair.image) > 30
    assert darker.sum() > 200  # a few hairs, each a thin long curve
    assert darker.mean() < 0.05


def test_requested_colours_are_painted():
    names = list(DERMOSCOPIC_COLOURS)
    case = synthetic_lesion_image(seed=5, colours=names, hair=False)
    assert case.colours == [names]
    lesion = case.image[case.mask].astype(float)
    refs = np.array([DERMOSCOPIC_COLOURS[c] for c in names], float)
    nearest = np.linalg.norm(lesion[:, None] - refs[None], axis=-1).argmin(1)
    share = np.bincount(nearest, minlength=len(names)) / len(nearest)
    assert (share > 0.05).all(), dict(zip(names, share.round(3)))


def test_colours_per_lesion_and_validation():
    case = synthetic_lesion_image(seed=1, n_lesions=2, colours=[["black"], ["red", "light_brown"]])
    assert case.colours == [["black"], ["red", "light_brown"]]
    with pytest.raises(ValueError, match="unknown dermoscopic colour"):
        synthetic_lesion_image(colours=["purple"])
    with pytest.raises(ValueError, match="n_lesions"):
        synthetic_lesion_image(n_lesions=2, colours=[["black"]])
    with pytest.raises(ValueError, match="look"):
        synthetic_lesion_image(look="sepia")
    with pytest.raises(ValueError, match="too small"):
        synthetic_lesion_image(shape=(16, 16))
    with pytest.raises(ValueError, match="cannot fit"):
        synthetic_lesion_image(shape=(40, 40), n_lesions=30)


def test_looks_change_colour_not_labels():
    base = synthetic_lesion_image(seed=2)
    bluish = synthetic_lesion_image(seed=2, look="bluish")
    dim = synthetic_lesion_image(seed=2, look="dim")
    assert set(LOOKS) == {"dermoscopy", "bluish", "dim"}
    assert np.array_equal(base.labels, bluish.labels) and np.array_equal(base.labels, dim.labels)
    skin = ~base.mask
    b_rgb, u_rgb = base.image[skin].mean(0), bluish.image[skin].mean(0)
    assert u_rgb[2] - u_rgb[0] > b_rgb[2] - b_rgb[0] + 30  # bluer balance
    assert _gray(dim.image).mean() < 0.8 * _gray(base.image).mean()
    assert _gray(dim.image)[skin].std() < _gray(base.image)[skin].std()
    g = _gray(dim.image)
    assert g[base.mask].mean() < g[skin].mean()


def test_pixel_size_is_recorded():
    assert synthetic_lesion_image(pixel_size_mm=0.0125).pixel_size_mm == 0.0125
    assert synthetic_lesion_image().pixel_size_mm is None


@pytest.mark.parametrize("layout", DATASET_LAYOUTS)
def test_dataset_folder_layouts_round_trip(tmp_path, layout):
    cases = dataset_folder(tmp_path, layout, n=3, seed=10)
    assert discover_cases(tmp_path) == cases
    for i, case in enumerate(cases):
        truth = synthetic_lesion_image(seed=10 + i, shape=(96, 128))
        assert np.array_equal(read_mask(case.mask), truth.mask)
        img = read_image(case.image)
        tol = 0 if case.image.suffix in (".png", ".bmp") else 12  # JPEG is lossy
        assert np.abs(img.astype(int) - truth.image).mean() <= tol


def test_dataset_folder_unknown_layout(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        dataset_folder(tmp_path, "kaggle")
