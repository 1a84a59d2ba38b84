"""Replay: some of the base model's own training images mixed into fine-tuning, against forgetting.

The shipped models were trained on the archives' images *and* on synthetic images of the package's own
generator (:func:`~napari_nevus_seg.io.synthetic.synthetic_lesion_image`, seeds from
:data:`SYNTHETIC_SEED0`: 1-4 lesions, four image sizes, three looks, hair or not). The archives' images
cannot ship with the package; the synthetic ones can be made again, pixel for pixel, at no cost. Mixing
``n`` of them into a fine-tuning run (``fine_tune(..., replay=n)``) keeps showing the network lesions it
already outlines well while it learns the user's kind, as rehearsal methods against catastrophic
forgetting do. How many, and whether it helps, is measured in docs/fine_tuning.md.
"""

from __future__ import annotations

import functools

import numpy as np

from napari_nevus_seg.io.synthetic import LOOKS, synthetic_lesion_image
from napari_nevus_seg.training.data import PairSet, prepare_pairs

SYNTHETIC_SEED0 = 100_000   # the first seed of the synthetic images the default models were trained on
SHAPES = ((384, 512), (450, 600), (576, 768), (512, 512))


def synthetic_case(seed: int):
    """The synthetic training image of ``seed`` (deterministic): 1-4 lesions, a random size, look and hair."""
    rng = np.random.default_rng(seed)
    shape = SHAPES[rng.integers(len(SHAPES))]
    for k in range(int(rng.integers(1, 5)), 0, -1):   # fewer lesions if they cannot fit
        try:
            return synthetic_lesion_image(seed=seed, shape=shape, n_lesions=k, look=LOOKS[rng.integers(len(LOOKS))],
                                          hair=bool(rng.integers(2)))
        except ValueError:
            continue
    raise ValueError(f"synthetic seed {seed}: no lesion fits")   # pragma: no cover - one lesion always fits


@functools.lru_cache(maxsize=2)
def synthetic_pairs(n: int, size: int, seed0: int = SYNTHETIC_SEED0) -> PairSet:
    """``n`` synthetic training pairs (seeds ``seed0`` ...) at the network's input ``size`` (kept for the
    next call: a few seconds to draw; training never changes them in place)."""
    cases = [synthetic_case(seed0 + i) for i in range(n)]
    return prepare_pairs([c.image for c in cases], [c.mask for c in cases], size,
                         names=[f"synthetic{seed0 + i}" for i in range(n)])


def concat_pairs(*sets: PairSet) -> PairSet:
    """The pairs of ``sets`` one after the other."""
    import torch

    return PairSet(torch.cat([s.images for s in sets]), torch.cat([s.masks for s in sets]),
                   [n for s in sets for n in s.names])
