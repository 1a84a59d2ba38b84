"""Lesion masks to instance labels, on NumPy arrays only (no PyTorch: cheap to import in worker processes).

Hole filling, removal of specks and of fragments at the image's frame, and numbering of the lesions
1..N by decreasing area. :mod:`napari_nevus_seg.inference.postprocess` builds on these for probability maps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

EDGE_FRAGMENT_FRACTION = 0.25  # a lesion touching the frame below this fraction of the largest is a fragment


def check_args(threshold: float, min_size: int | None = None) -> None:
    """Refuse a threshold outside (0, 1) (NaN included) and a negative ``min_size``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    if min_size is not None and not min_size >= 0:
        raise ValueError(f"min_size must be a number of pixels >= 0 (or None for the default), got {min_size}")


def lesion_mask(mask, image_shape: tuple[int, int] | None = None, where: str = "mask") -> np.ndarray:
    """A training or scoring mask as an (H, W) boolean array: lesion where non-zero.

    Accepts bool, integer-label and float masks, (H, W, 1) and colour (H, W, 3 or 4: their brightest
    channel) ones. Raises ``ValueError`` starting with ``where`` (a file or pair name) for other shapes,
    NaN values, non-numeric dtypes, and a size other than ``image_shape`` (rows, columns) when given.
    """
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] in (3, 4):
        m = m[..., :3].max(-1)
    elif m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"{where}: a mask must be 2-D (H, W) or colour (H, W, 3); got shape {m.shape}")
    if m.dtype.kind not in "buif":
        raise ValueError(f"{where}: a mask must hold booleans or numbers; got dtype {m.dtype}")
    if m.dtype.kind == "f" and np.isnan(m).any():
        raise ValueError(f"{where}: the mask holds NaN values; a mask must say lesion (non-zero) or not (0) "
                         "for every pixel")
    if image_shape is not None and m.shape != tuple(image_shape[:2]):
        raise ValueError(f"{where}: mask shape {m.shape} does not match image shape {tuple(image_shape[:2])}")
    return m != 0


def default_min_size(shape: tuple[int, int]) -> int:
    """Default smallest lesion kept: 0.1 % of the image area (at least 16 pixels)."""
    return max(16, int(0.001 * shape[0] * shape[1]))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes of a 2-D mask: background not 4-connected to the image border.

    Gives the same result as ``scipy.ndimage.binary_fill_holes(mask)`` several times faster.
    """
    bg, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    is_hole = np.ones(n + 1, bool)
    is_hole[0] = False
    is_hole[np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))] = False
    return mask | is_hole[bg]


def edge_labels(lab: np.ndarray, n: int) -> np.ndarray:
    """(n + 1,) bool: which labels of ``lab`` touch the image's border."""
    edge = np.zeros(n + 1, bool)
    edge[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    edge[0] = False
    return edge


def relabel_table(areas: np.ndarray, n: int, min_size: int, largest_only: bool,
           edge: np.ndarray | None = None) -> np.ndarray:
    """Lookup table: old label -> new label (0 = dropped), lesions >= ``min_size`` by decreasing area.

    ``edge`` (bool per label, touching the image border): when given, lesions touching the border that
    are smaller than :data:`EDGE_FRAGMENT_FRACTION` of the largest lesion are dropped (frame fragments).
    """
    areas = np.asarray(areas).copy()
    areas[0] = 0
    order = np.argsort(-areas[1:], kind="stable") + 1
    keep = order[areas[order] >= max(1, min_size)]
    if largest_only:
        keep = keep[:1]
    elif edge is not None and len(keep) > 1:
        fragment = edge[keep] & (areas[keep] < EDGE_FRAGMENT_FRACTION * areas[keep[0]])
        keep = keep[~fragment]
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return remap


def _relabel(lab: np.ndarray, n: int, min_size: int, largest_only: bool, drop_edge_fragments: bool) -> np.ndarray:
    """Drop components smaller than ``min_size`` and number the rest 1..N by decreasing area (in place)."""
    if n == 0:
        return lab
    edge = edge_labels(lab, n) if drop_edge_fragments else None
    remap = relabel_table(np.bincount(lab.ravel(), minlength=n + 1), n, min_size, largest_only, edge)
    return np.take(remap, lab, out=lab)


def labels_from_mask(mask: np.ndarray, min_size: int | None = None, fill: bool = True,
                     largest_only: bool = False, drop_edge_fragments: bool = False) -> np.ndarray:
    """(H, W) boolean mask -> (H, W) int32 labels: holes filled, specks removed, 1..N by decreasing area.

    ``drop_edge_fragments``: also drop lesions touching the image border that are smaller than a quarter
    of the largest lesion (the dark frame of a dermatoscope's field of view, cut-off fragments).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if fill:
        mask = fill_holes(mask)
    lab, n = ndi.label(mask, output=np.int32)
    min_size = default_min_size(mask.shape) if min_size is None else int(min_size)
    return _relabel(lab, n, min_size, largest_only, drop_edge_fragments)
