"""Where a ruler may be: candidate points, directions and spacings for :func:`.ruler_ticks.read_ticks`.

Two searches, each fast on the reduced image:

- tile spectra (:func:`tile_peaks`): a ruler's evenly spaced ticks make a sharp peak in an overlapping
  tile's power spectrum, far above the other directions at that frequency (skin, hair and lesions spread
  their power) and above the frequencies just below and above it (a hair's or the vignette's edge has no
  rhythm); a grid (as regular across as along) is discounted;
- straight lines (:func:`line_candidates`): printed rulers have a base line or an edge, long and
  straight, beside their ticks; the longest straight runs of thin dark features and of edges are
  followed, with a first spacing read from the strip along each.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import canny
from skimage.transform import probabilistic_hough_line

from napari_nevus_seg.measurements.ruler_ticks import MIN_PERIOD

#: how much the rhythm test (power at a frequency over that at 0.65 and 1.35 times it) counts against
#: the direction test in a bin's strength
COMB_WEIGHT = 10.0
#: the longest straight lines followed
LINES = 8


def tile_peaks(small: np.ndarray, tile: int) -> list[tuple[float, tuple[int, int], float, float]]:
    """Each tile's strongest comb-like spectral peak: (strength, (row, col) of the tile, spacing in px,
    wave direction in radians), for the tiles whose strength is above 0, strongest first.

    A bin's strength is the smaller of two ratios: its power over the median power at the same
    frequency in all directions (a rhythm in one direction, not texture), and, times
    :data:`COMB_WEIGHT`, its power over that at 0.65 and 1.35 times its frequency in the same direction
    (a rhythm, not the single edge of a hair or the vignette, whose power falls smoothly with frequency).
    """
    step = tile // 2
    freq = np.fft.fftshift(np.fft.fftfreq(tile)) * tile
    ky, kx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(ky, kx)
    ring = np.rint(radius).astype(int)
    band = (radius >= 3.0) & (radius <= tile / MIN_PERIOD) & (kx >= 0)
    wide = (radius >= 3.0) & (radius <= 1.25 * tile / MIN_PERIOD) & (kx >= 0)   # for the grid test
    window = np.outer(np.hanning(tile), np.hanning(tile)).astype(np.float32)
    rows = range(0, small.shape[0] - tile + 1, step)
    cols = range(0, small.shape[1] - tile + 1, step)
    positions = [(r, c) for r in rows for c in cols]
    tiles = np.stack([small[r:r + tile, c:c + tile] for r, c in positions])
    tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * window
    power = np.fft.fftshift(np.abs(np.fft.fft2(tiles)) ** 2, axes=(1, 2)) + 1e-12
    ring_median = np.stack([np.median(power[:, ring == k], axis=1) for k in range(int(ring.max()) + 1)], axis=1)
    across = power / ring_median[:, ring]
    centre = tile // 2
    below = _bilinear(power, centre + 0.65 * ky, centre + 0.65 * kx)
    above = _bilinear(power, centre + 1.35 * ky, centre + 1.35 * kx)
    comb = power / np.sqrt(below * above)
    every = np.where(wide, np.minimum(across, COMB_WEIGHT * comb), 0.0).reshape(len(tiles), -1)
    strength = np.where(band.ravel(), every, 0.0)
    theta = np.degrees(np.arctan2(ky, kx)).ravel()
    r = radius.ravel()
    rows_ = np.arange(len(tiles))
    first = strength.argmax(axis=1)
    # each tile's best peak, and its best in another direction (the ticks' rhythm can be second to
    # the ripple of their ends)
    second = np.where(_apart(theta, first), strength, 0.0).argmax(axis=1)
    found = []
    for peak in (first, second):
        # a ruler beats in one direction; a grid (a regular texture) as strongly in another at about
        # the same frequency: less twice the strongest such bin
        grid = _apart(theta, peak) & (np.abs(r[None, :] / r[peak][:, None] - 1.0) <= 0.1)
        best = strength[rows_, peak] - 2.0 * np.where(grid, every, 0.0).max(axis=1)
        for i in np.flatnonzero(best > 0):
            py, px = np.unravel_index(peak[i], (tile, tile))
            found.append((float(best[i]), positions[i], tile / float(radius[py, px]),
                          float(np.arctan2(ky[py, px], kx[py, px]))))
    return sorted(found, key=lambda f: -f[0])


def _apart(theta: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """(tiles, bins): whether each bin's direction is more than 30 degrees from the tile's ``peak`` bin."""
    return np.abs((theta[None, :] - theta[peak][:, None] + 90.0) % 180.0 - 90.0) > 30.0


def _bilinear(stack: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """``stack[:, yy, xx]`` interpolated bilinearly (coordinates clipped to the arrays)."""
    n = stack.shape[1]
    yy, xx = np.clip(yy, 0, n - 1.001), np.clip(xx, 0, n - 1.001)
    y0, x0 = np.floor(yy).astype(int), np.floor(xx).astype(int)
    wy, wx = yy - y0, xx - x0
    return ((1 - wy) * (1 - wx) * stack[:, y0, x0] + (1 - wy) * wx * stack[:, y0, x0 + 1]
            + wy * (1 - wx) * stack[:, y0 + 1, x0] + wy * wx * stack[:, y0 + 1, x0 + 1])


def line_candidates(small: np.ndarray) -> list[tuple[tuple[float, float], float, float]]:
    """(centre, direction in radians, first spacing) for the :data:`LINES` longest straight lines at least
    15 % of the image long, of thin dark features (black top-hat above its 97th percentile: a printed
    base line) or of edges (Canny: the edge of a ruler's strip)."""
    dark = ndimage.grey_closing(small, size=(5, 5)) - small
    span = float(small.max() - small.min()) or 1.0
    edges = ndimage.binary_dilation(canny(small / span, sigma=1.5))    # an edge wanders between two rows
    masks = (dark > max(float(np.percentile(dark, 97)), 8.0), edges)
    length = max(10, int(0.15 * max(small.shape)))
    segments = [seg for mask in masks
                for seg in probabilistic_hough_line(mask, threshold=20, line_length=length, line_gap=3, rng=0)]
    segments = sorted(segments, key=lambda seg: -np.hypot(seg[1][0] - seg[0][0], seg[1][1] - seg[0][1]))[:LINES]
    found = []
    for (x0, y0), (x1, y1) in segments:
        angle = float(np.arctan2(y1 - y0, x1 - x0))
        centre = ((y0 + y1) / 2.0, (x0 + x1) / 2.0)
        found.append((centre, angle, _strongest_spacing(small, centre, angle)))
    return found


def _strongest_spacing(grey: np.ndarray, centre, angle: float, half: int = 10, reach: int = 150) -> float:
    """The spacing (:data:`MIN_PERIOD` to 40 px) of the strongest rhythm along any line of a strip
    ``2 * half + 1`` wide along ``angle`` through ``centre``."""
    along = np.array([np.sin(angle), np.cos(angle)])
    across = np.array([along[1], -along[0]])
    t = np.arange(-reach, reach + 1.0)
    s = np.arange(-half, half + 1.0)
    coords = np.asarray(centre, float)[:, None, None] + along[:, None, None] * t[:, None] + across[:, None, None] * s
    strip = ndimage.map_coordinates(grey, coords.reshape(2, -1), order=1, mode="nearest").reshape(t.size, s.size)
    strip = strip - ndimage.uniform_filter1d(strip, 41, axis=0, mode="nearest")
    periods = np.linspace(MIN_PERIOD, 40.0, 300)
    waves = np.exp(-2j * np.pi * np.arange(t.size)[None, :] / periods[:, None]) * np.hanning(t.size)
    power = np.abs(waves @ strip) ** 2
    return float(periods[np.unravel_index(power.argmax(), power.shape)[0]])
