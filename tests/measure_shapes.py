"""Shapes with known geometry, rasterised by pixel-centre inclusion on a grid of any (row, col) pixel size."""

from __future__ import annotations

import numpy as np


def grid(extent_mm: float, spacing):
    """Pixel-centre coordinates (mm) of a square field of view of ``extent_mm``, centred on 0 (slightly offset)."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (2,))
    n_r, n_c = int(round(extent_mm / spacing[0])), int(round(extent_mm / spacing[1]))
    y = (np.arange(n_r) - n_r / 2 + 0.37) * spacing[0]
    x = (np.arange(n_c) - n_c / 2 - 0.21) * spacing[1]
    return np.meshgrid(y, x, indexing="ij")


def _rotated(yy, xx, angle_deg):
    t = np.radians(angle_deg)  # counter-clockwise on screen (rows point down)
    u = np.cos(t) * xx - np.sin(t) * yy   # along the shape's first axis
    v = np.sin(t) * xx + np.cos(t) * yy   # across it
    return u, v


def disc(r, spacing, extent=None):
    yy, xx = grid(extent or 3 * r, spacing)
    return yy ** 2 + xx ** 2 <= r * r


def ellipse(a, b, angle, spacing, extent=None):
    yy, xx = grid(extent or 3 * a, spacing)
    u, v = _rotated(yy, xx, angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def rectangle(length, width, angle, spacing, extent=None):
    yy, xx = grid(extent or 1.6 * np.hypot(length, width), spacing)
    u, v = _rotated(yy, xx, angle)
    return (np.abs(u) < length / 2) & (np.abs(v) < width / 2)


def triangle(vertices, spacing, extent):
    """Filled triangle with vertices (x, y) in mm (y up)."""
    yy, xx = grid(extent, spacing)
    px, py = xx, -yy
    inside = np.ones(xx.shape, bool)
    v = np.asarray(vertices, float)
    sign = np.sign(np.cross(v[1] - v[0], v[2] - v[0]))
    for i in range(3):
        a, b = v[i], v[(i + 1) % 3]
        inside &= sign * ((b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])) >= 0
    return inside


def ellipse_perimeter(a, b):
    h = ((a - b) / (a + b)) ** 2
    return np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))


def two_lesion_scene() -> tuple[np.ndarray, np.ndarray]:
    """Two round lesions (labels 2 and 7: light brown and dark brown) on skin: (labels, RGB image)."""
    labels = np.zeros((120, 160), np.int32)
    yy, xx = np.mgrid[:120, :160]
    labels[(yy - 40) ** 2 + (xx - 40) ** 2 <= 25 ** 2] = 2
    labels[(yy - 80) ** 2 + (xx - 115) ** 2 <= 30 ** 2] = 7
    img = np.zeros((120, 160, 3), np.uint8)
    img[:] = (214, 166, 142)
    img[labels == 2] = (153, 102, 0)
    img[labels == 7] = (51, 0, 0)
    return labels, img
