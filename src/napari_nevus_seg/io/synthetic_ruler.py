"""A millimetre ruler drawn into an image, for the sample data and the tests of ruler finding.

The ruler is a light strip with dark ticks across it, as on the transparent rulers stuck to the skin in
dermoscopy photographs: one tick per ``spacing_px`` pixels, every fifth one (or ``long_every``-th) longer. Drawn with
anti-aliased edges, so that the tick positions are exact to a fraction of a pixel and a finder can be
checked against the spacing given.
"""

from __future__ import annotations

import numpy as np


def draw_ruler(image: np.ndarray, *, start: tuple[float, float], spacing_px: float, ticks: int = 12,
               angle_deg: float = 0.0, tick_length_px: float | None = None, tick_width_px: float | None = None,
               strip: bool = True, tick_value: float = 25.0, long_every: int = 5) -> np.ndarray:
    """A copy of ``image`` ((H, W) or (H, W, C) uint8) with a ruler drawn in it.

    ``start`` is the (row, column) centre of the first tick; the ticks follow along ``angle_deg``
    (0 = along the columns, 90 = down the rows), ``ticks`` of them ``spacing_px`` apart, standing
    ``tick_length_px`` (default 0.6 spacings; twice as long every ``long_every``-th tick, so 2 draws a
    half-millimetre ruler's alternating ticks) to one side of the ruler's edge;
    ``tick_width_px`` defaults to an eighth of a spacing (at least 1.2 px). ``strip`` draws the ruler's
    light plastic strip under the ticks.
    """
    out = np.asarray(image).astype(np.float32)
    rows, cols = np.mgrid[0:out.shape[0], 0:out.shape[1]].astype(np.float32)
    a = np.radians(angle_deg)
    along, across = np.array([np.sin(a), np.cos(a)]), np.array([np.cos(a), -np.sin(a)])
    length = tick_length_px if tick_length_px is not None else 0.6 * spacing_px
    width = tick_width_px if tick_width_px is not None else max(1.2, spacing_px / 8)
    pos = (rows - start[0]) * along[0] + (cols - start[1]) * along[1]      # along the ruler from tick 0
    side = (rows - start[0]) * across[0] + (cols - start[1]) * across[1]   # across it, from its edge
    paint = np.zeros(out.shape[:2], np.float32)
    if strip:
        inside = (pos > -spacing_px) & (pos < ticks * spacing_px) & (side > -0.3 * length) & (side < 2.6 * length)
        _blend(out, inside.astype(np.float32) * 0.85, 238.0)
    k = np.clip(np.rint(pos / spacing_px), 0, ticks - 1)
    tick_len = np.where(k % long_every == 0, 2.0 * length, length)
    coverage = np.clip(width / 2 + 0.5 - np.abs(pos - k * spacing_px), 0, 1)      # anti-aliased tick edges
    coverage *= np.clip(side + 0.5, 0, 1) * np.clip(tick_len - side + 0.5, 0, 1)
    paint = np.maximum(paint, coverage)
    _blend(out, paint, tick_value)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _blend(out: np.ndarray, weight: np.ndarray, value: float) -> None:
    """Mix ``value`` into ``out`` in place with per-pixel ``weight`` (0-1)."""
    w = weight[..., None] if out.ndim == 3 else weight
    out *= 1 - w
    out += w * value
