"""Reading a ruler's ticks along a strip of the image: their spacing, their run and how regular they are.

:func:`read_ticks` is given a point near the ruler, a direction and a first guess of the spacing (from
the tile spectra or a straight line of :mod:`.ruler_search`). It reads a strip along that direction
across the whole image, keeps the lines of the strip where the rhythm is strong (the ticks, not the skin
beside them) and averages them into a profile with one dip (dark ticks) or bump (light ticks) per tick.
From that profile: the ticks' own spacing (not a harmonic of it), the run of ticks, the strip turned
square to them (their mass centres must not drift across it), their positions fitted one by one, and
whether the ruler's ticks alternate tall and short (then the tall ones count).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

#: the smallest tick spacing read, in pixels of the search image
MIN_PERIOD = 4.0


@dataclass(frozen=True)
class RulerTicks:
    """The ticks of a ruler found in an image (pixel coordinates of the image given).

    ``start`` and ``end`` are (row, column) points on the first and last tick found, ``spacings`` tick
    spacings apart along the ruler (``spacings + 1`` ticks); ``spacing_px`` is the spacing of
    neighbouring ticks; ``angle_deg`` the ruler's direction (0 = left to right, 90 = top to bottom);
    ``regularity`` the share of the brightness variation along the ticks that their rhythm explains
    (0-1; at least :data:`napari_nevus_seg.measurements.ruler.MIN_REGULARITY` to be reported);
    ``band_px`` how far across the ruler the ticks were read (a line one or two pixels wide has no
    ticks standing out of it).
    """

    start: tuple[float, float]
    end: tuple[float, float]
    spacings: int
    spacing_px: float
    angle_deg: float
    regularity: float
    band_px: float = 0.0

    @property
    def length_px(self) -> float:
        """Length of the line from ``start`` to ``end``, in pixels."""
        return float(np.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1]))

    def pixel_size_mm(self, tick_mm: float = 1.0) -> float:
        """mm per pixel if neighbouring ticks are ``tick_mm`` apart."""
        return float(tick_mm) / self.spacing_px

    def scaled(self, row_factor: float, col_factor: float | None = None) -> RulerTicks:
        """The same ticks in an image ``row_factor`` (and ``col_factor``) times larger, pixel centres
        mapped onto pixel centres (as the blocks of a reduced image or a coarser pyramid level)."""
        col_factor = row_factor if col_factor is None else col_factor

        def point(p):
            return ((p[0] + 0.5) * row_factor - 0.5, (p[1] + 0.5) * col_factor - 0.5)

        start, end = point(self.start), point(self.end)
        length = float(np.hypot(end[0] - start[0], end[1] - start[1]))
        angle = float(np.degrees(np.arctan2(end[0] - start[0], end[1] - start[1])))
        return replace(self, start=start, end=end, spacing_px=length / max(self.spacings, 1) if length else
                       self.spacing_px * row_factor, angle_deg=angle, band_px=self.band_px * row_factor)


def read_ticks(grey: np.ndarray, centre, angle: float, spacing: float, half_width: float,
               refine_angle: bool = True) -> RulerTicks | None:
    """Refine the spacing along the ruler through ``centre`` and find the run of ticks there.

    A strip ``2 * half_width`` wide is read along the ruler across the whole image; the rows of the
    strip where the rhythm near ``centre`` is strong (the ticks, not the skin beside them) are averaged
    into a profile. With ``refine_angle`` it is then read again square to the ticks. Returns the ticks
    found (:class:`RulerTicks`), or None for a run of fewer than three ticks or a rhythm that fills the
    strip (a texture).
    """
    along = np.array([np.sin(angle), np.cos(angle)])      # (row, col) step along the ruler
    across = np.array([along[1], -along[0]])
    origin = np.asarray(centre, dtype=float)
    s = np.arange(-half_width, half_width + 1.0)           # across the strip
    read = _strip(grey, origin, along, across, s, spacing)
    if read is None:
        return None
    t, detrended, inside = read
    near = np.abs(t) <= max(half_width, 3 * spacing)
    strength = np.abs(np.exp(-2j * np.pi * t[near] / spacing) @ detrended[near])   # of each line along the
    # ruler (one per offset across the strip)
    band = _longest_run_around(strength >= 0.5 * strength.max(), int(strength.argmax()))
    if _texture(strength, band, inside):
        return None
    profile = detrended[:, band[0]:band[1]].mean(axis=1)
    found = _run_of_ticks(profile, t, near, spacing, half_width)
    if found is None:
        return None
    first, fine, count, dark = found
    beside = slice(max(0, 2 * band[0] - band[1]), 2 * band[1] - band[0])   # the band and as much either side
    if refine_angle:
        drift = _drift(detrended[:, beside], s[beside], first + fine * np.arange(count + 1), fine, dark)
        return read_ticks(grey, centre, angle + np.arctan(drift), spacing, half_width, refine_angle=False)
    first, fine = _fitted_ticks(profile, first + fine * np.arange(count + 1), fine, dark)
    first, fine, count = _tall_or_equal(profile, detrended[:, beside], first, fine, count, dark)
    p0 = origin + across * 0.5 * (s[band[0]] + s[band[1] - 1]) + along * (t[0] + first)
    p1 = p0 + along * count * fine
    span = profile[int(np.floor(first)):int(np.ceil(first + count * fine)) + 1]
    return RulerTicks(start=(float(p0[0]), float(p0[1])), end=(float(p1[0]), float(p1[1])), spacings=count,
                      spacing_px=float(fine), angle_deg=float(np.degrees(angle)),
                      regularity=_regularity(span, fine, first % 1.0), band_px=float(band[1] - band[0]))


def _strip(grey: np.ndarray, origin: np.ndarray, along: np.ndarray, across: np.ndarray, s: np.ndarray,
           spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The strip of ``grey`` through ``origin``, ``s`` pixels across and the whole image along:
    (positions along it, the strip with its trend along it removed, which lines across lie mostly in
    the image); None where less than 4 spacings of it lie in the image. Points outside the image take
    their line's mean."""
    reach = float(np.hypot(*grey.shape))
    t = np.arange(-reach, reach + 1.0)
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
    detrended = filled - ndimage.uniform_filter1d(filled, max(3, int(np.rint(8 * spacing))), axis=0, mode="nearest")
    return t, detrended, valid.mean(axis=0) > 0.5


