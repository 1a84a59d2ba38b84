"""Preprocessing shared by training and inference, so the network learns exactly what it later sees.

The whole image is resized (anti-aliased) to the model's square input size, scaled to [0, 1] and
normalised with the mean and standard deviation stored in the model. The network's probability map
is resized back to the image's own size with bilinear interpolation, which gives smooth outlines.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .io import intensity_full_scale


def as_float_rgb(img: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) float32 array in [0, 1] from RGB uint8/uint16/float input.

    Integers beyond 8 bits and floats beyond [0, 1] are scaled by :func:`~napari_nevus_seg.io.intensity_full_scale`
    (as :func:`~napari_nevus_seg.io.to_rgb_uint8` does).

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
        return arr.astype(np.float32) / intensity_full_scale(float(arr.max()))
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(out / intensity_full_scale(float(out.max()), floating=True), 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {arr.dtype}")


def as_uint8_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB of any supported dtype -> uint8 (floats in [0, 1] are scaled by 255)."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.shape[0] < 2 or arr.shape[1] < 2:
            raise ValueError(f"image of {arr.shape[1]}x{arr.shape[0]} pixels is too small to segment")
        return arr
    return np.rint(as_float_rgb(arr) * 255.0).astype(np.uint8)


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
