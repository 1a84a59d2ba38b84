"""napari sample data: synthetic dermoscopy images with their exact ground truth.

Generated on the fly by :func:`napari_nevus_seg.io.synthetic.synthetic_lesion_image` (no real patient
images are shipped). Each sample gives an RGB image and a ``ground truth`` Labels layer, both at a
pixel size of 0.02 mm (``scale`` with ``units=("mm", "mm")``), so measurements come out in mm; the ruler
sample leaves the pixel size for the user to find from the millimetre ruler drawn in it (*Set scale from
a ruler*).
"""

from __future__ import annotations

import uuid

from napari_nevus_seg._napari._layers import CASE_KEY, ground_truth_display
from napari_nevus_seg.io.synthetic import synthetic_lesion_image
from napari_nevus_seg.io.synthetic_ruler import draw_ruler

PIXEL_SIZE_MM = 0.02


def _sample(name: str, seed: int, n_lesions: int) -> list[tuple]:
    case = synthetic_lesion_image(seed=seed, n_lesions=n_lesions, pixel_size_mm=PIXEL_SIZE_MM)
    spatial = {"scale": (PIXEL_SIZE_MM, PIXEL_SIZE_MM), "units": ("mm", "mm")}
    meta = {CASE_KEY: uuid.uuid4().hex, "synthetic": True, "seed": seed, "pixel_size_mm": PIXEL_SIZE_MM,
            "colours": case.colours}
    return [
        (case.image, {"name": name, "rgb": True, "metadata": meta, **spatial}, "image"),
        (case.labels, {"name": f"{name} ground truth", "metadata": {**meta, "ground_truth": True}, **spatial,
                       **ground_truth_display()}, "labels"),
    ]


def sample_lesion() -> list[tuple]:
    """One synthetic pigmented lesion (512x384 px, 0.02 mm per pixel) and its ground truth."""
    return _sample("synthetic lesion", seed=2, n_lesions=1)


def sample_multi() -> list[tuple]:
    """Three synthetic lesions on one image (512x384 px, 0.02 mm per pixel) and their ground truth."""
    return _sample("synthetic lesions", seed=1, n_lesions=3)


def sample_ruler() -> list[tuple]:
    """A synthetic lesion photographed with a millimetre ruler (768x576 px, 0.02 mm per pixel, so 50 px
    per mm), without a pixel size: find it with *Set scale from a ruler*."""
    case = synthetic_lesion_image(seed=4, shape=(576, 768), n_lesions=1)
    image = draw_ruler(case.image, start=(505.0, 84.0), spacing_px=1.0 / PIXEL_SIZE_MM, ticks=13)
    meta = {CASE_KEY: uuid.uuid4().hex, "synthetic": True, "seed": 4, "ruler_pixel_size_mm": PIXEL_SIZE_MM,
            "colours": case.colours}
    return [
        (image, {"name": "synthetic lesion with ruler", "rgb": True, "metadata": meta}, "image"),
        (case.labels, {"name": "synthetic lesion with ruler ground truth", "metadata": {**meta, "ground_truth": True},
                       **ground_truth_display()}, "labels"),
    ]
