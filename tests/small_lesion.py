"""A small lesion in a large frame, with its exact mask: the case the zoomed second look is for."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

from napari_nevus_seg import synthetic_lesion_image


def small_lesion_in_large_frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The lesion of a synthetic 384x512 image with 24 px of its skin around it, shrunk 2x and pasted
    into the middle of lesion-free synthetic skin of 1152x1536: (image uint8, mask bool); the lesion
    covers 0.2-0.5 % of the frame."""
    big = synthetic_lesion_image(seed=seed, shape=(1152, 1536), n_lesions=0, hair=False).image.copy()
    case = synthetic_lesion_image(seed=seed, shape=(384, 512), hair=False)
    rows, cols = ndi.find_objects(case.mask.astype(np.uint8))[0]
    r0, c0 = max(0, rows.start - 24), max(0, cols.start - 24)
    patch, mask = case.image[r0:rows.stop + 24, c0:cols.stop + 24], case.mask[r0:rows.stop + 24, c0:cols.stop + 24]
    h, w = patch.shape[0] // 2, patch.shape[1] // 2
    y, x = 576 - h // 2, 768 - w // 2
    big[y:y + h, x:x + w] = (resize(patch, (h, w), anti_aliasing=True) * 255).astype(np.uint8)
    truth = np.zeros(big.shape[:2], bool)
    truth[y:y + h, x:x + w] = resize(mask.astype(float), (h, w)) > 0.5
    return big, truth
