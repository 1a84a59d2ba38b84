"""Find a millimetre ruler's tick marks in a photograph and read its tick spacing in pixels.

How: the image, grey and reduced so its long side is at most :data:`WORK_SIDE` pixels (and a third of
that for coarse ticks), is searched for places where a ruler may be: the longest straight lines (a
printed ruler's base line or edge) and the tiles whose spectrum has a sharp one-directional rhythm
(:mod:`.ruler_search`). From each, a strip is read along the image and its ticks are located, their
spacing fitted to a fraction of a pixel (:mod:`.ruler_ticks`). The most regular run of ticks is the
ruler: a line from its first tick to its last is returned, ready to be checked by eye and given to
:func:`napari_nevus_seg.pixel_size_from_ruler` with the number of spacings it spans.

The spacing is that of the ruler's ticks; where they alternate tall and short (half-millimetre
rulers), of the tall ones. Whether they are millimetres is for the user to check against the ruler's
numbers. How often rulers are found, on which images, and how often wrongly: docs/measurements.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_nevus_seg.io.deadline import check_deadline
from napari_nevus_seg.io.intensity import to_rgb_uint8
from napari_nevus_seg.measurements.ruler_search import line_candidates, tile_peaks
from napari_nevus_seg.measurements.ruler_ticks import RulerTicks, read_ticks

__all__ = ["RulerSearchCancelled", "RulerTicks", "find_ruler"]

#: the long side (pixels) the image is reduced to for the search and the reading of the ticks
WORK_SIDE = 1024
#: the tiles searched for a rhythm, in pixels of the reduced image
TILE = 128
#: the tile peaks of different rhythms followed along the image, strongest first
CANDIDATES = 8
#: half the width of the strip read along a straight line, in pixels of the reduced image
LINE_HALF_WIDTH = 20
#: the fewest tick spacings a ruler must show
MIN_TICKS = 5
#: the share of the brightness variation along the ticks their rhythm must explain to be a ruler
#: (chosen on ISIC 2017 images, docs/measurements.md)
MIN_REGULARITY = 0.5
#: a longer read of the same ruler is preferred if at least this share as regular as the most regular read
SAME_RULER_REGULARITY = 0.9
#: and if its spacing is within this share of that read's (0.01 let a line run a tick past an ISIC ruler's end
#: at a spacing 0.8 % longer, docs/measurements.md)
SAME_RULER_SPACING = 0.005


class RulerSearchCancelled(Exception):
    """Raised by :func:`find_ruler` when its ``cancel`` event was set."""


def find_ruler(image: np.ndarray, *, min_regularity: float = MIN_REGULARITY, cancel: Any = None) -> RulerTicks | None:
    """The ruler ticks in ``image`` ((H, W) grey or (H, W, C) colour), or None when none stand out.

    Candidates come from the longest straight lines and from the :data:`CANDIDATES` strongest tile
    spectra of different rhythms (:mod:`.ruler_search`); each is followed along the image
    (:func:`.ruler_ticks.read_ticks`). The run of at least :data:`MIN_TICKS` tick spacings whose rhythm
    explains most of the brightness along it is the ruler, if its :attr:`RulerTicks.regularity` reaches
    ``min_regularity``. On a 2-core CPU: 0.3 s for 341x256, 0.8 s for 768x576, 1.5 s for a 12-megapixel
    photograph (docs/benchmarks.md). ``image`` may be 8- or 16-bit, float ([0, 1] or 0-255), grey, RGB
    or RGBA, channels last or first (scaled as :func:`napari_nevus_seg.to_rgb_uint8` does). ``cancel``
    (an object with ``is_set()``) is polled between candidates: :class:`RulerSearchCancelled` when set;
    so is a batch run's time limit (:func:`~napari_nevus_seg.io.deadline.check_deadline`).
    ValueError for an array that is not an image.
    """
    grey = _grey(image)
    factors = _search_factors(max(grey.shape))
    levels = {factor: _reduce(grey, factor) for factor in factors}
    base = factors[0]                      # the ticks are followed in the finer search image
    looks = [(centre, angle, spacing, LINE_HALF_WIDTH) for centre, angle, spacing in line_candidates(levels[base])]
    peaks = [(peak, factor) for factor, small in levels.items() if min(small.shape) >= TILE
             for peak in tile_peaks(small, TILE)]
    tried: list[tuple[float, float]] = []
    for (_, (row, col), spacing, angle), factor in sorted(peaks, key=lambda p: -p[0][0]):
        scale = factor / base
        if any(_alike((spacing * scale, angle), other) for other in tried):
            continue                       # a texture repeats in many tiles: one look is enough
        tried.append((spacing * scale, angle))
        looks.append((((row + TILE / 2) * scale - 0.5, (col + TILE / 2) * scale - 0.5), angle, spacing * scale,
                      TILE * scale / 2))
        if len(tried) == CANDIDATES:
            break
    reads = []
    for centre, angle, spacing, half_width in looks:
        if cancel is not None and cancel.is_set():
            raise RulerSearchCancelled("ruler search cancelled")
        check_deadline("finding the ruler")      # a batch run's time limit per image (else nothing)
        found = read_ticks(levels[base], centre, angle, spacing, half_width=half_width)
        if found is not None and found.spacings >= MIN_TICKS and not _staircase(found):
            reads.append(found)
    best = max(reads, key=lambda found: found.regularity, default=None)
    if best is None or best.regularity < min_regularity:
        return None
    best = _longest_of_its_ruler(best, [r for r in reads if r.regularity >= min_regularity])
    return best if base == 1 else best.scaled(base)


def _longest_of_its_ruler(best: RulerTicks, reads: list[RulerTicks]) -> RulerTicks:
    """The read of ``best``'s ruler that spans the most ticks: among the reads of the same ticks (spacing
    within :data:`SAME_RULER_SPACING`, direction within 2 degrees, on the same line within a spacing) at least
    :data:`SAME_RULER_REGULARITY` times as regular as ``best``, the one with the most spacings.

    Reads across different bands of one ruler differ: the short ticks' band is the most regular, while
    the long ticks' band reaches the ruler's ends too (the ruler sample: 8 of its 12 spacings against all
    12, both 50.00 px). The longer line is the one a user checks against the ruler and can type in mm.
    """
    def same(other: RulerTicks) -> bool:
        turn = _turn_deg(other.angle_deg, best.angle_deg)
        direction = np.radians(best.angle_deg)
        normal = np.array([np.cos(direction), -np.sin(direction)])       # across the ruler, (row, col)
        mid = 0.5 * (np.asarray(other.start) + np.asarray(other.end)) - np.asarray(best.start)
        return (abs(other.spacing_px / best.spacing_px - 1.0) <= SAME_RULER_SPACING and turn <= 2.0
                and abs(float(mid @ normal)) <= best.spacing_px)

    alike = [r for r in reads if r.spacings > best.spacings and r.regularity >= SAME_RULER_REGULARITY * best.regularity
             and same(r)]   # (``reads``: those that reach the caller's threshold too)
    return max(alike, key=lambda r: (r.spacings, r.regularity)) if alike else best


def _staircase(found: RulerTicks) -> bool:
    """Whether the rhythm is the pixel staircase of a thin straight line drawn without smoothing: read in
    a band at most 3 px across (a ruler's ticks stand out of their base line), at a spacing below.

    Such a line at an angle a from the nearest image axis steps a pixel every 1 / sin(a) pixels along
    it, and its pattern of steps repeats every q / cos(a) pixels where tan(a) is close to a fraction
    p / q. A rhythm at one of these spacings, or a half or third of one (within 5 %), is taken for it.
    """
    a = np.radians(abs((found.angle_deg + 45.0) % 90.0 - 45.0))
    if a < np.radians(2.0) or found.band_px > 3:
        return False
    periods = [1.0 / np.sin(a)] + [q / np.cos(a) for q in range(1, 13)
                                   if round(q * np.tan(a)) and abs(round(q * np.tan(a)) / q - np.tan(a)) <= 0.02]
    return any(abs(found.spacing_px * k / period - 1.0) <= 0.05 for period in periods for k in (1, 2, 3))


def _alike(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (spacing, direction) peaks are the same rhythm: within 10 % and 5 degrees."""
    return abs(a[0] / b[0] - 1.0) <= 0.1 and _turn_deg(np.degrees(a[1]), np.degrees(b[1])) <= 5.0


def _turn_deg(a: float, b: float) -> float:
    """The angle between two line directions in degrees (0-90), whichever way each runs."""
    return abs((a - b + 90.0) % 180.0 - 90.0)


def _search_factors(long_side: int) -> list[int]:
    """Reduction factors of the search: to :data:`WORK_SIDE` pixels (fine ticks) and to about a
    third of it (ticks up to a twelfth of the image apart)."""
    fine = max(1, int(np.ceil(long_side / WORK_SIDE)))
    coarse = max(1, int(np.ceil(long_side / (WORK_SIDE / 3.2))))
    return [fine] if coarse == fine else [fine, coarse]


def _grey(image: np.ndarray) -> np.ndarray:
    """The image as float32 grey, 0-255 (the mean of R, G and B after :func:`to_rgb_uint8`'s scaling)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        raise TypeError(f"find_ruler takes the image's pixels, not a file name ({image!r}): "
                        "napari_nevus_seg.read_image(path) reads them")
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"find_ruler needs an (H, W) or (H, W, C) image, got shape {arr.shape}")
    rgb = to_rgb_uint8(arr, source="find_ruler", min_side=1)
    return rgb.sum(axis=-1, dtype=np.uint16).astype(np.float32) / np.float32(3)   # (no float copy of the RGB)


def _reduce(grey: np.ndarray, factor: int) -> np.ndarray:
    """``grey`` reduced by the mean of ``factor`` x ``factor`` blocks (the edge remainder is dropped)."""
    if factor == 1:
        return grey
    h, w = (grey.shape[0] // factor) * factor, (grey.shape[1] // factor) * factor
    return grey[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
