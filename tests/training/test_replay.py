"""Replay: the base models' synthetic training images, mixed into fine-tuning against forgetting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from finetune_helpers import cases, tiny_base

from napari_nevus_seg import fine_tune
from napari_nevus_seg.training import finetune as finetune_module
from napari_nevus_seg.training.replay import SYNTHETIC_SEED0, synthetic_case, synthetic_pairs


def test_synthetic_pairs_are_the_same_images_every_time():
    a = synthetic_pairs(3, 48)
    synthetic_pairs.cache_clear()
    b = synthetic_pairs(3, 48)
    assert a.names == b.names == [f"synthetic{SYNTHETIC_SEED0 + i}" for i in range(3)]
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.images.shape == (3, 3, 48, 48) and a.masks.shape == (3, 1, 48, 48)
    case = synthetic_case(SYNTHETIC_SEED0)
    assert case.mask.any() and 1 <= case.labels.max() <= 4        # 1-4 lesions, as in the base's training


def test_replay_mixes_the_synthetic_pairs_into_training(monkeypatch):
    seen = {}
    real_train = finetune_module.train

    def spy(model, train_set, *args, **kwargs):
        seen["names"] = list(train_set.names)
        return real_train(model, train_set, *args, **kwargs)

    monkeypatch.setattr(finetune_module, "train", spy)
    train_cases = cases(range(200, 206), "bluish")
    tuned = fine_tune([c.image for c in train_cases], [c.labels for c in train_cases], base=tiny_base(),
                      names=[f"c{i}" for i in range(6)], replay=4, epochs=1, steps_per_epoch=1, device="cpu")
    ft = tuned.meta["fine_tune"]
    assert ft["settings"]["replay"] == 4 and ft["n_train"] == 5          # 6 pairs, 1 held out
    assert [n for n in seen["names"] if n.startswith("synthetic")] == [f"synthetic{SYNTHETIC_SEED0 + i}"
                                                                       for i in range(4)]
    assert len(seen["names"]) == 5 + 4
    assert not any(n.startswith("synthetic") for n in ft["holdout_names"])   # never scored on


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_replay_out_of_range_is_refused(value):
    with pytest.raises(ValueError, match="replay"):
        fine_tune([np.zeros((32, 32, 3), np.uint8)], [np.ones((32, 32), bool)], base=tiny_base(), replay=value)
