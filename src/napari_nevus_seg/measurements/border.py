"""Border measures for :func:`napari_nevus_seg.measure`: irregularity of the outline and abruptness of the edge.

No Qt or napari here. Everything is in physical units (pixel coordinates times the pixel size).

Irregularity (outline only):

- ``border_convexity``: convex-hull perimeter / perimeter (1 for a convex outline, lower when the
  outline has notches and bays);
- ``border_fractal_dimension``: box-counting dimension of the outline (about 1.02 for a smooth curve,
  rising for ragged ones), box sizes from 1/128 (at least 2 pixels) to 1/8 of the greatest diameter,
  the count taken over grid offsets and turns (see :func:`box_counting_dimension`);
- ``border_roughness``: the radial profile (distance from the centroid along the outline) minus its
  smooth part (Fourier harmonics 0-8, which keep elongation and lobes), RMS over the mean radius.

Abruptness (the dermoscopist's B: an abrupt cut-off of the pigment at the periphery, in eight 45-degree
sectors): around the lesion centroid, starting at the lesion's first symmetry axis (so the count does
not depend on how the image is turned), each sector's CIE L* profile across the border is averaged in
16 bins of signed distance from the outline, over a band of +/- W with W = 20 % of the equivalent
radius (at least 8 pixels). The lightness change across the border is the mean of the outer quarter
of the band minus the inner quarter (ΔL*). The sector's sharpness is the largest change over any
window of width W/2 (four bins) divided by ΔL*: 1 for a step, 1/3 for a linear fade over the whole
band. A sector counts as abrupt when sharpness >= 2/3 and |ΔL*| >= 4 (a visible contrast).
Pixels of other lesions and outside the image are left out; a sector without skin around it (lesion at
the image edge) is not scored.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

N_SECTORS = 8
N_BINS = 16


#: box sizes of the box-counting dimension, as shares of the greatest diameter (and at least 2 pixels)
BOX_RANGE = (1.0 / 128.0, 1.0 / 8.0)
#: grid turns (spread over 90 degrees) and offsets per axis over which the box count is taken
BOX_TURNS, BOX_OFFSETS = 6, 2


def box_counting_dimension(outline: np.ndarray, step: float, max_feret: float) -> float:
    """Box-counting dimension of a closed outline (physical units).

    Box sizes run from ``max_feret / 128`` (at least ``2 * step``, two pixels) to ``max_feret / 8``, a
    fixed share of the lesion so that the value does not depend on how many pixels it spans (NaN when
    the range is under a factor of 4: lesions under about 64 px). At each size the count is the smallest
    over 2 x 2 grid offsets, and its logarithm the mean over 6 grid turns (0-75 degrees), so that the
    value does not depend on how the lesion lies on the pixel grid.
    """
    eps_min, eps_max = max(2.0 * step, BOX_RANGE[0] * max_feret), BOX_RANGE[1] * max_feret
    if len(outline) < 8 or eps_max < 4.0 * eps_min:
        return float("nan")
    closed = np.vstack([outline, outline[:1]])
    seg = np.diff(closed, axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    # resample densely (spacing <= eps_min / 4) so that every box the curve crosses holds a point
    n_sub = np.maximum(1, np.ceil(seglen / (eps_min / 4.0)).astype(int))
    t = np.concatenate([np.arange(k) / k for k in n_sub])
    base = np.repeat(closed[:-1], n_sub, axis=0)
    pts = base + np.repeat(seg, n_sub, axis=0) * t[:, None]
    pts -= pts.mean(axis=0)
    sizes = np.geomspace(eps_min, eps_max, 8)
    shifts = [np.array([oy, ox]) / BOX_OFFSETS for oy in range(BOX_OFFSETS) for ox in range(BOX_OFFSETS)]
    log_counts = np.zeros(len(sizes))
    for angle in np.radians(np.arange(BOX_TURNS) * (90.0 / BOX_TURNS)):
        c, s = np.cos(angle), np.sin(angle)
        turned = pts @ np.array([[c, -s], [s, c]])
        rel = turned - turned.min(axis=0)
        for i, e in enumerate(sizes):
            count = min(_occupied_boxes(np.floor(rel / e + shift).astype(np.int64)) for shift in shifts)
            log_counts[i] += np.log(count) / BOX_TURNS
    return float(np.polyfit(np.log(1.0 / sizes), log_counts, 1)[0])


def _occupied_boxes(cell: np.ndarray) -> int:
    return len(np.unique(cell[:, 0] * (int(cell[:, 1].max()) + 1) + cell[:, 1]))


def radial_roughness(outline: np.ndarray, centroid: np.ndarray, harmonics: int = 8, samples: int = 512) -> float:
    """RMS of the radial profile's non-smooth part (above ``harmonics``) over the mean radius."""
    if len(outline) < 8:
        return float("nan")
    closed = np.vstack([outline, outline[:1]])
    seglen = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seglen)])
    if s[-1] <= 0:
        return float("nan")
    u = np.linspace(0.0, s[-1], samples, endpoint=False)
    pts = np.stack([np.interp(u, s, closed[:, 0]), np.interp(u, s, closed[:, 1])], axis=1)
    r = np.hypot(*(pts - centroid).T)
    spec = np.fft.rfft(r)
    spec[harmonics + 1:] = 0.0
    smooth = np.fft.irfft(spec, n=samples)
    return float(np.sqrt(np.mean((r - smooth) ** 2)) / max(r.mean(), 1e-12))


