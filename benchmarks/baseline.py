"""Classical baseline for lesion segmentation: Otsu threshold on the blue channel.

Dark (pigmented) pixels below the Otsu threshold of the smoothed blue channel, the connected component
nearest the image centre among the large ones, holes filled. This is the reference every model is
compared with in the quality benchmark.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology, transform


def otsu_baseline(img: np.ndarray, work_size: int = 256) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) boolean lesion mask."""
    h, w = img.shape[:2]
    scale = work_size / max(h, w)
    small = transform.resize(img, (max(8, round(h * scale)), max(8, round(w * scale))), anti_aliasing=True)
    blue = filters.gaussian(small[..., 2], sigma=2)
    # ignore the dark corners of the dermoscope's circular field of view
    yy, xx = np.mgrid[:blue.shape[0], :blue.shape[1]]
    r = np.hypot((yy - blue.shape[0] / 2) / (blue.shape[0] / 2), (xx - blue.shape[1] / 2) / (blue.shape[1] / 2))
    inside = r < 1.0
    t = filters.threshold_otsu(blue[inside])
    mask = (blue < t) & inside
    mask = ndi.binary_opening(mask, morphology.disk(2))
    lab = measure.label(mask)
    if lab.max() == 0:
        return np.zeros((h, w), bool)
    props = measure.regionprops(lab)
    big = [p for p in props if p.area >= 0.01 * mask.size] or props
    cy, cx = blue.shape[0] / 2, blue.shape[1] / 2
    best = min(big, key=lambda p: np.hypot(p.centroid[0] - cy, p.centroid[1] - cx) / np.sqrt(p.area))
    keep = ndi.binary_fill_holes(lab == best.label)
    return transform.resize(keep.astype(np.float32), (h, w), order=1) > 0.5
