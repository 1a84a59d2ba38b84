"""Scoring a model on held-out pairs with and without the outline refinement, and choosing between them.

A model fine-tuned on a user's outlines learns their convention: tight outlines on the pigment (as PH2's
experts draw them) or a margin around it (as ISIC's and HAM10000's). The refinement moves outlines onto the
visible pigment edge, which helps the first and undoes the second. :func:`score_both` scores both ways
from one pass of the network per image; :func:`choose_refine` keeps the better one, which the tuned model
records as ``meta["refine"]`` (:attr:`~napari_nevus_seg.model.networks.LesionModel.refines`), so that the
widgets, the API and the command line follow it unless the user chooses otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.inference.metrics import dice
from napari_nevus_seg.inference.pipeline import labels_from_map, network_map
from napari_nevus_seg.model.networks import LesionModel

#: the refinement is switched (away from the base model's choice) only when the other setting scores at
#: least this much more mean Dice on the held-out pairs: a few pairs cannot tell smaller differences apart
SWITCH_MARGIN = 0.005


def score_both(model: LesionModel, images: Sequence, masks: Sequence, device: Any,
               check: Callable[[int], None] | None = None) -> dict[bool, list[float]]:
    """Dice of ``model`` on each (image, mask) pair with the refinement (``True``) and without (``False``).

    ``check(i)`` is called before pair ``i`` (progress and cancel)."""
    scores: dict[bool, list[float]] = {True: [], False: []}
    for i, (img, m) in enumerate(zip(images, masks)):
        if check is not None:
            check(i)
        truth = lesion_mask(m)
        plane, small = network_map(img, model=model, device=device)
        for refine in (True, False):
            scores[refine].append(dice(labels_from_map(plane, small, model, refine=refine) > 0, truth))
    return scores


def choose_refine(scores: dict[bool, list[float]], default: bool) -> bool:
    """The refinement setting with the higher mean Dice; ``default`` unless the other is better by
    :data:`SWITCH_MARGIN` or more (or when there are no scores)."""
    if not scores[True] or not scores[False]:
        return default
    gain = float(np.mean(scores[not default]) - np.mean(scores[default]))
    return (not default) if gain >= SWITCH_MARGIN else default