def _run_of_ticks(profile: np.ndarray, t: np.ndarray, near: np.ndarray, spacing: float,
                  half_width: float) -> tuple[float, float, int, bool] | None:
    """(first tick, spacing, number of spacings, whether the ticks are dark) of the run of ticks in
    ``profile`` through the strip's centre (``t`` = 0): the ticks' own spacing near the centre, the
    stretch where their rhythm holds, and the ticks in it (dark ticks: the stretch's median lies above
    their dips). None when the run misses the centre, or spans fewer than three ticks."""
    wide = np.abs(t) <= max(2 * half_width, 12 * spacing)
    spacing = _fundamental(profile[wide], _refined_spacing(profile[wide], spacing))
    local = _local_rhythm(profile, spacing)
    middle = int(np.argmin(np.abs(t)))
    lo, hi = _longest_run_around(local >= 0.4 * local[near].max(), int(np.flatnonzero(near)[local[near].argmax()]))
    if middle < lo or middle >= hi or hi - lo < 3 * spacing:
        return None
    fine = _refined_spacing(profile[lo:hi], spacing)
    ticks = _tick_run(profile[lo:hi], fine)
    if ticks is None:
        return None
    return lo + ticks[0], fine, ticks[1], bool(np.median(profile[lo:hi]) > 0)


