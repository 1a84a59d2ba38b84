"""From the network's small probability map to full-resolution probabilities and instance labels.

The network sees the whole image at its input size (e.g. 128 x 128). Its probability map is brought
back to the image's size by bilinear interpolation (smooth outlines), computed in horizontal bands so
that memory stays bounded for any image size.

Labels of images up to :data:`EXACT_PIXELS` pixels are post-processed at full resolution (threshold,
hole filling, connected components, removal of specks). Larger images are post-processed on a work
grid of :data:`WORK_FACTOR` times the network's resolution, which already resolves every shape a
bilinear upsampling of the network's map can make; the full-resolution labels are then composed from
the work grid: pixels well inside a lesion take its label, and in a one-cell band around each outline
the full-resolution threshold decides, so edges stay as smooth as the exact computation's.
Lesion areas (for ``min_size`` and the numbering by decreasing area) are always counted at full resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from napari_nevus_seg.inference.masks import (
    check_args,
    default_min_size,
    edge_labels,
    fill_holes,
    labels_from_mask,
    relabel_table,
)
from napari_nevus_seg.io.deadline import check_deadline

BAND_PIXELS = 2_000_000    # full-resolution pixels computed per band
EXACT_PIXELS = 1_000_000   # images up to this many pixels are post-processed at full resolution
WORK_FACTOR = 4            # work grid = this many times the network's output resolution


# ------------------------------------------------------------------------------------ upsampling
def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resampling with half-pixel centres (align_corners=False)."""
    x = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(x).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (x - i0).astype(np.float32)


def iter_upsampled(prob_small: torch.Tensor, shape: tuple[int, int], band_pixels: int = BAND_PIXELS):
    """Yield ``(r0, r1, band)``: rows r0..r1 of the bilinear upsampling of ``prob_small`` (h, w) to ``shape``.

    Bands are torch tensors on ``prob_small``'s device; the same numbers as
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` of the whole map (separable filter).
    """
    h_out, w_out = shape
    src = prob_small.float()
    cols = F.interpolate(src[None, None], size=(src.shape[0], w_out), mode="bilinear", align_corners=False)[0, 0]
    i0, i1, fy = _axis_weights(src.shape[0], h_out)
    i0, i1 = torch.from_numpy(i0).to(src.device), torch.from_numpy(i1).to(src.device)
    fy = torch.from_numpy(fy).to(src.device)[:, None]
    band = max(1, band_pixels // max(w_out, 1))
    for r0 in range(0, h_out, band):
        check_deadline(f"upsampling the map, row {r0} of {h_out}")
        r1 = min(h_out, r0 + band)
        yield r0, r1, torch.lerp(cols[i0[r0:r1]], cols[i1[r0:r1]], fy[r0:r1])


def upsample_proba(prob_small: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) probability tensor -> (H, W) float32 numpy array, bilinear, in bounded memory."""
    out = np.empty(shape, np.float32)
    for r0, r1, band in iter_upsampled(prob_small, shape):
        out[r0:r1] = band.cpu().numpy()
    return out


def upsample_mask(prob_small: torch.Tensor, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """(h, w) probability tensor -> (H, W) boolean mask ``upsampled > threshold`` (bounded memory)."""
    out = np.empty(shape, bool)
    for r0, r1, band in iter_upsampled(prob_small, shape):
        out[r0:r1] = (band > threshold).cpu().numpy()
    return out


# ------------------------------------------------------------------------------- post-processing
def postprocess(prob: np.ndarray, threshold: float = 0.5, min_size: int | None = None,
                fill_holes: bool = True, largest_only: bool = False, drop_edge_fragments: bool = True) -> np.ndarray:
    """(H, W) probabilities -> (H, W) int32 labels: 0 background, 1..N one per lesion.

    Threshold (``prob > threshold``), hole filling, connected components (4-connected), removal of
    specks smaller than ``min_size`` pixels (default :func:`default_min_size`: 0.1 % of the image),
    lesions numbered by decreasing area (label 1 is the largest); ``largest_only`` keeps label 1 only.
    ``drop_edge_fragments`` drops lesions touching the image border that are smaller than a quarter of
    the largest one: on dermoscopy images these are the dark corners of the dermatoscope's field of view
    (on the 20 PH2 cases every such detection was one).
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"expected a 2-D probability map, got shape {prob.shape}")
    check_args(threshold, min_size)
    return labels_from_mask(prob > threshold, min_size, fill_holes, largest_only, drop_edge_fragments)


