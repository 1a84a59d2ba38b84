"""Outline refinement: move the network's outline onto the visible pigment edge of each image.

::

    from napari_nevus_seg.inference.refine import refine_outline
    refined = refine_outline(image, prob)     # (h, w) map; lesion where refined > 0.5
    labels = segment(image, refine=True)      # what segment() does by default

Only a band around the network's outline is re-decided, from the image's own colours:

1. lesions of the thresholded map (holes filled, specks and frame fragments dropped);
2. a band of half-width ``band`` x the largest lesion's equivalent radius around their outlines; the
   lesion colour is sampled inside the band (the core), the skin colour in a ring of the same width
   outside it (excluding the dark vignette of the dermatoscope, CIE L* < :data:`VIGNETTE_L`);
3. a linear discriminant (Fisher LDA in CIE L*a*b*) between lesion and skin; a band pixel is lesion
   when its projection lies past ``alpha`` of the way from the skin mean to the lesion mean
   (``alpha`` < 0.5 keeps the faint pigmented rim that experts include);
4. an opening (radius :data:`OPEN_RADIUS`) removes hairs reaching out of the lesion, holes are filled,
   only parts attached to a lesion core are kept, and the result is smoothed (Gaussian,
   :data:`SMOOTH_SIGMA` px).

Everything runs on a work grid whose long side is at most :data:`REFINE_SIDE` pixels (images are never
upsampled), so the cost is bounded for any image size; the result is a map whose 0.5 level is the
refined outline, upsampled to full resolution like the network's probabilities.

Images where a colour model cannot be built (no lesion, a lesion too small for a core, a lesion filling
the frame: less than :data:`MIN_SKIN_SHARE` of the skin ring, as it would be on an unbounded image, is
visible skin) keep the network's outline unchanged. Why the refinement exists, how its constants were
chosen and what it scores are in docs/model_card.md ("Outline refinement: history of choices").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from napari_nevus_seg.inference.masks import check_args, default_min_size, labels_from_mask
from napari_nevus_seg.inference.masks import fill_holes as fill_mask_holes
from napari_nevus_seg.io.cielab import lab_u8

if TYPE_CHECKING:  # PyTorch is imported where it is used: refine_outline runs in light worker processes
    import torch

__all__ = ["MIN_SKIN_SHARE", "REFINE_SIDE", "refine_inputs", "refine_outline", "refine_small"]

REFINE_SIDE = 384          # long side of the refinement work grid (pixels): the scale of the training pseudo-labels
BAND = 0.10                # band half-width, fraction of the largest lesion's equivalent radius
ALPHA = 0.40               # decision point between the skin (0) and lesion (1) colour means
SMOOTH_SIGMA = 2.0         # Gaussian smoothing of the refined mask (work-grid pixels)
OPEN_RADIUS = 2            # opening radius removing hairs (work-grid pixels)
VIGNETTE_L = 25.0          # CIE L* below which ring pixels count as the dermatoscope's dark frame
MIN_SAMPLES = 50           # fewer core or ring pixels than this: no refinement
MIN_SKIN_SHARE = 0.8       # less of the skin ring than this visible as skin (lesion fills the frame): no refinement
MAX_SAMPLES = 20_000       # colour samples per class used to fit the discriminant


def _remap(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Monotone map of probabilities sending ``threshold`` to 0.5 (the refined map's level)."""
    p = prob.astype(np.float32)
    lo = p * (0.5 / threshold)
    hi = 0.5 + (p - threshold) * (0.5 / (1.0 - threshold))
    return np.where(p <= threshold, lo, hi).astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    """A disk structuring element (as ``skimage.morphology.disk``)."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def _sample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= MAX_SAMPLES else x[rng.choice(len(x), MAX_SAMPLES, replace=False)]


def refine_outline(image: np.ndarray, prob: np.ndarray, threshold: float = 0.5, min_size: int | None = None,
                   largest_only: bool = False, drop_edge_fragments: bool = True, band: float = BAND,
                   alpha: float = ALPHA, fill_holes: bool = True) -> np.ndarray:
    """Refined lesion map of the same (h, w) as ``prob``: lesion where the result is above 0.5.

    ``image``: (h, w, 3) RGB, the same grid as ``prob`` (the network's upsampled probabilities); uint8, or
    16-bit / float converted as :func:`~napari_nevus_seg.segment` converts them (floats in [0, 1] scaled by
    255). Grayscale and RGBA images are refused (convert them with :func:`~napari_nevus_seg.to_rgb_uint8`).
    ``prob``: (h, w) probabilities in [0, 1]; NaN counts as 0 (no lesion).
    ``threshold``, ``min_size``, ``largest_only``, ``drop_edge_fragments`` and ``fill_holes`` decide the
    lesions to refine as :func:`~napari_nevus_seg.inference.postprocess.postprocess` does. Where no colour model
    can be built, the probabilities are returned remapped so that ``threshold`` becomes 0.5 (the outline
    is unchanged). Wrong shapes, types and arguments raise ``ValueError``.
    """
    check_args(threshold, min_size)
    if not (np.isfinite(band) and band > 0):
        raise ValueError(f"band must be a positive fraction of the lesion radius, got {band}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    image = _rgb_uint8(image)
    prob = _probabilities(prob)
    if image.shape[:2] != prob.shape:
        raise ValueError(f"image {image.shape[:2]} and probability map {prob.shape} must have the same shape")
    lab = labels_from_mask(prob > threshold, min_size, fill_holes, largest_only, drop_edge_fragments)
    if lab.max() == 0:
        return _remap(prob, threshold)
    r = max(2.0, band * np.sqrt(np.count_nonzero(lab == 1) / np.pi))
    # everything happens within the lesions' bounding box grown by the ring and the smoothing's reach
    box = _grown_box(lab > 0, int(np.ceil(max(2 * r, r + 4 * SMOOTH_SIGMA))) + 2)
    new = _refined_mask(image[box], lab[box], r, alpha, fill_holes)
    if new is None:
        return _remap(prob, threshold)
    out = np.zeros(prob.shape, np.float32)
    out[box] = np.clip(ndi.gaussian_filter(new.astype(np.float32), SMOOTH_SIGMA), 0.0, 1.0)
    return out


def _rgb_uint8(image) -> np.ndarray:
    """(h, w, 3) uint8 RGB; other dtypes converted as segment() converts them, other layouts refused."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {arr.shape}; "
                         "convert grayscale or RGBA images with napari_nevus_seg.to_rgb_uint8()")
    if arr.dtype == np.uint8:
        return arr
    from napari_nevus_seg.inference.preprocess import (
        as_uint8_rgb,  # imports PyTorch: only for images that are not uint8 already
    )

    return as_uint8_rgb(arr)


