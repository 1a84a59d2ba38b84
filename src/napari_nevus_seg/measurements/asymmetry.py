"""Asymmetry features of a lesion for the calibrated 0/1/2 asymmetry score: outline, colours and structure.

Experts score Stolz's A from the outline *and* from the colours and structures on either side of two
perpendicular axes. For the two axes of the outline's best mirror symmetry (:func:`.shape.mirror_asymmetry`,
axis 1 and axis 1 + 90 degrees) the lesion is cut into halves, and for each axis we measure

- **shape**: the share of the area that misses its mirror image (``asymmetry_axis1``, ``asymmetry_axis2``);
- **mean colour**: CIEDE2000 between the halves' mean colours (``colour_asymmetry_axis*_dE``);
- **colour distribution**: the total-variation distance (0 = same, 1 = disjoint) between the halves'
  histograms of CIE L* and b* (10 x 10 bins: L* 0-100 by 10, b* -30-70 by 10, values beyond clipped),
  which sees a dark or bluish patch on one side even when the mean colours are alike;
- **structure**: the fine texture, ``|L* - L* smoothed|`` with a Gaussian of 2 pixels of the measuring
  grid (normalised within the lesion so that skin does not leak in), averaged over each half; the
  feature is ``|t1 - t2| / (t1 + t2)`` (0 for equal texture, 1 when one half has none).

Since the two axes can swap under a small turn of the image when they are nearly as asymmetric as each
other, the colour and structure figures enter the score as the larger and the smaller over the two axes
(order-free), the shape figures as axis 1 (the more symmetric) and axis 2. :data:`ASYMMETRY_FEATURES`
lists them in the order the model (:mod:`.calibrated`) expects. No Qt or napari here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_nevus_seg.measurements.colour import halves_delta_e

ASYMMETRY_FEATURES = ("shape_axis1", "shape_axis2", "colour_dE_max", "colour_dE_min",
                      "colour_distribution_max", "colour_distribution_min", "structure_max", "structure_min")

_L_EDGES = np.linspace(0.0, 100.0, 11)
_B_EDGES = np.linspace(-30.0, 70.0, 11)
TEXTURE_SIGMA_PX = 2.0


def fine_texture(lightness: np.ndarray, mask: np.ndarray, sigma: float = TEXTURE_SIGMA_PX) -> np.ndarray:
    """``|L* - smoothed L*|`` at the lesion's pixels (1-D, in ``mask``'s order), the smoothing a Gaussian of
    ``sigma`` pixels normalised within the lesion (skin pixels do not contribute)."""
    m = mask.astype(float)
    num = ndimage.gaussian_filter(np.where(mask, lightness, 0.0), sigma)
    den = ndimage.gaussian_filter(m, sigma)
    smooth = num[mask] / np.maximum(den[mask], 1e-6)
    return np.abs(lightness[mask] - smooth)


def distribution_distance(lab: np.ndarray, left: np.ndarray) -> float:
    """Total-variation distance between the L*/b* histograms of the two halves (NaN when a half is empty)."""
    if not left.any() or left.all():
        return float("nan")
    L = np.clip(lab[:, 0], _L_EDGES[0], _L_EDGES[-1] - 1e-6)
    b = np.clip(lab[:, 2], _B_EDGES[0], _B_EDGES[-1] - 1e-6)
    h1 = np.histogram2d(L[left], b[left], [_L_EDGES, _B_EDGES])[0]
    h2 = np.histogram2d(L[~left], b[~left], [_L_EDGES, _B_EDGES])[0]
    return float(0.5 * np.abs(h1 / h1.sum() - h2 / h2.sum()).sum())


def texture_difference(texture: np.ndarray, left: np.ndarray) -> float:
    """``|t1 - t2| / (t1 + t2)`` of the halves' mean fine texture (0 when both are flat or a half is empty)."""
    if not left.any() or left.all():
        return float("nan")
    t1, t2 = float(texture[left].mean()), float(texture[~left].mean())
    return abs(t1 - t2) / (t1 + t2) if t1 + t2 > 0 else 0.0


def asymmetry_features(shape_axes: tuple[float, float], lesion_lab: np.ndarray, texture: np.ndarray,
                       halves: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The :data:`ASYMMETRY_FEATURES` of one lesion.

    Parameters
    ----------
    shape_axes : (float, float)
        Mirror asymmetry about axis 1 and axis 2.
    lesion_lab : (N, 3) array
        CIE L*a*b* of the lesion's pixels.
    texture : (N,) array
        :func:`fine_texture` at the same pixels.
    halves : two (N,) bool arrays
        The pixels on one side of axis 1 and of axis 2.
    """
    de = [halves_delta_e(lesion_lab, h) for h in halves]
    dist = [distribution_distance(lesion_lab, h) for h in halves]
    struct = [texture_difference(texture, h) for h in halves]
    return np.array([shape_axes[0], shape_axes[1], max(de), min(de), max(dist), min(dist),
                     max(struct), min(struct)], dtype=float)