def signed_distance(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Distance to the outline in physical units: negative inside the lesion, positive outside."""
    s = np.asarray(spacing, dtype=float)
    half = 0.5 * float(s.min())
    outside = ndimage.distance_transform_edt(~mask, sampling=s) - half
    inside = ndimage.distance_transform_edt(mask, sampling=s) - half
    return np.where(mask, -inside, outside)


def band_width(r_eq: float, spacing: tuple[float, float]) -> float:
    """Half-width W of the band across the border used for abruptness (physical units)."""
    return max(0.2 * r_eq, 8.0 * float(max(spacing)))


def border_abruptness(lightness: np.ndarray, mask: np.ndarray, usable: np.ndarray, spacing: tuple[float, float],
                      centroid: np.ndarray, start_angle_deg: float, r_eq: float,
                      sharpness_threshold: float = 2.0 / 3.0, min_contrast: float = 4.0) -> dict:
    """Eight-sector abruptness of the lesion edge (see the module docstring).

    ``lightness`` is CIE L* of the crop, ``mask`` the lesion, ``usable`` the pixels that may be used
    (not another lesion), ``centroid`` in physical units relative to the crop origin.
    Returns ``abrupt_sectors`` (0-8, NaN-free count over scored sectors), ``scored_sectors``,
    ``sharpness`` (mean over scored sectors), ``contrast`` (mean ΔL*) and the per-sector arrays.
    """
    s = np.asarray(spacing, dtype=float)
    w = band_width(r_eq, spacing)
    d = signed_distance(mask, spacing)
    rows, cols = np.nonzero(usable & (np.abs(d) < w))
    out = {"abrupt_sectors": 0, "scored_sectors": 0, "sharpness": float("nan"), "contrast": float("nan"),
           "sector_sharpness": np.full(N_SECTORS, np.nan), "sector_contrast": np.full(N_SECTORS, np.nan)}
    if len(rows) == 0:
        return out
    rel_r = rows * s[0] - centroid[0]
    rel_c = cols * s[1] - centroid[1]
    ang = (np.degrees(np.arctan2(-rel_r, rel_c)) - start_angle_deg) % 360.0
    sector = np.minimum((ang // (360.0 / N_SECTORS)).astype(int), N_SECTORS - 1)
    dist = d[rows, cols]
    b = np.clip(((dist + w) / (2.0 * w) * N_BINS).astype(int), 0, N_BINS - 1)
    key = sector * N_BINS + b
    sums = np.bincount(key, weights=lightness[rows, cols], minlength=N_SECTORS * N_BINS).reshape(N_SECTORS, N_BINS)
    counts = np.bincount(key, minlength=N_SECTORS * N_BINS).reshape(N_SECTORS, N_BINS)
    q = N_BINS // 4
    centres = np.arange(N_BINS)
    for k in range(N_SECTORS):
        have = counts[k] > 0
        if not have[:q].any() or not have[-q:].any() or have.sum() < N_BINS // 2:
            continue
        prof = np.interp(centres, centres[have], sums[k][have] / counts[k][have])
        contrast = float(prof[-q:].mean() - prof[:q].mean())  # outside minus inside
        sign = 1.0 if contrast >= 0 else -1.0
        steps = sign * (prof[q:] - prof[:-q])
        sharp = float(steps.max() / abs(contrast)) if abs(contrast) > 1e-9 else 0.0
        out["sector_sharpness"][k] = min(sharp, 1.0)
        out["sector_contrast"][k] = contrast
    scored = ~np.isnan(out["sector_sharpness"])
    if scored.any():
        abrupt = scored & (np.nan_to_num(out["sector_sharpness"]) >= sharpness_threshold) & (
            np.abs(np.nan_to_num(out["sector_contrast"])) >= min_contrast)
        out["abrupt_sectors"] = int(abrupt.sum())
        out["scored_sectors"] = int(scored.sum())
        out["sharpness"] = float(np.nanmean(out["sector_sharpness"]))
        out["contrast"] = float(np.nanmean(out["sector_contrast"]))
    return out
