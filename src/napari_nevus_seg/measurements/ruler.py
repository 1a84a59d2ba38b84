"""Find a millimetre ruler's tick marks in a photograph and read its tick spacing in pixels.

How: the image (grey, reduced so its long side is at most :data:`WORK_SIDE` pixels) is cut into
overlapping square tiles. A ruler's evenly spaced ticks make a sharp peak in a tile's power spectrum,
far above the other frequencies at the same distance from the centre (skin, hair and the lesion spread
their power over all directions). The tile with the strongest such peak gives the ruler's direction
and a first spacing. A strip across the ticks, through that tile, is then read from the full-resolution
image along the ruler (its average across the strip is a profile with one dip or bump per tick), and
the spacing is refined from that profile's spectrum to a fraction of a pixel. The ticks are located
where the profile's rhythm holds, and a line from the first to the last of them is returned, ready to
be checked by eye and given to :func:`napari_nevus_seg.pixel_size_from_ruler`.

The spacing is that of the *finest* ticks; whether they are millimetres (the usual case) or half
millimetres is for the user to check against the ruler's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

#: the long side (pixels) the image is reduced to for the search; the refinement uses full resolution
WORK_SIDE = 1024
#: the tiles searched for a rhythm, in pixels of the reduced image
TILE = 128
#: tick spacings searched, in pixels of the reduced image (at least this many pixels per tick, and at
#: least three ticks per tile)
MIN_PERIOD = 5.0
#: the tile peaks followed along the image, strongest first
CANDIDATES = 8
#: the fewest tick spacings a ruler must show
MIN_TICKS = 4
#: the share of the brightness variation along the ticks their rhythm must explain to be a ruler
#: (chosen on ISIC 2017 images, docs/measurements.md)
MIN_REGULARITY = 0.5
#: how much the rhythm test (power at a frequency over that at 0.65 and 1.35 times it) counts against
#: the direction test in a bin's strength
COMB_WEIGHT = 10.0


@dataclass(frozen=True)
class RulerTicks:
    """The ticks of a ruler found in an image (pixel coordinates of the image given).

    ``start`` and ``end`` are (row, column) points on the first and last tick found, ``ticks`` tick
    spacings apart along the ruler; ``spacing_px`` is the spacing of neighbouring ticks;
    ``angle_deg`` the ruler's direction (0 = along the columns, 90 = down the rows); ``regularity``
    the share of the brightness variation along the ticks that their rhythm explains (0-1; at least
    :data:`MIN_REGULARITY` to be reported).
    """

    start: tuple[float, float]
    end: tuple[float, float]
    ticks: int
    spacing_px: float
    angle_deg: float
    regularity: float

    @property
    def length_px(self) -> float:
        """Length of the line from ``start`` to ``end``, in pixels."""
        return float(np.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1]))

    def pixel_size_mm(self, tick_mm: float = 1.0) -> float:
        """mm per pixel if neighbouring ticks are ``tick_mm`` apart."""
        return float(tick_mm) / self.spacing_px


def find_ruler(image: np.ndarray, *, min_regularity: float = MIN_REGULARITY) -> RulerTicks | None:
    """The ruler ticks in ``image`` ((H, W) grey or (H, W, C) colour), or None when none stand out.

    The :data:`CANDIDATES` strongest tile peaks of different rhythms are each followed along the image; the run of at least
    :data:`MIN_TICKS` ticks whose rhythm explains most of the brightness along it is the ruler, if its
    :attr:`RulerTicks.regularity` reaches ``min_regularity``. Takes under a second for a 12-megapixel
    photograph on a laptop CPU. ValueError for an image that is not 2-D or 3-D with channels last.
    """
    grey = _grey(image)
    factors = _search_factors(max(grey.shape))
    levels = {factor: _reduce(grey, factor) for factor in factors}
    peaks = [(peak, factor) for factor, small in levels.items() if min(small.shape) >= TILE
             for peak in _tile_peaks(small, TILE)]
    base = factors[0]                      # the ticks are followed in the finer search image
    best, tried = None, []
    for (_, (row, col), spacing, angle), factor in sorted(peaks, key=lambda p: -p[0][0]):
        scale = factor / base
        if any(_alike((spacing * scale, angle), other) for other in tried):
            continue                       # a texture repeats in many tiles: one look is enough
        tried.append((spacing * scale, angle))
        centre = ((row + TILE / 2) * scale - 0.5, (col + TILE / 2) * scale - 0.5)
        found = _ticks_along(levels[base], centre, angle, spacing * scale, half_width=TILE * scale / 2)
        if found is not None and found.ticks >= MIN_TICKS and (best is None or found.regularity > best.regularity):
            best = found
        if len(tried) == CANDIDATES:
            break
    if best is None or best.regularity < min_regularity:
        return None
    return best if base == 1 else replace(
        best, start=tuple((v + 0.5) * base - 0.5 for v in best.start),
        end=tuple((v + 0.5) * base - 0.5 for v in best.end), spacing_px=best.spacing_px * base)


def _alike(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (spacing, direction) peaks are the same rhythm: within 10 % and 5 degrees."""
    turn = abs((np.degrees(a[1] - b[1]) + 90.0) % 180.0 - 90.0)
    return abs(a[0] / b[0] - 1.0) <= 0.1 and turn <= 5.0


