"""Which cases to correct next: the images the model is least sure about.

::

    from napari_nevus_seg import load_model, rank_least_confident
    order = rank_least_confident(paths, model=load_model("my_dermoscope.pt"))      # [(index, confidence), ...] ascending
    to_correct = [paths[i] for i, _ in order[:20]]

An image's confidence is the lowest expected Dice of its lesions
(:func:`~napari_nevus_seg.inference.confidence.lesion_confidence`, the value the Segment widget and the batch
tables show per lesion); an image where no lesion was found scores 0, first in the list: either the model
missed a lesion or the image shows none, and a look settles it. The ranking finds the outlines most likely
to need a correction. As the cases to fine-tune on, the 20 least confident taught the network *less* than 20
random ones on HAM10000 (docs/fine_tuning.md, "Which cases to correct"): rank to check, not to choose what
to teach.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_nevus_seg.inference.pipeline import segment
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.model.loading import as_model
from napari_nevus_seg.training.data import CancelToken
from napari_nevus_seg.training.loop import TrainingCancelled

NO_LESION_CONFIDENCE = 0.0   # an image without a detected lesion: ranked first


def image_confidence(confidence: dict[int, float]) -> float:
    """An image's confidence from its lesions' expected Dice: the lowest; :data:`NO_LESION_CONFIDENCE` if none."""
    return float(min(confidence.values())) if confidence else NO_LESION_CONFIDENCE


def rank_least_confident(images: Sequence[np.ndarray | str | os.PathLike], *, model: Any = None,
                         progress: Callable[[int, int], None] | None = None, cancel: CancelToken | None = None,
                         **segment_kwargs: Any) -> list[tuple[int, float]]:
    """Segment every image and order them by the model's confidence, least confident first.

    Parameters
    ----------
    images : sequence of (H, W, 3) arrays or image paths
        Paths are read one at a time (a folder of thousands is never all in memory).
    model : LesionModel, path or None
        As :func:`~napari_nevus_seg.segment` takes it (None: the default model); loaded once.
    progress : callable, optional
        ``progress(done, total)`` after each image.
    cancel : object with ``is_set()``, optional
        Checked before each image; :class:`~napari_nevus_seg.training.loop.TrainingCancelled` when set.
    **segment_kwargs
        Further :func:`~napari_nevus_seg.segment` settings (threshold, refine, device, ...).

    Returns
    -------
    list of (int, float)
        ``(index into images, image confidence)``, ascending by confidence (ties keep the images' order).
    """
    m = as_model(model)
    scores = []
    for i, item in enumerate(images):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(f"ranking cancelled after {i} of {len(images)} images")
        img = read_image(item) if isinstance(item, (str, os.PathLike)) else item
        _, conf = segment(img, model=m, return_confidence=True, **segment_kwargs)
        scores.append((i, image_confidence(conf)))
        if progress is not None:
            progress(i + 1, len(images))
    return sorted(scores, key=lambda s: s[1])