def _texture(rows: np.ndarray, band: tuple[int, int], inside: np.ndarray) -> bool:
    """Whether the rhythm fills the strip rather than a band of ticks: it spans most of the strip, or a
    quarter of the lines well beside the band beat at least half as strongly (a regular texture, such as
    a grid of dots, not a ruler). Only the lines mostly ``inside`` the image count."""
    width = band[1] - band[0]
    if width > 0.7 * inside.sum():
        return True
    gap = max(2 * width, 6)
    beside = np.zeros(rows.size, bool)
    beside[:max(0, band[0] - gap)] = True
    beside[band[1] + gap:] = True
    far = rows[beside & inside]
    return far.size >= 3 and float(np.percentile(far, 75)) >= 0.5 * float(np.median(rows[band[0]:band[1]]))


def _regularity(profile: np.ndarray, spacing: float, shift: float = 0.0) -> float:
    """Share of ``profile``'s variance that one repeating tick shape explains (0-1): the profile is
    folded at ``spacing`` into one period, averaged, and laid back along it."""
    n = np.arange(profile.size) - shift
    bins = max(4, int(np.rint(spacing)))
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
        i = int(np.rint(x))
        mass = ink[max(0, i - reach):i + reach + 1].sum(axis=0)
        if mass.sum() > 0:
            places.append(x)
            centres.append(float(np.sum(mass * s) / mass.sum()))
    if len(places) < 3:
        return 0.0
    x, y = np.asarray(places), np.asarray(centres)
    i, j = np.triu_indices(len(x), 1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def _tall_or_equal(profile: np.ndarray, strip: np.ndarray, first: float, spacing: float, count: int,
                   dark: bool) -> tuple[float, float, int]:
    """(first, spacing, count) of the ruler's main ticks: where the ticks alternate tall and short (a
    half-millimetre ruler), the tall ones; where equal ticks lie halfway between those found, all of them.

    Depths are read in ``profile`` (the band's average); for the alternation, each tick's length is
    the number of lines of ``strip`` (along the ruler) where it is at least half its deepest.
    """
    ticks = first + spacing * np.arange(count + 1)
    tick_depth = _depths(profile, ticks, spacing / 2, dark)
    halfway = _depths(profile, ticks[:-1] + spacing / 2, spacing / 4, dark)
    main = float(np.median(tick_depth)) if tick_depth.size else 0.0
    if main <= 0:
        return first, spacing, count
    if halfway.size and np.median(halfway) >= 0.8 * main and spacing / 2 >= MIN_PERIOD:
        return first, spacing / 2, 2 * count            # equal ticks in between: the spacing is half
    if count >= 4:
        lines = np.stack([_depths(strip[:, j], ticks, spacing / 2, dark) for j in range(strip.shape[1])])
        length = (lines >= 0.5 * lines.max(axis=0, keepdims=True)).sum(axis=0).astype(float)  # rows each tick spans
        even, odd = float(np.median(length[0::2])), float(np.median(length[1::2]))
        if max(even, odd) >= 1.5 * min(even, odd) and abs(even - odd) >= 1.5:   # every second tick is longer
            odd_longer = odd > even
            return first + (spacing if odd_longer else 0.0), 2 * spacing, int((count - int(odd_longer)) // 2)
    return first, spacing, count


def _depths(profile: np.ndarray, at: np.ndarray, reach: float, dark: bool) -> np.ndarray:
    """How far ``profile`` dips (dark) or rises (light) at each of ``at`` against ``reach`` either side."""
    n = np.arange(profile.size)
    sign = -1.0 if dark else 1.0
    here = np.interp(at, n, profile) * sign
    return here - 0.5 * (np.interp(at - reach, n, profile) + np.interp(at + reach, n, profile)) * sign


def _fitted_ticks(profile: np.ndarray, ticks: np.ndarray, spacing: float, dark: bool) -> tuple[float, float]:
    """(first tick, spacing) fitted by least squares to each tick's own centre in ``profile`` (the mass
    centre of its dip or peak within a quarter spacing of where ``ticks`` put it)."""
    ink = np.clip(-profile if dark else profile, 0, None)
    reach = max(1, int(spacing / 4))
    index, centres = [], []
    for k, x in enumerate(ticks):
        i = int(np.rint(x))
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
    depth = _depths(profile, at, spacing / 2, dark)
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
    width = max(3, int(np.rint(3 * spacing)))
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