def _probabilities(prob) -> np.ndarray:
    """(h, w) float32 probabilities: NaN -> 0, clipped to [0, 1]; ValueError for other shapes or scales."""
    arr = np.asarray(prob)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"the probability map must be a non-empty 2-D (h, w) array, got shape {arr.shape}")
    if arr.dtype.kind not in "uifb":
        raise ValueError(f"the probability map must hold numbers, got dtype {arr.dtype}")
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"the probability map must hold probabilities in [0, 1], found {lo:g} .. {hi:g} "
                         "(logits? apply a sigmoid first)")
    return np.clip(arr, 0.0, 1.0, out=arr)


def _grown_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (slice(max(0, rows[0] - margin), min(mask.shape[0], rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(mask.shape[1], cols[-1] + 1 + margin)))


def _refined_mask(image: np.ndarray, lab: np.ndarray, r: float, alpha: float, fill: bool) -> np.ndarray | None:
    """The refined boolean mask of the lesions ``lab`` (a crop), or None when no colour model can be built."""
    seg = lab > 0
    inside = ndi.distance_transform_edt(seg).astype(np.float32)
    deepest = np.zeros(lab.max() + 1, np.float32)
    np.maximum.at(deepest, lab[seg], inside[seg])
    core = inside > np.minimum(r, 0.5 * deepest)[lab]
    # the ring as it would be on an unbounded image (padded), to tell how much of it the image shows
    pad = int(np.ceil(2 * r)) + 1
    outside_all = ndi.distance_transform_edt(np.pad(~seg, pad, constant_values=True)).astype(np.float32)
    ring_all = np.count_nonzero((outside_all > r) & (outside_all <= 2 * r))
    outside = outside_all[pad:-pad, pad:-pad]
    near = outside <= 2 * r                       # colours are needed here only (1-D arrays over `near`)
    cielab = lab_u8(image[near])
    in_core, in_band = core[near], ~core[near] & (outside[near] <= r)
    in_ring = (outside[near] > r) & (cielab[:, 0] > VIGNETTE_L)
    if np.count_nonzero(in_core) < MIN_SAMPLES \
            or np.count_nonzero(in_ring) < max(MIN_SAMPLES, MIN_SKIN_SHARE * ring_all):
        return None
    rng = np.random.default_rng(0)
    a, b = _sample(cielab[in_core], rng), _sample(cielab[in_ring], rng)
    scatter = np.cov(a.T) + np.cov(b.T) + 1e-3 * np.eye(3)
    w = np.linalg.solve(scatter, a.mean(0) - b.mean(0)).astype(np.float32)
    pa, pb = float((a @ w).mean()), float((b @ w).mean())
    if not pa > pb:  # degenerate colours
        return None
    cut = pb + alpha * (pa - pb)
    new = core.copy()
    new[near] |= in_band & (cielab @ w > cut)
    new = ndi.binary_opening(new, structure=_disk(OPEN_RADIUS)) | core
    if fill:
        new = fill_mask_holes(new)
    parts, n = ndi.label(new)
    attached = np.zeros(n + 1, bool)
    attached[np.unique(parts[core])] = True
    attached[0] = False
    return attached[parts]


def work_shape(shape: tuple[int, int], side: int = REFINE_SIDE) -> tuple[int, int]:
    """The refinement grid for an image of ``shape``: long side at most ``side``, never upsampled.

    Images more elongated than 2:1 keep a short side of ``side / 2`` (their long side grows with them),
    so that their lesions are not squeezed to a few pixels.
    """
    h, w = shape
    s = min(1.0, side / min(max(h, w), 2 * min(h, w)))   # 2: preprocess.MAX_ASPECT (not imported: no torch here)
    return max(1, round(h * s)), max(1, round(w * s))


def refine_small(image_u8: np.ndarray, prob_small: torch.Tensor, threshold: float = 0.5,
                 min_size: int | None = None, largest_only: bool = False,
                 drop_edge_fragments: bool = True, fill_holes: bool = True) -> torch.Tensor:
    """The network's (h, w) map for a full (H, W, 3) uint8 image -> the refined map on the work grid.

    The result (a float32 tensor on ``prob_small``'s device) is thresholded at 0.5 by the caller
    (:func:`~napari_nevus_seg.inference.postprocess.labels_from_small`). ``min_size`` is in full-resolution pixels.
    """
    import torch

    small, prob, work_min = refine_inputs(image_u8, prob_small, min_size)
    out = refine_outline(small, prob, threshold, work_min, largest_only, drop_edge_fragments, fill_holes=fill_holes)
    return torch.from_numpy(out).to(prob_small.device)


def refine_inputs(image_u8: np.ndarray, prob_small: torch.Tensor,
                  min_size: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """The image and the network's map on the work grid, and ``min_size`` in work-grid pixels.

    :func:`refine_small` is ``refine_outline(*refine_inputs(...), ...)``; the batch pipeline sends
    these (small) arrays to worker processes.
    """
    import torch.nn.functional as F

    from napari_nevus_seg.inference.preprocess import resize_uint8

    shape = image_u8.shape[:2]
    hw, ww = work_shape(shape)
    prob = F.interpolate(prob_small.float()[None, None], size=(hw, ww), mode="bilinear",
                         align_corners=False)[0, 0].cpu().numpy()
    small = image_u8 if (hw, ww) == shape else resize_uint8(image_u8, (hw, ww))
    full_min = default_min_size(shape) if min_size is None else int(min_size)
    work_min = max(1, round(full_min * (hw * ww) / (shape[0] * shape[1])))
    return small, prob, work_min
