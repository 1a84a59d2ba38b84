"""Pixel sizes given by users: one check for the API, the batch runs, the command line and label files."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

#: the pixel sizes (mm per pixel) accepted by default: 1 nm to 1 m. Below it, lengths and areas in mm
#: lose their digits in tables and the TIFF resolution tags (32-bit fractions of pixels per cm) cannot
#: hold the size; above it, no photograph of skin.
PIXEL_SIZE_RANGE_MM = (1e-6, 1e3)


def pixel_size_pair(value: Any, where: str = "pixel_size_mm", *,
                    limits: tuple[float, float] | None = PIXEL_SIZE_RANGE_MM) -> tuple[float, float]:
    """A pixel size in mm as a checked ``(row, column)`` pair of floats.

    Parameters
    ----------
    value
        One number (square pixels) or a ``(row, column)`` pair of numbers: Python or NumPy ints and
        floats, a 0-d array, or a sequence or array of one or two of them.
    where
        What the value is called in the error message: an argument name (``"pixel_size_mm"``), an
        option (``"--pixel-size-mm"``) or a file name with it.
    limits
        The smallest and largest size accepted, in mm (default :data:`PIXEL_SIZE_RANGE_MM`);
        ``None`` accepts any finite size above 0 (for callers that check the size further themselves).

    Returns
    -------
    tuple of float
        The ``(row, column)`` size of a pixel in mm; one number gives it twice.

    Raises
    ------
    ValueError
        For booleans, strings and other non-numbers (the message names the type), for anything
        but one or two values, and for values that are not finite, not above 0 or outside ``limits``.
        The message names ``where``, the accepted range and the value given.
    """
    if limits is None:
        what = f"{where} must be a positive number of mm per pixel (or a (row, column) pair of them)"
    else:
        what = (f"{where} must be a number of mm per pixel from {limits[0]:g} to {limits[1]:g} "
                f"(or a (row, column) pair of them)")
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{what}, got {value!r} ({type(value).__name__})")
    values = list(np.asarray(value, dtype=object).ravel())
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ValueError(f"{what}, got {value!r}")
    sizes = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise ValueError(f"{what}, got {value!r} ({type(v).__name__})")
        v = float(v)
        if not (math.isfinite(v) and v > 0) or (limits is not None and not limits[0] <= v <= limits[1]):
            raise ValueError(f"{what}, got {value!r}")
        sizes.append(v)
    return sizes[0], sizes[1]


def pixel_size_from_ruler(start: Any, end: Any, length_mm: float,
                          pixel_aspect: tuple[float, float] = (1.0, 1.0)) -> float:
    """The size of a pixel in mm from a line drawn along ``length_mm`` of a ruler in the image.

    ``start`` and ``end`` are the line's ends as (row, column) pixel coordinates (fractions allowed, as
    a line drawn in napari gives them); ``pixel_aspect`` is the image's (row, column) pixel shape when
    its pixels are not square (the result is then the column size). Returns mm per pixel, checked
    against :data:`PIXEL_SIZE_RANGE_MM`. ValueError for ends that are not two finite (row, column)
    pairs, ends less than 2 pixels apart, or a length that is not a positive finite number of mm.
    """
    pts = []
    for name, p in (("start", start), ("end", end)):
        arr = np.asarray(p, dtype=float).ravel() if not isinstance(p, (str, bytes)) else np.array([])
        if arr.size != 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"ruler {name} must be a (row, column) pair of pixel coordinates, got {p!r}")
        pts.append(arr)
    if isinstance(length_mm, (bool, np.bool_)) or not isinstance(length_mm, numbers.Real) \
            or not math.isfinite(length_mm) or length_mm <= 0:
        raise ValueError(f"ruler length must be a positive number of mm, got {length_mm!r}")
    aspect = np.asarray(pixel_aspect, dtype=float) / float(pixel_aspect[1])
    pixels = float(np.hypot(*((pts[1] - pts[0]) * aspect)))
    if pixels < 2.0:
        raise ValueError(f"the ruler line is {pixels:.1f} px long: draw it along the ruler's marks, "
                         "at least a few pixels long")
    return pixel_size_pair(float(length_mm) / pixels, "pixel size from the ruler")[0]
