"""Reading expert masks: any 1-bit, 8-bit, 16-bit, palette or colour mask file -> (H, W) bool."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_nevus_seg.io.files import ImageReadError, check_file, check_pixel_count, decode_error, quiet_bomb_warning
from napari_nevus_seg.io.images import read_tiff_page


def mask_plane(arr: np.ndarray, path: Path) -> np.ndarray:
    """The (H, W) plane of a stored mask: one trailing channel squeezed, gray+alpha -> gray, colour -> the
    brightest of R, G, B; channels first (C, H, W) likewise. Raises :class:`ImageReadError` otherwise."""
    arr = np.asarray(arr)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3:
        if arr.shape[-1] in (1, 2):      # (H, W, 1) gray, (H, W, 2) gray + alpha
            arr = arr[..., 0]
        elif arr.shape[-1] in (3, 4):    # RGB, RGBA
            arr = arr[..., :3].max(axis=-1)
        elif arr.shape[0] in (1, 2):     # channels first
            arr = arr[0]
        elif arr.shape[0] in (3, 4):
            arr = arr[:3].max(axis=0)
    if arr.size == 0:
        raise ImageReadError(f"{path}: the mask has no pixels (shape {arr.shape})")
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: unsupported mask shape {arr.shape}; expected (H, W), (H, W, 1..4) "
                             "or (1..4, H, W)")
    return arr


def is_colour_page(arr: np.ndarray) -> bool:
    """True when :func:`mask_plane` reads ``arr`` as a colour (3 or 4 channel) image."""
    arr = np.asarray(arr)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    return arr.ndim == 3 and (arr.shape[-1] in (3, 4) or (arr.shape[-1] not in (1, 2) and arr.shape[0] in (3, 4)))


def mask_of_plane(arr: np.ndarray) -> np.ndarray:
    # 8-bit masks reaching the upper half (0/255, JPEG-compressed ones) are cut at 127; others (0/1, label
    # numbers 0..N, 0/100) at 0
    return arr > (127 if arr.dtype == np.uint8 and arr.max(initial=0) >= 128 else 0)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an expert mask (any image format) as an (H, W) boolean array: lesion where it is bright.

    8-bit masks whose values reach 128 (0/255, also when JPEG-compressed) are lesion above 127; other masks
    (0/1, label numbers, 16-bit) are lesion where non-zero. Colour masks use their brightest channel,
    gray + alpha masks their gray channel; of a multi-page TIFF the first page is read, with a warning.
    """
    path = Path(path)
    check_file(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = read_tiff_page(path)
        else:
            from PIL import Image

            with quiet_bomb_warning(), Image.open(path) as im:
                check_pixel_count(im.height, im.width, path)
                if im.mode in ("L", "1", "I", "I;16"):
                    arr = np.asarray(im)
                elif im.mode == "LA":
                    arr = np.asarray(im.getchannel(0))
                else:   # RGB, RGBA, palette...: the brightest channel (a red or blue lesion is no darker than grey)
                    arr = np.asarray(im.convert("RGB"))
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise decode_error(path, exc) from exc
    return mask_of_plane(mask_plane(arr, path))
