"""Lesion geometry for :func:`napari_nevus_seg.measure`: contour, perimeter, Feret diameters, mirror asymmetry.

All functions work on one lesion at a time, in physical units: a point ``(row, col)`` in pixels becomes
``(row * spacing[0], col * spacing[1])``, so anisotropic pixels are handled by scaling coordinates, never
by resampling labels. No Qt or napari here.

Method notes (see ``docs/measurements.md``):

- the outline is the marching-squares contour at level 0.5 of the zero-padded mask (it runs through the
  pixel edges between lesion and background, holes included); it is resampled at equal steps of one
  pixel (the larger side) and smoothed by a 3-point moving average before the length is taken, which
  removes the staircase overshoot of digital lines (the raw contour is 5-7 % too long on discs and
  tilted edges; smoothed, +0.6 % on discs and ellipses from 40 pixels on, anisotropic pixels included;
  sharp corners are rounded, about 2.8 px per square, so squares and rectangles of 40 px come out up to
  2 % short and tilted ones of 1000 px about 1 % long);
- the greatest and smallest diameters are the maximum and minimum Feret (caliper) diameters of the
  convex hull of the raw contour: the maximum over all hull vertex pairs, the minimum by rotating
  calipers (the minimum width of a convex polygon is reached with one caliper flush with a hull edge);
- mirror asymmetry about an axis through the centroid is the share of the lesion's area that does not
  overlap the lesion's mirror image, computed on an isotropic sampling grid with bilinear (sub-pixel)
  mask values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

#: samples along the longer side of the grid used for mirror asymmetry (larger lesions are sampled coarser)
ASYMMETRY_GRID = 160
#: the same for the search of the best pair of axes
ASYMMETRY_SEARCH_GRID = 64


def lesion_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a boolean mask, in pixel coordinates (row, col), holes included.

    The mask is padded with background so that lesions touching the crop edge still give closed
    contours; the last point of each contour repeats its first.
    """
    padded = np.pad(np.asarray(mask, dtype=np.float32), 1)
    return [c - 1.0 for c in find_contours(padded, 0.5)]


def _smooth_closed(points: np.ndarray) -> np.ndarray:
    """3-point moving average of a closed polygon's vertices (the repeated last vertex removed)."""
    if len(points) < 6:
        return points
    return (np.roll(points, 1, axis=0) + points + np.roll(points, -1, axis=0)) / 3.0


