"""Sample data through napari's File > Open Sample, and a rendered screenshot."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui
PLUGIN = "napari-nevus-seg"


@pytest.mark.parametrize("key, n_lesions", [("synthetic_lesion", 1), ("synthetic_multi", 3)])
def test_open_sample(make_napari_viewer, key, n_lesions):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, key)
    assert [la._type_string for la in layers] == ["image", "labels"]
    image, labels = layers
    assert labels.name == f"{image.name} ground truth"
    assert image.rgb and image.data.shape == (384, 512, 3) and image.data.dtype == np.uint8
    assert labels.data.shape == (384, 512)
    assert sorted(np.unique(labels.data)) == list(range(n_lesions + 1))
    for layer in layers:
        np.testing.assert_allclose(layer.scale, (0.02, 0.02))
        assert [str(u) for u in layer.units] == ["millimeter", "millimeter"]
    assert image.metadata["pixel_size_mm"] == 0.02 and len(image.metadata["colours"]) == n_lesions
    # the lesions are darker than the skin around them
    gray = image.data.mean(-1)
    assert gray[labels.data > 0].mean() < gray[labels.data == 0].mean() - 30


def test_ruler_sample_leaves_the_scale_to_its_ruler(make_napari_viewer):
    from napari_nevus_seg import find_ruler

    viewer = make_napari_viewer()
    image, labels = viewer.open_sample(PLUGIN, "synthetic_ruler")
    assert labels.name == f"{image.name} ground truth" and labels.data.shape == image.data.shape[:2] == (576, 768)
    np.testing.assert_allclose(image.scale, (1, 1))
    assert "pixel_size_mm" not in image.metadata and image.metadata["ruler_pixel_size_mm"] == 0.02
    assert find_ruler(image.data).pixel_size_mm() == pytest.approx(0.02, rel=0.002)


def test_samples_listed_in_menu_contributions():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    keys = {s.key for s in pm.get_manifest(PLUGIN).contributions.sample_data}
    assert keys == {"synthetic_lesion", "synthetic_multi", "synthetic_ruler"}


def test_screenshot_shows_image_and_labels(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # a hidden window's canvas renders black
    viewer.open_sample(PLUGIN, "synthetic_lesion")
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[-1] == 4 and shot.shape[0] > 50 and shot.shape[1] > 50
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 20  # not a blank canvas
    # skin tones (red > blue) fill most of the frame; the labels overlay adds a saturated colour
    skin = (rgb[..., 0] > rgb[..., 2] + 20) & (rgb.mean(-1) > 100)
    assert skin.mean() > 0.2
    viewer.layers[1].visible = False
    without_labels = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    changed = np.abs(without_labels - rgb).max(-1) > 20
    assert 0.01 < changed.mean() < 0.5  # the lesion overlay covers part of the frame
