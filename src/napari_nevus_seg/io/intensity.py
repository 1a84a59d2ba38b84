"""Intensity conversion: any image array (gray, RGB(A), 8-64 bit, float) -> (H, W, 3) uint8 RGB.

The scale is inferred from the values (:func:`intensity_full_scale`): 8-bit data, 10/12/14/16-bit data
in wider integers, [0, 1] floats (with a few hot pixels clipped) or 0..255 floats.
"""

from __future__ import annotations

import warnings

import numpy as np

from napari_nevus_seg.io.files import ImageReadError
from napari_nevus_seg.io.text import named

MIN_SIDE = 8  # smaller images carry no usable lesion


FLOAT_UNIT_PEAK = 2.0  # float images whose largest value is at most this are [0, 1] data


FLOAT_OUTLIER_SHARE = 1e-3  # ... and so are those with at most this share of values above it (hot pixels)


def warn_not_finite(count: int, total: int, source: str = "image") -> None:
    """Warn that ``count`` of ``total`` pixel values are NaN or infinite (they are replaced, not segmented as data)."""
    if count:
        text = (f"{source}: {count} of {total} pixel values ({100.0 * count / max(total, 1):.3g} %) are NaN or "
                "infinite; they were replaced (NaN by black), so colours and outlines there are not the image's own")
        # an array has no name of its own: the file a batch is processing names it
        warnings.warn(named(text) if source in ("image", "array") else text, UserWarning, stacklevel=3)


def array_full_scale(arr: np.ndarray) -> tuple[float, float]:
    """(full scale, peak) of a numeric image array, every channel counted (alpha too), NaN and infinite
    values left out: the value :func:`to_rgb_uint8` and :func:`~napari_nevus_seg.segment` take as full
    intensity (:func:`intensity_full_scale`), and the largest value it was inferred from."""
    if arr.dtype.kind != "f":
        peak = float(arr.max(initial=0))
        return intensity_full_scale(peak), peak
    finite = np.isfinite(arr)
    peak = float(np.max(arr, where=finite, initial=0.0))
    over = np.count_nonzero(finite & (arr > FLOAT_UNIT_PEAK)) / max(arr.size, 1)
    return intensity_full_scale(peak, floating=True, over=over), peak


def intensity_full_scale(peak: float, floating: bool = False, over: float = 1.0) -> float:
    """The pixel value shown as full intensity for an image whose largest value is ``peak``.

    1 for floats up to 2 (data in [0, 1]: a few values above 1, the overshoot of a bicubic resize or of
    sharpening, are clipped instead of turning the image into near-black 0..255 data), and for floats
    whose share ``over`` of values above 2 is at most :data:`FLOAT_OUTLIER_SHARE` (a few hot pixels in
    [0, 1] data, clipped, instead of every colour turning near-black); 255 when the
    values fit 8 bits; else ``2**b - 1`` for the smallest even bit depth ``b`` >= 10 that holds ``peak``
    (10, 12, 14, 16 bits: 12-bit camera data stored as uint16 is scaled by 4095, as napari's contrast
    limits would show it, not by 65535).
    """
    if floating and (peak <= FLOAT_UNIT_PEAK or over <= FLOAT_OUTLIER_SHARE):
        return 1.0
    if peak <= 255.0:
        return 255.0
    bits = max(10, int(np.ceil(np.log2(float(peak) + 1.0))))
    return float(2 ** (bits + bits % 2) - 1)


def to_rgb_uint8(arr: np.ndarray, source: str = "array", min_side: int = MIN_SIDE) -> np.ndarray:
    """Convert an image array of any common layout and dtype to (H, W, 3) uint8 RGB (rules above).

    Images with a side under ``min_side`` pixels are refused (files that small hold no usable lesion;
    :func:`~napari_nevus_seg.measure` passes 1, as any labels that exist can be measured)."""
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels first (e.g. some TIFF writers)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"{source}: unsupported image shape {arr.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if arr.shape[0] < min_side or arr.shape[1] < min_side:
        raise ImageReadError(
            f"{source}: image is only {arr.shape[1]}x{arr.shape[0]} pixels; at least {min_side}x{min_side} is needed")
    if arr.dtype.kind not in "uif":
        raise ImageReadError(f"{source}: unsupported pixel type {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min(initial=0) < 0:
        raise ImageReadError(f"{source}: negative pixel values ({arr.min()}) in an integer image")
    if arr.dtype.kind in "ui" and arr.max(initial=0) > 65535:
        raise ImageReadError(f"{source}: pixel values up to {arr.max()} exceed the 16-bit range; "
                             "convert the image to 8 or 16 bits")
    if arr.dtype == np.uint8 and arr.shape[-1] == 3:
        return np.ascontiguousarray(arr)  # already RGB uint8: no float copy (a 6000x4000 image is 72 MB, not 700)
    full, _ = array_full_scale(arr)
    if arr.dtype.kind == "f":
        warn_not_finite(int(arr.size - np.count_nonzero(np.isfinite(arr))), arr.size, source)
        # scaled in the array's own precision first: float64 values beyond float32's range (1e300) stay finite
        scaled = np.nan_to_num(arr * (255.0 / full), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    else:
        scaled = arr.astype(np.float32)
        scaled *= 255.0 / full
    scaled = np.clip(scaled, 0, 255)
    channels = scaled.shape[-1]
    if channels in (2, 4):
        alpha = scaled[..., -1:] / 255.0
        scaled = scaled[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    return np.ascontiguousarray(np.rint(scaled).astype(np.uint8))
