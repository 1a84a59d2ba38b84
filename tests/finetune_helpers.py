"""A tiny segmentation model trained in seconds on synthetic images of the default look.

It plays the shipped model's part in the fine-tuning tests: it segments "dermoscopy"-look images
well and the "bluish" look (another dermoscope's colour balance) badly, because it was trained
without colour augmentation, so fine-tuning on a few bluish images has something to repair.
"""

from __future__ import annotations

import functools

import torch

from napari_nevus_seg.io.synthetic import synthetic_lesion_image
from napari_nevus_seg.model.networks import LesionModel, build_model
from napari_nevus_seg.training.augment import AugmentConfig
from napari_nevus_seg.training.data import prepare_pairs
from napari_nevus_seg.training.loop import TrainConfig, init_from, train

SHAPE = (60, 80)
SIZE = 48


def cases(seeds, look: str = "dermoscopy"):
    return [synthetic_lesion_image(seed=s, shape=SHAPE, look=look) for s in seeds]


@functools.lru_cache(maxsize=1)
def _trained() -> LesionModel:
    torch.manual_seed(0)
    model = build_model(width=8, depth=3, preprocess={"size": SIZE, "mean": [0.5] * 3, "std": [0.25] * 3},
                        meta={"name": "tiny-synthetic"})
    src = cases(range(24))
    pairs = prepare_pairs([c.image for c in src], [c.labels for c in src], SIZE)
    no_colour = AugmentConfig(brightness=0, contrast=0, saturation=0, channel_gain=0, gamma=0, hair_prob=0)
    train(model, pairs, None, TrainConfig(epochs=6, steps_per_epoch=10, batch_size=8, lr=3e-3, augment=no_colour),
          device="cpu")
    return model


def tiny_base() -> LesionModel:
    """A fresh copy of the tiny trained model (tests may not share one object)."""
    return init_from(_trained())
