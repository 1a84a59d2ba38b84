"""A second, zoomed look at small lesions.

The network sees the whole frame at its input size (192 px on the short side for the default model), so
a lesion that covers 1-5 % of a large photograph is only a few dozen input pixels wide and its outline is
coarse. :func:`zoom_small_lesions` crops a window around each small lesion, segments the crop with the
same network and settings (the crop fills the network's input: the lesion is seen at several times the
resolution) and puts the crop's outline of that lesion in place of the first one.

How a window is chosen (:func:`zoom_window`): a square of ``CONTEXT`` times the lesion's larger bounding
box side (at least ``MIN_WINDOW`` pixels), centred on the box, shifted to stay inside the image and cut to
it. When the crop's outline of the lesion touches the window's edge the lesion is larger than the first
look said: the window grows by ``CONTEXT`` again, until it no longer touches or the window is the whole
image (then the first outline is kept). A crop in which nothing overlaps the first outline keeps the first
outline too (a zoomed look that finds nothing is weaker evidence than the whole-frame look).

``SMALL_FRACTION``, ``CONTEXT`` and the rules above were chosen on HAM10000 images of lesions the
model-2 campaign did not hold out (model 1.5 never trained on HAM) and measured on held-out images:
docs/benchmarks.md, "Small lesions: a second, zoomed look".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

#: lesions covering less than this share of the frame get a second look
SMALL_FRACTION = 0.05
#: window side = CONTEXT x the lesion's larger bounding-box side (and x CONTEXT again while it touches)
CONTEXT = 2.0
#: smallest window side in pixels (a 10-px speck is looked at in 64 px of context)
MIN_WINDOW = 64


def zoom_window(box: tuple[slice, slice], shape: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """(y0, x0, h, w): a square of ``side`` px centred on ``box``, shifted into the image and cut to it."""
    H, W = shape
    h, w = min(H, side), min(W, side)
    cy, cx = (box[0].start + box[0].stop) // 2, (box[1].start + box[1].stop) // 2
    return min(max(0, cy - h // 2), H - h), min(max(0, cx - w // 2), W - w), h, w


def _touches_cut(outline: np.ndarray, window: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Whether ``outline`` reaches a side of the window that cuts through the image (not the image's own edge)."""
    y0, x0, h, w = window
    return bool((y0 > 0 and outline[0].any()) or (y0 + h < shape[0] and outline[-1].any())
                or (x0 > 0 and outline[:, 0].any()) or (x0 + w < shape[1] and outline[:, -1].any()))


def _zoomed_outline(image: np.ndarray, labels: np.ndarray, value: int, box: tuple[slice, slice],
                    segment_crop: Callable[[np.ndarray], np.ndarray]):
    """(window (y0, x0, h, w), the crop's outline of lesion ``value``), or None when the first outline stays."""
    shape = labels.shape
    side = max(MIN_WINDOW, int(round(CONTEXT * max(box[0].stop - box[0].start, box[1].stop - box[1].start))))
    while True:
        window = y0, x0, h, w = zoom_window(box, shape, side)
        if (h, w) == shape:
            return None  # the whole image: what the first look saw
        crop_labels = segment_crop(np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w]))
        hit = np.unique(crop_labels[(labels[y0:y0 + h, x0:x0 + w] == value) & (crop_labels > 0)])
        if hit.size == 0:
            return None
        outline = np.isin(crop_labels, hit)
        if not _touches_cut(outline, window, shape):
            return window, outline
        side = int(round(side * CONTEXT))


def _stands_alone(outline: np.ndarray, window_labels: np.ndarray, value: int) -> bool:
    """Whether ``outline`` is one piece that neither overlaps nor touches another lesion of the window."""
    if ndi.label(outline)[1] != 1:
        return False
    near = ndi.binary_dilation(outline, structure=np.ones((3, 3), bool))
    return not np.any((window_labels[near] != 0) & (window_labels[near] != value))


class Zoomed(NamedTuple):
    """What :func:`zoom_small_lesions` did: the labels (a copy when any outline was replaced), how many
    outlines were replaced, whether the labels must be made again from the mask (an outline that merges
    with or touches another lesion, or comes in several pieces), and each label's area in pixels."""

    labels: np.ndarray
    replaced: int
    joined: bool
    areas: np.ndarray


def zoom_small_lesions(image: np.ndarray, labels: np.ndarray, segment_crop: Callable[[np.ndarray], np.ndarray],
                       small_fraction: float = SMALL_FRACTION) -> Zoomed:
    """A second look at each lesion of ``labels`` under ``small_fraction`` of the frame.

    ``image``: (H, W, 3) uint8; ``labels``: the first look's (H, W) labels; ``segment_crop(crop)`` -> the
    crop's labels with the same model and settings (without dropping lesions at the crop's edge).
    Each new outline takes its lesion's value in the returned labels (not sorted by area again here).
    """
    areas = np.bincount(labels.ravel())
    limit = small_fraction * labels.size
    out, replaced, joined = labels, 0, False
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None or areas[value] >= limit:
            continue
        found = _zoomed_outline(image, labels, value, box, segment_crop)
        if found is None:
            continue
        (y0, x0, h, w), outline = found
        if out is labels:
            out, areas = labels.copy(), areas.copy()
        window = out[y0:y0 + h, x0:x0 + w]
        window[window == value] = 0
        joined |= not _stands_alone(outline, window, value)
        window[outline] = value
        areas[value] = np.count_nonzero(outline)
        replaced += 1
    return Zoomed(out, replaced, joined, areas)