def resample_closed(contour: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """A closed contour (pixel coordinates, last point = first) in physical units, resampled at equal
    arc-length steps of one (larger) pixel size and smoothed by a 3-point moving average.

    Resampling at the coarse pixel size first makes the smoothing act over the same physical length in
    every direction (accuracy in the module docstring).
    """
    s = np.asarray(spacing, dtype=float)
    pts = np.asarray(contour, dtype=float) * s
    seg = np.hypot(*np.diff(pts, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0:
        return pts[:1]
    n = max(int(round(cum[-1] / float(s.max()))), 8)
    u = np.linspace(0.0, cum[-1], n, endpoint=False)
    even = np.stack([np.interp(u, cum, pts[:, 0]), np.interp(u, cum, pts[:, 1])], axis=1)
    return _smooth_closed(even)


def closed_length(points: np.ndarray) -> float:
    """Length of the closed polygon through ``points`` (first vertex not repeated)."""
    if len(points) < 2:
        return 0.0
    d = np.diff(np.vstack([points, points[:1]]), axis=0)
    return float(np.hypot(d[:, 0], d[:, 1]).sum())


def perimeter(contours: list[np.ndarray], spacing: tuple[float, float]) -> float:
    """Outline length in physical units: the resampled, smoothed closed contours (holes included)."""
    return float(sum(closed_length(resample_closed(c, spacing)) for c in contours if len(c) > 2))


def signed_area(contour: np.ndarray) -> float:
    """Shoelace area of a closed contour in (row, col) pixel coordinates: positive for the outer boundary
    of a piece of the mask, negative for a hole (the winding :func:`lesion_contours` gives them)."""
    r, c = np.asarray(contour, dtype=float).T
    return 0.5 * float(np.sum(c[:-1] * r[1:] - c[1:] * r[:-1]))


def outer_contour(contours: list[np.ndarray]) -> np.ndarray:
    """The outer boundary of the lesion's largest piece: holes and smaller pieces are left out."""
    return max(contours, key=signed_area)


def polygon_centroid(points: np.ndarray) -> np.ndarray:
    """Centroid of the area enclosed by a closed polygon (vertices in order, first not repeated)."""
    p = np.asarray(points, dtype=float)
    q = np.roll(p, -1, axis=0)
    cross = p[:, 1] * q[:, 0] - q[:, 1] * p[:, 0]
    a = cross.sum() / 2.0
    if abs(a) < 1e-12:
        return p.mean(axis=0)
    return np.array([((p[:, 0] + q[:, 0]) * cross).sum(), ((p[:, 1] + q[:, 1]) * cross).sum()]) / (6.0 * a)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of 2-D points, counter-clockwise, as an (n, 2) array.

    Falls back to the extreme points when the points are collinear (a hull of zero area).
    """
    from scipy.spatial import ConvexHull, QhullError

    pts = np.unique(np.round(np.asarray(points, dtype=float), 9), axis=0)
    if len(pts) < 3:
        return pts
    try:
        return pts[ConvexHull(pts).vertices]
    except QhullError:  # collinear points
        d = pts - pts.mean(axis=0)
        _, _, vt = np.linalg.svd(d, full_matrices=False)
        t = d @ vt[0]
        return pts[[int(np.argmin(t)), int(np.argmax(t))]]


def hull_pixel_count(hull_px: np.ndarray) -> int | None:
    """Pixel centres inside or on a convex polygon given in pixel coordinates, counted row by row.

    With the hull of the lesion's marching-squares contour (the pixel-edge midpoints, as scikit-image
    offsets pixels for its convex hull) this is ``regionprops``' ``area_convex``, which tests every pixel
    of the bounding box one by one (5.6 s for a lesion of 3200 x 2400 px). None when the hull has no area.
    """
    from scipy.spatial import ConvexHull, QhullError

    eps = 1e-9
    if len(hull_px) < 3:
        return None
    try:
        eq = ConvexHull(hull_px).equations   # a*row + b*col + c <= 0 inside
    except QhullError:
        return None
    rows = np.arange(math.ceil(hull_px[:, 0].min() - eps), math.floor(hull_px[:, 0].max() + eps) + 1)
    a, b, c = eq[:, 0], eq[:, 1], eq[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -(c[None, :] + a[None, :] * rows[:, None]) / b[None, :]
    hi = np.where(b > eps, bound, np.inf).min(axis=1)
    lo = np.where(b < -eps, bound, -np.inf).max(axis=1)
    counts = np.floor(hi + eps) - np.ceil(lo - eps) + 1
    return int(np.clip(counts[np.isfinite(counts)], 0, None).sum())


def feret_diameters(hull: np.ndarray, tol: float = 0.0) -> tuple[float, float, float]:
    """Maximum Feret diameter, minimum Feret diameter (rotating calipers) and the angle of the maximum.

    ``hull`` holds the convex hull vertices in order (physical units). The angle is in degrees,
    counter-clockwise from the image's column axis as seen on screen (rows point down), in [0, 180).
    With ``tol`` (a pixel), the angle is the mean direction of the vertex pairs within ``tol`` of the
    maximum and within 10 degrees of its direction: on a rounded end (an ellipse's) many pairs are as
    long as each other to a pixel, and the longest alone lies a few degrees off the axis.
    """
    n = len(hull)
    if n == 0:
        return 0.0, 0.0, 0.0
    if n == 1:
        return 0.0, 0.0, 0.0
    # maximum: all vertex pairs (hulls of lesion outlines have at most a few hundred vertices)
    best, pair = -1.0, (0, 0)
    for start in range(0, n, 512):
        block = hull[start:start + 512]
        d2 = ((block[:, None, :] - hull[None, :, :]) ** 2).sum(-1)
        k = int(np.argmax(d2))
        if d2.flat[k] > best:
            best, pair = float(d2.flat[k]), (start + k // n, k % n)
    vec = hull[pair[1]] - hull[pair[0]]
    if tol > 0 and n <= 1024:   # (all pairs: 16 MB at most)
        vec = _mean_direction_near(hull, vec, np.sqrt(best) - tol)
    angle = float(np.degrees(np.arctan2(-vec[0], vec[1])) % 180.0)
    if n < 3:
        return float(np.sqrt(best)), 0.0, angle
    # minimum: for each hull edge, the farthest vertex from the edge's line; the smallest such width
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    ok = lengths > 1e-12
    widths = []
    for start in range(0, n, 512):
        e = edges[start:start + 512][ok[start:start + 512]]
        o = hull[start:start + 512][ok[start:start + 512]]
        if len(e) == 0:
            continue
        rel = hull[None, :, :] - o[:, None, :]
        cross = np.abs(e[:, None, 0] * rel[..., 1] - e[:, None, 1] * rel[..., 0])
        widths.append(cross.max(axis=1) / np.hypot(e[:, 0], e[:, 1]))
    min_feret = float(np.min(np.concatenate(widths))) if widths else 0.0
    return float(np.sqrt(best)), min_feret, angle


def _mean_direction_near(hull: np.ndarray, best_vec: np.ndarray, min_length: float) -> np.ndarray:
    """Sum of the vertex-pair vectors at least ``min_length`` long and within 10 degrees of ``best_vec``,
    each turned to point the way ``best_vec`` does."""
    vecs = (hull[None, :, :] - hull[:, None, :]).reshape(-1, 2)
    lengths = np.hypot(vecs[:, 0], vecs[:, 1])
    unit = best_vec / np.hypot(*best_vec)
    cos = (vecs @ unit) / np.maximum(lengths, 1e-12)
    near = (lengths >= min_length) & (cos >= np.cos(np.radians(10.0)))
    return vecs[near].sum(axis=0) if near.any() else best_vec


def polygon_length(hull: np.ndarray) -> float:
    """Perimeter of a closed polygon given by its ordered vertices."""
    return closed_length(hull) if len(hull) > 1 else 0.0


# ------------------------------------------------------------------------------------ asymmetry
@dataclass(frozen=True)
class Asymmetry:
    """Mirror asymmetry of one lesion (fractions of the lesion's area that miss their mirror image)."""

    axis1: float            # the more symmetric axis of the best perpendicular pair
    axis2: float            # the axis perpendicular to it
    axis1_angle_deg: float  # angle of axis 1, counter-clockwise from the column axis, [0, 180)
    principal_major: float  # about the major principal axis of inertia
    principal_minor: float  # about the minor principal axis of inertia
    principal_angle_deg: float


def direction(angle_deg: float) -> np.ndarray:
    """Unit vector (row, col) of an on-screen angle (counter-clockwise from the column axis)."""
    t = np.radians(angle_deg)
    return np.array([-np.sin(t), np.cos(t)])


def principal_angle(coords: np.ndarray) -> float:
    """Angle (degrees, [0, 180)) of the major principal axis of a point set in physical units."""
    if len(coords) < 2:
        return 0.0
    cov = np.cov(coords.T)
    w, v = np.linalg.eigh(cov)
    major = v[:, int(np.argmax(w))]
    return float(np.degrees(np.arctan2(-major[0], major[1])) % 180.0)


class _MirrorSampler:
    """Evaluates the mirror asymmetry of one mask about lines through its centroid."""

    def __init__(self, mask: np.ndarray, spacing: tuple[float, float], centroid: np.ndarray,
                 grid: int = ASYMMETRY_GRID):
        s = np.asarray(spacing, dtype=float)
        self.s = s
        self.padded = np.pad(np.asarray(mask, dtype=np.float32), 2)
        extent = np.array(mask.shape, dtype=float) * s
        step = max(float(s.min()), float(extent.max()) / grid)
        rows = np.arange(-1.0 * s[0], extent[0] + s[0], step)
        cols = np.arange(-1.0 * s[1], extent[1] + s[1], step)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        pts = np.stack([rr.ravel(), cc.ravel()], axis=1)
        a = self._sample(pts)
        keep = a > 0
        self.pts, self.a = pts[keep], a[keep]
        self.total = float(self.a.sum())
        self.centroid = np.asarray(centroid, dtype=float)
        self._cache: dict[float, float] = {}

    def _sample(self, pts_phys: np.ndarray) -> np.ndarray:
        idx = pts_phys / self.s + 2.0  # pixel coordinates in the padded mask
        return ndimage.map_coordinates(self.padded, idx.T, order=1, mode="constant", cval=0.0)

    def __call__(self, angle_deg: float) -> float:
        key = round(float(angle_deg) % 180.0, 6)
        if key not in self._cache:
            if self.total <= 0:
                self._cache[key] = float("nan")
            else:
                d = direction(key)
                rel = self.pts - self.centroid
                mirrored = self.centroid + 2.0 * (rel @ d)[:, None] * d[None, :] - rel
                b = self._sample(mirrored)
                overlap = float(np.minimum(self.a, b).sum())
                self._cache[key] = max(0.0, 1.0 - overlap / self.total)
        return self._cache[key]


def mirror_asymmetry(mask: np.ndarray, spacing: tuple[float, float], centroid: np.ndarray,
                     coords: np.ndarray) -> Asymmetry:
    """Mirror asymmetry about two perpendicular axes through the centroid.

    ``mask`` is the lesion's crop, ``centroid`` and ``coords`` (the lesion's pixel centres) are in
    physical units relative to the crop origin. The pair of perpendicular axes is the one with the
    lowest summed asymmetry (Stolz's rule: "the axes placed to give the lowest asymmetry"), found by a
    10-degree scan (the principal axes of inertia being one more candidate) refined locally to 1 degree
    on a coarser grid, then evaluated on the finer grid; the principal-axes values are reported as well.
    """
    search = _MirrorSampler(mask, spacing, centroid, grid=ASYMMETRY_SEARCH_GRID)
    theta_p = principal_angle(coords)
    pair = lambda t: search(t) + search(t + 90.0)
    best = min(list(np.arange(0.0, 90.0, 10.0)) + [theta_p % 90.0], key=pair)
    for step in (4.0, 2.0, 1.0):  # local refinement to 1 degree
        best = min((best - step, best, best + step), key=pair)
    f = _MirrorSampler(mask, spacing, centroid, grid=ASYMMETRY_GRID)
    a, b = f(best), f(best + 90.0)
    if b < a:
        a, b, best = b, a, best + 90.0
    return Asymmetry(axis1=a, axis2=b, axis1_angle_deg=float(best % 180.0),
                     principal_major=f(theta_p), principal_minor=f(theta_p + 90.0),
                     principal_angle_deg=theta_p)


def side_of_axis(coords: np.ndarray, centroid: np.ndarray, angle_deg: float) -> np.ndarray:
    """True for the points on the left of the axis (seen along its direction), False on the right."""
    d = direction(angle_deg)
    rel = np.asarray(coords, dtype=float) - np.asarray(centroid, dtype=float)
    return (d[0] * rel[:, 1] - d[1] * rel[:, 0]) > 0
