"""Preprocessing shared by training and inference, so the network learns exactly what it later sees.

The whole image is resized (anti-aliased) to the model's square input size, scaled to [0, 1] and
normalised with the mean and standard deviation stored in the model. The network's probability map
is resized back to the image's own size with bilinear interpolation, which gives smooth outlines.

Images more elongated than :data:`MAX_ASPECT` (2:1) are not squashed into the square whole: the
network sees overlapping windows along their long side, each about as elongated as a dermoscopy
frame (:data:`WINDOW_ASPECT`, 4:3), and :func:`stitch_windows` blends the windows' maps into one
(:func:`window_layout`), keeping only what the whole-image view confirms (:func:`confirmed_by_whole`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_nevus_seg.io.intensity import FLOAT_UNIT_PEAK, array_full_scale, intensity_full_scale, warn_not_finite


def as_float_rgb(img: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) float32 array in [0, 1] from RGB uint8/uint16/float input.

    Integers beyond 8 bits and floats beyond [0, 1] are scaled by :func:`~napari_nevus_seg.io.intensity.intensity_full_scale`
    (as :func:`~napari_nevus_seg.io.intensity.to_rgb_uint8` does).

    Raises ``ValueError`` with a clear message for arrays that are not RGB images.
    """
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(
            f"expected an RGB image of shape (H, W, 3), got shape {arr.shape}; "
            "use read_image() or to_rgb_uint8() to convert grayscale or RGBA images")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"image of {arr.shape[1]}x{arr.shape[0]} pixels is too small to segment")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == bool:
        raise ValueError("expected an RGB image, got a boolean array (a mask?)")
    if np.issubdtype(arr.dtype, np.integer):  # 8 to 16 bits, scaled by the bit depth the values need
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(f"integer image of dtype {arr.dtype} has values outside 0..65535")
        return arr.astype(np.float32) / array_full_scale(arr)[0]
    if np.issubdtype(arr.dtype, np.floating):
        # in the array's own precision until scaled: float64 values beyond float32's range stay finite
        out = arr.astype(np.float32) if arr.dtype.itemsize < 4 else arr
        finite = int(np.count_nonzero(np.isfinite(out)))
        if finite < out.size:
            warn_not_finite(out.size - finite, out.size)
            out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(out / array_full_scale(out)[0], 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unsupported image dtype {arr.dtype}")


CONVERT_BAND_PIXELS = 1_000_000  # larger 16-bit / float images are converted to uint8 in bands of this many pixels


def as_uint8_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB of any supported dtype -> uint8 (floats in [0, 1] are scaled by 255).

    The same values as ``rint(as_float_rgb(img) * 255)``; images larger than :data:`CONVERT_BAND_PIXELS`
    are converted in row bands, so that no full-size float copy is made (a 6000x4000 16-bit image
    would need four of 288 MB each).
    """
    arr = np.asarray(img)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.shape[0] < 2 or arr.shape[1] < 2:
            raise ValueError(f"image of {arr.shape[1]}x{arr.shape[0]} pixels is too small to segment")
        return arr
    numeric = arr.dtype != bool and (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
    if not numeric or arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] * arr.shape[1] <= CONVERT_BAND_PIXELS:
        return np.rint(as_float_rgb(arr) * 255.0).astype(np.uint8)   # small images, and the error messages
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 65535:
            raise ValueError(f"integer image of dtype {arr.dtype} has values outside 0..65535")
        scale, floating = intensity_full_scale(hi), False
    else:
        not_finite: list[int] = []
        peak, above = 0.0, 0
        for _, band in _float_bands(arr, not_finite):
            peak = max(peak, float(band.max()))
            above += int(np.count_nonzero(band > FLOAT_UNIT_PEAK))
        scale = intensity_full_scale(peak, floating=True, over=above / arr.size)
        warn_not_finite(sum(not_finite), arr.size)
        floating = True
    out = np.empty(arr.shape, np.uint8)
    for r0, band in _float_bands(arr):   # in place: one float32 band at a time
        band /= band.dtype.type(scale)
        if floating:
            np.clip(band, 0.0, 1.0, out=band)
        band *= band.dtype.type(255.0)
        out[r0:r0 + len(band)] = np.rint(band, out=band)
    return out


def _float_bands(arr: np.ndarray, not_finite: list[int] | None = None):
    """Row bands of an image as float32 with NaN -> 0, +inf -> 1, -inf -> 0 (as_float_rgb's rules);
    ``not_finite`` receives each float band's count of values replaced (as as_float_rgb counts them)."""
    rows = max(1, CONVERT_BAND_PIXELS // max(arr.shape[1], 1))
    floating = np.issubdtype(arr.dtype, np.floating)
    for r0 in range(0, arr.shape[0], rows):
        band = arr[r0:r0 + rows].astype(np.float64 if arr.dtype.itemsize > 4 else np.float32)
        if floating:
            if not_finite is not None:
                not_finite.append(int(band.size - np.count_nonzero(np.isfinite(band))))
            np.nan_to_num(band, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        yield r0, band


def resize_uint8(arr: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Anti-aliased bilinear resize of an (H, W) or (H, W, 3) uint8 array to ``size`` (rows, cols).

    Pillow's resampler: a fast integer box reduction first for very large images (bounded memory:
    no float copy of the full image), then a bilinear filter widened to the scale factor.
    """
    from PIL import Image

    rows, cols = (size, size) if isinstance(size, int) else size
    if arr.shape[:2] == (rows, cols):
        return arr
    im = Image.fromarray(np.ascontiguousarray(arr))
    return np.asarray(im.resize((cols, rows), Image.BILINEAR, reducing_gap=3.0))


def model_input(img: np.ndarray, size: int) -> np.ndarray:
    """The network's view of an image: (size, size, 3) uint8, the whole image resized (no crop).

    Used by both training and inference.
    """
    return resize_uint8(as_uint8_rgb(img), size)


MAX_ASPECT = 2.0          # images more elongated than this are seen in windows (whole below it)
WINDOW_ASPECT = 4.0 / 3.0  # long / short side of each window: a dermoscopy frame as the network learnt it
MIN_OVERLAP = 0.25         # neighbouring windows share at least this fraction of a window
WHOLE_SUPPORT = 0.1        # a window's detection is kept where the whole-image view exceeds this in it
MAX_WINDOWS = 16           # at most this many windows (beyond about 12:1 each window is squashed more)


@dataclass(frozen=True)
class WindowLayout:
    """How an elongated image is cut into windows for a network whose input is ``size`` pixels square.

    The stitched map is ``size`` long on the image's short axis and ``map_len`` on its long ``axis``
    (0: rows, 1: columns); window ``i`` covers map positions ``starts[i] .. starts[i] + size`` there.
    """

    axis: int
    map_len: int
    starts: tuple[int, ...]
    size: int

    def image_span(self, i: int, long_side: int) -> tuple[int, int]:
        """The image rows (axis 0) or columns (axis 1) that window ``i`` shows."""
        scale = long_side / self.map_len
        return round(self.starts[i] * scale), round((self.starts[i] + self.size) * scale)


def window_layout(shape: tuple[int, int], size: int) -> WindowLayout | None:
    """The windows for an image of ``shape`` (rows, cols), or None when the network sees it whole."""
    h, w = int(shape[0]), int(shape[1])
    long_side, short_side = max(h, w), min(h, w)
    if long_side <= MAX_ASPECT * short_side:
        return None
    map_len = round(size * long_side / (WINDOW_ASPECT * short_side))
    # bounded work for any shape: a 99450 x 8 px strip gets 16 windows, not 12,000
    map_len = min(map_len, size + math.floor((MAX_WINDOWS - 1) * (1.0 - MIN_OVERLAP) * size))
    n = math.ceil((map_len - size) / ((1.0 - MIN_OVERLAP) * size)) + 1
    starts = tuple(round(i * (map_len - size) / (n - 1)) for i in range(n))
    return WindowLayout(axis=0 if h > w else 1, map_len=map_len, starts=starts, size=size)


def model_windows(img: np.ndarray, size: int) -> tuple[list[np.ndarray], WindowLayout | None]:
    """The network's views of an image: ``[model_input(img, size)]`` and None, or the windows, then the
    whole image (which :func:`merge_windows` checks the windows' detections against), and their layout."""
    u8 = as_uint8_rgb(img)
    whole = model_input(u8, size)
    layout = window_layout(u8.shape[:2], size)
    if layout is None:
        return [whole], None
    views = []
    for i in range(len(layout.starts)):
        a, b = layout.image_span(i, u8.shape[layout.axis])
        views.append(resize_uint8(u8[a:b] if layout.axis == 0 else u8[:, a:b], size))
    return views + [whole], layout


def merge_windows(probs: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """The network's maps of the views :func:`model_windows` gave (windows, then the whole image) -> one map."""
    return confirmed_by_whole(stitch_windows(probs[:-1], layout), probs[-1])


def stitch_windows(probs: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """(n, size, size) window maps -> one map, (size, map_len) or (map_len, size) along ``layout.axis``.

    Overlaps are blended with tent weights (a window's centre counts most, its cut edges least).
    """
    n, size = len(layout.starts), layout.size
    maps = probs.float() if layout.axis == 1 else probs.float().transpose(1, 2)   # long axis last
    pos = torch.arange(size, dtype=torch.float32, device=probs.device)
    tent = torch.minimum(pos + 1.0, size - pos)
    acc = torch.zeros(size, layout.map_len, device=probs.device)
    weight = torch.zeros(layout.map_len, device=probs.device)
    for i in range(n):
        s = layout.starts[i]
        acc[:, s:s + size] += maps[i] * tent
        weight[s:s + size] += tent
    out = acc / weight
    return out if layout.axis == 1 else out.T.contiguous()


def confirmed_by_whole(stitched: torch.Tensor, whole: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The stitched map without the detections that the whole-image view does not share.

    A window showing skin only is unlike anything the network learnt (every training image shows a
    lesion), and it tends to outline something there; such a detection (a connected region above
    ``threshold``) is dropped unless the network, seeing the whole image squashed, gives some pixel in
    it a probability above :data:`WHOLE_SUPPORT` (how that value was chosen and what the check gains:
    docs/model_card.md, Preprocessing).
    """
    from scipy import ndimage as ndi

    whole_up = F.interpolate(whole.float()[None, None], size=tuple(stitched.shape), mode="bilinear",
                             align_corners=False)[0, 0]
    parts, n = ndi.label((stitched > threshold).cpu().numpy())
    if n == 0:
        return stitched
    support = ndi.maximum(whole_up.cpu().numpy(), parts, index=np.arange(1, n + 1)) > WHOLE_SUPPORT
    keep = np.concatenate([[True], support])[parts]   # background (part 0) kept as it is
    return stitched * torch.from_numpy(keep).to(stitched.device)


def mask_input(mask: np.ndarray, size: int) -> np.ndarray:
    """A mask (any non-zero is lesion) resized like its image: (size, size) uint8 in {0, 1}."""
    m = (np.asarray(mask) != 0).astype(np.uint8) * 255
    return (resize_uint8(m, size) > 127).astype(np.uint8)


def to_batch_tensor(images_u8: np.ndarray | torch.Tensor, mean, std, device=None) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> normalised (N, 3, S, S) float32 channels-last tensor on ``device``."""
    x = torch.as_tensor(images_u8)
    x = x.to(device) if device is not None else x
    x = x.permute(0, 3, 1, 2).float() / 255.0
    return normalise(x, mean, std).contiguous(memory_format=torch.channels_last)


def resize_tensor(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize an (N, C, H, W) float tensor with anti-aliasing when shrinking."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Subtract the model's per-channel mean and divide by its std (x in [0, 1], N, 3, H, W)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
