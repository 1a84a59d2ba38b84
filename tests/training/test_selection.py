"""Which cases to correct next: ``rank_least_confident`` orders images by the model's confidence."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from napari_nevus_seg import TrainingCancelled, rank_least_confident, synthetic_lesion_image
from napari_nevus_seg.training.selection import NO_LESION_CONFIDENCE, image_confidence

SHAPE = (192, 256)


def faint(case, skin, alpha=0.2):
    """The lesion of ``case`` at ``alpha`` of its contrast over plain skin: its edge is hard to see."""
    return (skin.astype(float) * (1 - alpha) + case.image * alpha).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    clear = synthetic_lesion_image(seed=1, shape=SHAPE).image
    skin = synthetic_lesion_image(seed=2, shape=SHAPE, n_lesions=0).image
    lesion = synthetic_lesion_image(seed=3, shape=SHAPE)
    bg = synthetic_lesion_image(seed=3, shape=SHAPE, n_lesions=0).image
    return {"clear": clear, "skin": skin, "faint": faint(lesion, bg), "same lesion, clear": lesion.image}


def test_image_confidence_is_the_least_sure_lesion():
    assert image_confidence({1: 0.9, 2: 0.6, 3: 0.95}) == 0.6
    assert image_confidence({}) == NO_LESION_CONFIDENCE == 0.0


def test_no_lesion_first_then_the_faint_one(images):
    order = rank_least_confident([images["clear"], images["skin"], images["faint"]], device="cpu")
    assert [i for i, _ in order] == [1, 2, 0]
    values = dict(order)
    assert values[1] == 0.0                           # skin only: nothing found, first to look at
    assert 0.5 < values[2] < values[0] <= 1.0
    # the same lesion drawn with full contrast is ranked surer than its faint copy
    (_, sure), = rank_least_confident([images["same lesion, clear"]], device="cpu")
    assert sure > values[2]


def test_paths_are_read_and_progress_is_reported(images, tmp_path):
    paths = []
    for name in ("clear", "skin", "faint"):
        Image.fromarray(images[name]).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    seen = []
    by_path = rank_least_confident(paths, device="cpu", progress=lambda done, total: seen.append((done, total)))
    by_array = rank_least_confident([images[n] for n in ("clear", "skin", "faint")], device="cpu")
    assert [i for i, _ in by_path] == [i for i, _ in by_array] == [1, 2, 0]
    assert [v for _, v in by_path] == pytest.approx([v for _, v in by_array])
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_cancel_stops_before_the_next_image(images):
    cancel = threading.Event()
    done = []

    def progress(i, n):
        done.append(i)
        cancel.set()

    with pytest.raises(TrainingCancelled, match="after 1 of 3"):
        rank_least_confident([images["clear"]] * 3, device="cpu", progress=progress, cancel=cancel)
    assert done == [1]
