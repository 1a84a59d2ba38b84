"""Elongated images: the network sees overlapping windows, stitched and checked against the whole view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nevus_seg import load_model, segment, synthetic_lesion_image
from napari_nevus_seg.inference import preprocess
from napari_nevus_seg.inference.preprocess import confirmed_by_whole, model_windows, stitch_windows, window_layout
from napari_nevus_seg.inference.refine import work_shape


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_images_up_to_two_to_one_are_seen_whole():
    assert window_layout((576, 768), 192) is None
    assert window_layout((300, 600), 192) is None
    assert window_layout((600, 300), 192) is None
    views, layout = model_windows(np.zeros((300, 600, 3), np.uint8), 192)
    assert layout is None and len(views) == 1 and views[0].shape == (192, 192, 3)


def test_window_layout_covers_the_long_side_with_overlap():
    lay = window_layout((384, 2304), 192)          # 6:1: windows of 4:3 (512 px of the image each)
    assert lay.axis == 1 and lay.map_len == 864    # 192 * 2304 / 512
    assert lay.starts[0] == 0 and lay.starts[-1] + 192 == lay.map_len
    gaps = np.diff(lay.starts)
    assert len(lay.starts) == 6 and gaps.max() <= 0.75 * 192
    spans = [lay.image_span(i, 2304) for i in range(len(lay.starts))]
    assert spans[0][0] == 0 and spans[-1][1] == 2304
    assert all(abs((b - a) - 512) <= 1 for a, b in spans)
    assert window_layout((2304, 384), 192).axis == 0
    views, layout = model_windows(np.zeros((384, 2304, 3), np.uint8), 192)
    assert layout == lay and len(views) == len(lay.starts) + 1      # the windows, then the whole image
    assert all(v.shape == (192, 192, 3) for v in views)


@pytest.mark.parametrize("shape", [(192, 1000), (1000, 192)])
def test_stitching_windows_of_a_known_map_gives_it_back(shape):
    lay = window_layout(shape, 32)
    along = torch.linspace(0, 1, lay.map_len)
    truth = (along[None, :] * torch.linspace(0.5, 1, 32)[:, None])     # (32, map_len): long axis last
    if lay.axis == 0:
        truth = truth.T
    windows = torch.stack([truth[:, s:s + 32] if lay.axis == 1 else truth[s:s + 32] for s in lay.starts])
    out = stitch_windows(windows, lay)
    assert out.shape == truth.shape
    torch.testing.assert_close(out, truth)


def test_a_window_detection_the_whole_view_does_not_share_is_dropped():
    stitched = torch.zeros(32, 128)
    stitched[8:20, 10:30] = 0.9        # confirmed: the whole view sees something there
    stitched[8:20, 90:110] = 0.9       # a window outlining skin: the whole view sees nothing
    whole = torch.zeros(32, 32)
    whole[12:16, 4:6] = 0.3
    out = confirmed_by_whole(stitched, whole)
    assert out[8:20, 10:30].min() == pytest.approx(0.9) and out[:, 60:].max() == 0


def test_elongated_image_keeps_its_small_lesions(model):
    """4:1 and 1:4 images with three lesions each: squashed whole, the network found 16 of these 24."""
    found = 0
    for seed in range(900000, 900004):
        case = synthetic_lesion_image(seed=seed, shape=(300, 1200), n_lesions=3)
        for img, truth in ((case.image, case.labels), (case.image.transpose(1, 0, 2), case.labels.T)):
            lab = segment(img, model=model)
            assert lab.shape == truth.shape
            found += sum((lab[truth == k] > 0).mean() > 0.5 for k in (1, 2, 3))
    assert found >= 21      # 22 with model 1.5


def test_elongated_refinement_grid_keeps_a_short_side_of_half_the_bound():
    assert work_shape((300, 1200)) == (192, 768)
    assert work_shape((3000, 600)) == (960, 192)
    assert work_shape((576, 768)) == (288, 384)
    assert preprocess.MAX_ASPECT == 2.0
