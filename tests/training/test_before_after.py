"""The before/after picture of a fine-tuning run: the pair that changed most, both outlines, the Dice."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_helpers import cases, tiny_base

from napari_nevus_seg import dice, fine_tune, segment
from napari_nevus_seg.training.before_after import GAP, MODEL, YOURS, before_after_example

FAST = {"epochs": 4, "steps_per_epoch": 5, "batch_size": 8, "lr": 1e-3, "device": "cpu"}


@pytest.fixture(scope="module")
def run():
    train = cases(range(200, 208), "bluish")
    base = tiny_base()
    images, masks = [c.image for c in train], [c.labels for c in train]
    return images, masks, base, fine_tune(images, masks, base=base, names=[f"c{i}" for i in range(8)], **FAST)


def test_the_example_is_the_scored_pair_that_changed_most(run):
    images, masks, base, tuned = run
    ft = tuned.meta["fine_tune"]
    assert ft["scored_index"] == ft["holdout_index"] and len(ft["scored_index"]) == 2
    ex = before_after_example(images, masks, tuned, base)
    changes = np.abs(np.subtract(ft["after_per_pair"], ft["before_per_pair"]))
    k = int(np.argmax(changes))
    i = ft["holdout_index"][k]
    assert ex.name == f"c{i}"
    np.testing.assert_array_equal(ex.image, images[i])
    np.testing.assert_array_equal(ex.corrected, masks[i] > 0)
    np.testing.assert_array_equal(ex.before, segment(images[i], model=base, device="cpu") > 0)
    np.testing.assert_array_equal(ex.after, segment(images[i], model=tuned, device="cpu") > 0)
    # the Dice shown are the report's, and they are the outlines' own
    assert ex.before_dice == pytest.approx(dice(ex.before, ex.corrected))
    assert ex.after_dice == pytest.approx(dice(ex.after, ex.corrected))
    assert f"before {ex.before_dice:.3f} (left), after {ex.after_dice:.3f} (right)" in ex.caption()


def test_the_picture_shows_each_models_outline_on_its_half(run):
    images, masks, base, tuned = run
    ex = before_after_example(images, masks, tuned, base)
    pic = ex.picture()
    h, w = ex.image.shape[:2]
    assert pic.shape == (h, 2 * w + GAP, 3) and pic.dtype == np.uint8
    left, right = pic[:, :w], pic[:, w + GAP:]
    assert (pic[:, w:w + GAP] == 255).all()
    for half, model_mask in ((left, ex.before), (right, ex.after)):
        cyan = (half == MODEL).all(axis=2)
        magenta = (half == YOURS).all(axis=2)
        assert cyan.any() and magenta.any()
        rows, cols = np.nonzero(cyan[20:])           # below the label in the corner
        # the cyan pixels lie on the model's outline: inside its mask, next to its edge
        assert model_mask[rows + 20, cols].mean() > 0.95
    # the two halves differ where the outlines differ
    assert not np.array_equal((left == MODEL).all(axis=2), (right == MODEL).all(axis=2)) or \
        np.array_equal(ex.before, ex.after)


def test_a_large_image_is_shown_at_most_panel_side(run):
    images, masks, base, tuned = run
    ex = before_after_example(images, masks, tuned, base)
    pic = ex.picture(side=40)
    assert pic.shape[0] == 30 and pic.shape[1] == 2 * 40 + GAP      # 60x80 -> 30x40 per half


def test_with_too_few_pairs_to_hold_out_the_example_is_a_training_pair_and_says_so():
    train = cases(range(200, 203), "bluish")
    base = tiny_base()
    images, masks = [c.image for c in train], [c.labels for c in train]
    tuned = fine_tune(images, masks, base=base, replay=0, **FAST)
    ft = tuned.meta["fine_tune"]
    assert ft["n_holdout"] == 0 and ft["scored_index"] == [0, 1, 2]
    ex = before_after_example(images, masks, tuned, base)
    assert not ex.held_out and "(a training pair: too few pairs to set one aside)" in ex.caption()
    del ft["scored_index"]                 # a model tuned before the report had it: still pictured
    assert before_after_example(images, masks, tuned, base).name == ex.name
