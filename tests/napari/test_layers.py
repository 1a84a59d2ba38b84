"""Layer helpers of the widgets: RGB data, pixel size from scale and units, adding/updating result layers."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_nevus_seg._napari import _layers
from napari_nevus_seg._napari._layers import (
    add_or_update_image,
    add_or_update_labels,
    image_data_rgb,
    pixel_size_mm_from_layer,
)

pytestmark = pytest.mark.gui


def test_image_data_rgb_conversions():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(image_data_rgb(Image(rgb, rgb=True)), rgb)
    gray = Image(rgb[..., 0])
    out = image_data_rgb(gray)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8 and np.array_equal(out[..., 2], rgb[..., 0])
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    assert np.array_equal(image_data_rgb(Image(rgba, rgb=True)), rgb)
    assert np.array_equal(image_data_rgb(Image(rgb.astype(np.uint16) * 257, rgb=True)), rgb)
    stack = image_data_rgb(Image(np.stack([rgb, rgb[::-1]]), rgb=True))
    assert stack.shape == (2, 20, 30, 3) and np.array_equal(stack[1], rgb[::-1])
    gray_stack = image_data_rgb(Image(np.stack([rgb[..., 0]] * 3)))
    assert gray_stack.shape == (3, 20, 30, 3)


def test_image_data_rgb_errors(monkeypatch):
    with pytest.raises(ValueError, match="shape"):
        image_data_rgb(Image(np.zeros((2, 3, 20, 30), np.uint8)))  # 4-D grayscale
    with pytest.raises(ValueError, match="not an image layer"):
        image_data_rgb(Labels(np.zeros((20, 30), np.int32)))
    with pytest.raises(ValueError, match="pixels"):
        image_data_rgb(Image(np.zeros((4, 4), np.uint8)))  # too small to be an image
    monkeypatch.setattr(_layers, "MAX_PIXELS", 100)
    with pytest.raises(ValueError, match="too large"):
        image_data_rgb(Image(np.zeros((20, 30, 3), np.uint8), rgb=True))


def test_pixel_size_from_scale_and_units():
    data = np.zeros((20, 30, 3), np.uint8)
    assert pixel_size_mm_from_layer(Image(data, rgb=True, scale=(0.02, 0.03), units=("mm", "mm"))) == \
        pytest.approx((0.02, 0.03))
    assert pixel_size_mm_from_layer(Image(data, rgb=True, scale=(20, 30), units=("um", "µm"))) == \
        pytest.approx((0.02, 0.03))
    assert pixel_size_mm_from_layer(Image(data, rgb=True, scale=(0.1, 0.1), units=("cm", "cm"))) == \
        pytest.approx((1.0, 1.0))
    assert pixel_size_mm_from_layer(Image(data, rgb=True)) is None  # pixels: unknown
    assert pixel_size_mm_from_layer(Image(data, rgb=True, scale=(2, 2))) is None
    meta = Image(data, rgb=True, metadata={"pixel_size_mm": 0.0125})
    assert pixel_size_mm_from_layer(meta) == pytest.approx((0.0125, 0.0125))
    stack = Image(np.zeros((2, 20, 30, 3), np.uint8), rgb=True, scale=(1, 0.02, 0.02), units=("s", "mm", "mm"))
    assert pixel_size_mm_from_layer(stack) == pytest.approx((0.02, 0.02))


def test_add_or_update_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((20, 30, 3), np.uint8), rgb=True, name="im", scale=(0.5, 0.25),
                           translate=(1, 2), units=("mm", "mm"))
    data = np.zeros((20, 30), np.int32)
    data[5:10, 5:10] = 1
    lab = add_or_update_labels(viewer, "im lesions", data, like=img)
    assert isinstance(lab, Labels) and lab.name == "im lesions"
    np.testing.assert_allclose(lab.scale, (0.5, 0.25))
    np.testing.assert_allclose(lab.translate, (1, 2))
    assert [str(u) for u in lab.units] == ["millimeter", "millimeter"]
    assert lab.metadata["pixel_size_mm"] == pytest.approx((0.5, 0.25))
    lab.features = {"area": [0.0, 6.25]}
    again = add_or_update_labels(viewer, "whatever", data * 2, like=img)
    assert again is lab and lab.data.max() == 2 and len(lab.features) == 0  # stale measurements cleared
    other = viewer.add_image(np.zeros((20, 30, 3), np.uint8), rgb=True, name="other")
    third = add_or_update_labels(viewer, "other lesions", data, like=other)
    assert third is not lab and len([ly for ly in viewer.layers if isinstance(ly, Labels)]) == 2
    prob = add_or_update_image(viewer, "im probability", np.zeros((20, 30), np.float32), like=img,
                               colormap="magma")
    assert isinstance(prob, Image) and not prob.rgb
    np.testing.assert_allclose(prob.scale, (0.5, 0.25))
    assert add_or_update_image(viewer, "x", np.ones((20, 30), np.float32), like=img) is prob


def test_a_duplicated_result_layer_is_the_users(make_napari_viewer):
    from napari.layers._layer_actions import _duplicate_layer

    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((20, 30, 3), np.uint8), rgb=True, name="im")
    data = np.zeros((20, 30), np.int32)
    data[5:10, 5:10] = 1
    lab = add_or_update_labels(viewer, "im lesions", data, like=img)
    viewer.layers.selection = {lab}
    _duplicate_layer(viewer.layers)                           # napari's "Duplicate Layer": metadata copied
    copy = viewer.layers["im lesions copy"]
    viewer.layers.move(viewer.layers.index(copy), 0)          # first in the list: found first if it matched
    assert add_or_update_labels(viewer, "im lesions", data * 2, like=img) is lab
    assert copy.data.max() == 1 and lab.data.max() == 2       # the user's copy is kept as it was


def test_result_layers_follow_rotation_shear_and_affine(make_napari_viewer):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((64, 48, 3), np.uint8), rgb=True, name="im", scale=(2, 2), rotate=30,
                           shear=[0.2], affine=[[1, 0, 5], [0, 1, -3], [0, 0, 1]])
    lab = add_or_update_labels(viewer, "im lesions", np.ones((64, 48), np.int32), like=img)
    np.testing.assert_allclose(lab.extent.world, img.extent.world)
    img.rotate = 45                                           # moved since: the next result follows
    assert add_or_update_labels(viewer, "im lesions", np.ones((64, 48), np.int32), like=img) is lab
    np.testing.assert_allclose(lab.extent.world, img.extent.world)