def _search_factors(long_side: int) -> list[int]:
    """Reduction factors of the search: to :data:`WORK_SIDE` pixels (fine ticks) and to about a
    third of it (ticks up to a twelfth of the image apart)."""
    fine = max(1, int(np.ceil(long_side / WORK_SIDE)))
    coarse = max(1, int(np.ceil(long_side / (WORK_SIDE / 3.2))))
    return [fine] if coarse == fine else [fine, coarse]


def _grey(image: np.ndarray) -> np.ndarray:
    """The image as float32 grey (the mean of its first three channels when it has colour)."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32).mean(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"find_ruler needs an (H, W) or (H, W, C) image, got shape {np.shape(image)}")
    return arr.astype(np.float32, copy=False)


def _reduce(grey: np.ndarray, factor: int) -> np.ndarray:
    """``grey`` reduced by the mean of ``factor`` x ``factor`` blocks (the edge remainder is dropped)."""
    if factor == 1:
        return grey
    h, w = (grey.shape[0] // factor) * factor, (grey.shape[1] // factor) * factor
    return grey[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _tile_peaks(small: np.ndarray, tile: int) -> list[tuple[float, tuple[int, int], float, float]]:
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


def _ticks_along(grey: np.ndarray, centre, angle: float, spacing: float, half_width: float,
                 refine_angle: bool = True):
    """Refine the spacing along the ruler through ``centre`` and find the run of ticks there.

    A strip ``2 * half_width`` wide is read along the ruler across the whole image; the rows of the
    strip where the rhythm near ``centre`` is strong (the ticks, not the skin beside them) are averaged
    into a profile. With ``refine_angle`` it is then read again square to the ticks. Returns
    the ticks found (:class:`RulerTicks`) or None when fewer than three are.
    """
    along = np.array([np.sin(angle), np.cos(angle)])      # (row, col) step along the ruler
    across = np.array([along[1], -along[0]])
    reach = float(np.hypot(*grey.shape))
    t = np.arange(-reach, reach + 1.0)
    s = np.arange(-half_width, half_width + 1.0)
    origin = np.asarray(centre, dtype=float)
    coords = origin[:, None, None] + along[:, None, None] * t[:, None] + across[:, None, None] * s[None, :]
    strip = ndimage.map_coordinates(grey, coords.reshape(2, -1), order=1, mode="constant", cval=np.nan)
    strip = strip.reshape(t.size, s.size)
    valid = np.isfinite(strip)
    keep = valid.mean(axis=1) > 0.5
    if keep.sum() < 4 * spacing:
        return None
    t, strip, valid = t[keep], strip[keep], valid[keep]
    counts = valid.sum(axis=0, keepdims=True)
    column_mean = np.where(counts > 0, np.where(valid, strip, 0.0).sum(axis=0, keepdims=True) / np.maximum(counts, 1),
                           np.nanmean(strip))
    filled = np.where(valid, strip, column_mean)
    detrended = filled - ndimage.uniform_filter1d(filled, max(3, int(round(8 * spacing))), axis=0, mode="nearest")
    near = np.abs(t) <= half_width
    wave = np.exp(-2j * np.pi * t[near] / spacing)
    rows = np.abs(wave @ detrended[near])
    band = _longest_run_around(rows >= 0.5 * rows.max(), int(rows.argmax()))
    profile = detrended[:, band[0]:band[1]].mean(axis=1)
    wide = np.abs(t) <= 2 * half_width
    spacing = _fundamental(profile[wide], _refined_spacing(profile[wide], spacing))
    local = _local_rhythm(profile, spacing)
    middle = int(np.argmin(np.abs(t)))
    run = _longest_run_around(local >= 0.4 * local[near].max(), int(np.flatnonzero(near)[local[near].argmax()]))
    lo, hi = run
    if middle < lo or middle >= hi or hi - lo < 3 * spacing:
        return None
    fine = _refined_spacing(profile[lo:hi], spacing)
    ticks = _tick_run(profile[lo:hi], fine)
    if ticks is None:
        return None
    first, count = lo + ticks[0], ticks[1]
    if refine_angle:
        dark = np.median(profile[lo:hi]) > 0
        width = band[1] - band[0]
        cols = slice(max(0, band[0] - width), band[1] + width)     # the ticks' band and as much either side
        drift = _drift(detrended[:, cols], s[cols], first + fine * np.arange(count + 1), fine, dark)
        return _ticks_along(grey, centre, angle + np.arctan(drift), spacing, half_width, refine_angle=False)
    first, fine = _fitted_ticks(profile, first + fine * np.arange(count + 1), fine, np.median(profile[lo:hi]) > 0)
    offset = across * 0.5 * (s[band[0]] + s[band[1] - 1])
    p0 = origin + offset + along * (t[0] + first)
    p1 = p0 + along * count * fine
    span = profile[int(np.floor(first)):int(np.ceil(first + count * fine)) + 1]
    return RulerTicks(start=(float(p0[0]), float(p0[1])), end=(float(p1[0]), float(p1[1])), ticks=count,
                      spacing_px=float(fine), angle_deg=float(np.degrees(angle)),
                      regularity=_regularity(span, fine, first % 1.0))


def _regularity(profile: np.ndarray, spacing: float, shift: float = 0.0) -> float:
    """Share of ``profile``'s variance that one repeating tick shape explains (0-1): the profile is
    folded at ``spacing`` into one period, averaged, and laid back along it."""
    n = np.arange(profile.size) - shift
    bins = max(4, int(round(spacing)))
    which = np.floor((n / spacing) % 1.0 * bins).astype(int) % bins
    counts = np.bincount(which, minlength=bins)
    shape = np.bincount(which, weights=profile, minlength=bins) / np.maximum(counts, 1)
    residual = np.sum((profile - shape[which]) ** 2)
    total = np.sum((profile - profile.mean()) ** 2)
    return float(max(0.0, 1.0 - residual / total)) if total > 0 else 0.0


def _drift(strip: np.ndarray, s: np.ndarray, ticks: np.ndarray, spacing: float, dark: bool) -> float:
    """How many pixels across the strip the ticks move per pixel along it (0 when the strip runs
    square to them): the robust slope (Theil-Sen) of each tick's mass centre across the strip against
    its place along it. ``ticks`` are the ticks' rows in ``strip``."""
    ink = np.clip(-strip if dark else strip, 0, None)
    reach = max(1, int(spacing / 4))
    places, centres = [], []
    for x in ticks:
        i = int(round(x))
        mass = ink[max(0, i - reach):i + reach + 1].sum(axis=0)
        if mass.sum() > 0:
            places.append(x)
            centres.append(float(np.sum(mass * s) / mass.sum()))
    if len(places) < 3:
        return 0.0
    x, y = np.asarray(places), np.asarray(centres)
    i, j = np.triu_indices(len(x), 1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def _fitted_ticks(profile: np.ndarray, ticks: np.ndarray, spacing: float, dark: bool) -> tuple[float, float]:
    """(first tick, spacing) fitted by least squares to each tick's own centre in ``profile`` (the mass
    centre of its dip or peak within a quarter spacing of where ``ticks`` put it)."""
    ink = np.clip(-profile if dark else profile, 0, None)
    reach = max(1, int(spacing / 4))
    index, centres = [], []
    for k, x in enumerate(ticks):
        i = int(round(x))
        rows = np.arange(max(0, i - reach), min(profile.size, i + reach + 1))
        mass = ink[rows]
        if mass.sum() > 0:
            index.append(k)
            centres.append(float(np.sum(mass * rows) / mass.sum()))
    if len(index) < 3:
        return float(ticks[0]), spacing
    slope, intercept = np.polyfit(index, centres, 1)
    return float(intercept), float(slope)


def _tick_run(profile: np.ndarray, spacing: float) -> tuple[float, int] | None:
    """(position of the first tick, number of spacings to the last) of the longest run of ticks in
    ``profile`` as deep as 40 % of the median tick at least; None with fewer than three ticks."""
    n = np.arange(profile.size)
    phase = np.angle(np.sum(profile * np.exp(-2j * np.pi * n / spacing)))
    dark = np.median(profile) > 0          # dark ticks on a light ruler: dips; light ticks: peaks
    first = ((-phase / (2 * np.pi) + (0.5 if dark else 0.0)) * spacing) % spacing
    at = np.arange(first, profile.size - 1, spacing)
    if at.size < 3:
        return None
    sign = -1.0 if dark else 1.0
    value = np.interp(at, n, profile) * sign
    between = 0.5 * (np.interp(at - spacing / 2, n, profile) + np.interp(at + spacing / 2, n, profile)) * sign
    depth = value - between
    run = _longest_run_around(depth >= 0.4 * np.median(depth), int(np.argmax(depth)))
    if run[1] - run[0] < 3:
        return None
    return float(at[run[0]]), int(run[1] - run[0] - 1)


def _fundamental(profile: np.ndarray, spacing: float) -> float:
    """The ticks' spacing: ``spacing`` or the largest multiple of it (up to 8 times, and a third of the
    profile) whose every harmonic down to ``spacing`` is in ``profile``. The peak first found can be a
    harmonic of the ticks (ticks beat at every multiple of their rhythm); a true spacing has power at
    each of its harmonics, a multiple of it has none at those in between."""
    reference = _power(profile, spacing)
    best = spacing
    for multiple in range(2, 9):
        candidate = multiple * spacing
        if 3 * candidate > profile.size:
            break
        if all(_power(profile, candidate / m) >= 0.15 * reference for m in range(1, multiple)):
            best = candidate
    return best if best == spacing else _refined_spacing(profile, best, tolerance=0.05)


def _power(profile: np.ndarray, spacing: float) -> float:
    """Power of ``profile`` (mean removed, Hann window) at one spacing."""
    n = np.arange(profile.size)
    windowed = (profile - profile.mean()) * np.hanning(profile.size)
    return float(np.abs(np.sum(windowed * np.exp(-2j * np.pi * n / spacing))) ** 2)


def _longest_run_around(mask: np.ndarray, index: int) -> tuple[int, int]:
    """(start, stop) of the run of True in ``mask`` that contains ``index`` (itself True)."""
    lo = index
    while lo > 0 and mask[lo - 1]:
        lo -= 1
    hi = index + 1
    while hi < mask.size and mask[hi]:
        hi += 1
    return lo, hi


def _local_rhythm(profile: np.ndarray, spacing: float) -> np.ndarray:
    """Amplitude of the rhythm at ``spacing`` around each point of ``profile`` (over about 3 ticks)."""
    n = np.arange(profile.size)
    wave = profile * np.exp(-2j * np.pi * n / spacing)
    width = max(3, int(round(3 * spacing)))
    return np.abs(ndimage.uniform_filter1d(wave.real, width) + 1j * ndimage.uniform_filter1d(wave.imag, width))


def _refined_spacing(profile: np.ndarray, spacing: float, tolerance: float = 0.2) -> float:
    """The spacing within ``tolerance`` of ``spacing`` where ``profile``'s spectrum peaks (fine scan)."""
    n = np.arange(profile.size)
    periods = np.linspace((1 - tolerance) * spacing, (1 + tolerance) * spacing, 801)
    power = np.abs(np.exp(-2j * np.pi * n[None, :] / periods[:, None]) @ (profile - profile.mean())) ** 2
    i = int(power.argmax())
    if 0 < i < len(periods) - 1:
        a, b, c = power[i - 1], power[i], power[i + 1]
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return float(periods[i] + offset * (periods[1] - periods[0]))
    return float(periods[i])