def labels_from_small(prob_small: torch.Tensor, shape: tuple[int, int], threshold: float = 0.5,
                      min_size: int | None = None, fill: bool = True, largest_only: bool = False,
                      drop_edge_fragments: bool = True, exact_pixels: int = EXACT_PIXELS,
                      work_factor: int = WORK_FACTOR) -> np.ndarray:
    """The network's (h, w) probability map -> (H, W) int32 labels at the image's resolution.

    Same result as ``postprocess(upsample_proba(prob_small, shape), ...)`` up to rare differences of a
    few outline pixels (e.g. where two lesions almost touch), at a fraction of the cost for large
    images: topology is decided on the work grid (``work_factor`` times the map's resolution), and the
    full-resolution threshold is evaluated only in the band around each outline.
    """
    check_args(threshold, min_size)
    h_out, w_out = shape
    min_size = default_min_size(shape) if min_size is None else int(min_size)
    hs, ws = prob_small.shape[-2:]
    hw, ww = min(h_out, work_factor * hs), min(w_out, work_factor * ws)
    if h_out * w_out <= exact_pixels or (hw, ww) == (h_out, w_out):
        return labels_from_mask(upsample_mask(prob_small, shape, threshold), min_size, fill, largest_only,
                                drop_edge_fragments)

    # work grid: topology (holes, components) is decided here
    work = F.interpolate(prob_small.float()[None, None], size=(hw, ww), mode="bilinear", align_corners=False)
    mask_w = (work[0, 0] > threshold).cpu().numpy()
    if fill:
        mask_w = fill_holes(mask_w)
    lab_w, n = ndi.label(mask_w, output=np.int32)
    if n == 0:
        return np.zeros(shape, np.int32)
    # code > 0: certainly that lesion (the cell and its 8 neighbours are in it);
    # code < 0: that lesion where the full-resolution map is above the threshold (band along outlines)
    grown = ndi.maximum_filter(lab_w, size=3)
    inside = (ndi.minimum_filter(lab_w, size=3) == grown) & (lab_w > 0)
    code = np.where(inside, lab_w, -grown)
    # full-resolution rows and columns of each work cell (nearest neighbour)
    row_counts = _cell_counts(h_out, hw)
    col_counts = _cell_counts(w_out, ww)
    edge_idx, edge_lab = _outline_pixels(prob_small, code, row_counts, col_counts, shape, threshold)
    # exact full-resolution areas -> keep / order the lesions before composing
    pos = code > 0
    areas = np.bincount(code[pos], weights=np.outer(row_counts, col_counts)[pos], minlength=n + 1)
    areas += np.bincount(edge_lab, minlength=n + 1)
    edge = edge_labels(lab_w, n) if drop_edge_fragments else None
    remap = relabel_table(areas.astype(np.int64), n, min_size, largest_only, edge)
    out = np.repeat(np.repeat(remap[np.maximum(code, 0)], row_counts, axis=0), col_counts, axis=1)
    out.ravel()[edge_idx] = remap[edge_lab]
    return out


def _cell_counts(n_out: int, n_work: int) -> np.ndarray:
    """How many full-resolution pixels map to each work cell along one axis (nearest neighbour)."""
    idx = np.minimum(((np.arange(n_out) + 0.5) * (n_work / n_out)).astype(np.int64), n_work - 1)
    return np.bincount(idx, minlength=n_work)


def _outline_pixels(prob_small, code, row_counts, col_counts, shape, threshold):
    """Flat indices and labels of the full-resolution pixels of outline cells (code < 0) above threshold."""
    h_out, w_out = shape
    small = prob_small.float().cpu().numpy()
    x0, x1, fx = _axis_weights(small.shape[1], w_out)
    y0, y1, fy = _axis_weights(small.shape[0], h_out)
    cols = small[:, x0] + (small[:, x1] - small[:, x0]) * fx     # (h, W): interpolated along x
    r, c = np.nonzero(code < 0)
    n_pix = row_counts[r] * col_counts[c]                          # full-resolution pixels of each cell
    cell = np.repeat(np.arange(len(r)), n_pix)
    k = np.arange(int(n_pix.sum())) - np.repeat(np.cumsum(n_pix) - n_pix, n_pix)  # index inside the cell
    ncol = col_counts[c][cell]
    y = (np.cumsum(row_counts) - row_counts)[r][cell] + k // ncol
    x = (np.cumsum(col_counts) - col_counts)[c][cell] + k % ncol
    top, bottom = cols[y0[y], x], cols[y1[y], x]
    above = (top + (bottom - top) * fy[y]) > threshold
    return y[above] * w_out + x[above], -code[r, c][cell[above]]
