"""A small lesion in a large frame, with its exact mask: the case the zoomed second look is for."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from napari_nevus_seg import synthetic_lesion_image


def small_lesion_in_large_frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic lesion image shrunk 2x and pasted into lesion-free synthetic skin of 1152x1536:
    (image uint8, mask bool); the lesion covers 0.2-0.5 % of the frame."""
    big = synthetic_lesion_image(seed=seed, shape=(1152, 1536), n_lesions=0, hair=False).image.copy()
    case = synthetic_lesion_image(seed=seed, shape=(384, 512), hair=False)
    big[500:692, 700:956] = (resize(case.image, (192, 256), anti_aliasing=True) * 255).astype(np.uint8)
    truth = np.zeros(big.shape[:2], bool)
    truth[500:692, 700:956] = resize(case.mask.astype(float), (192, 256)) > 0.5
    return big, truth
