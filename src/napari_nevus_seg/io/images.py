"""Reading dermoscopy images: any common file -> (H, W, 3) uint8 RGB, with the file's pixel size.

Conversion rules of :func:`read_image` (the result is always (H, W, 3) uint8 RGB):

- grayscale (H, W) or (H, W, 1): the gray value is copied into the three channels;
- gray + alpha (H, W, 2) and RGBA (H, W, 4): alpha is composited over white (transparent pixels
  become white, like the paper around a photograph), then dropped;
- palette images are expanded to their RGB colours;
- integers (any type) and floats beyond [0, 1] are scaled by the bit depth their values need
  (:func:`~napari_nevus_seg.io.intensity.intensity_full_scale`): values within 0..255 are taken as 8-bit, larger ones as 10, 12, 14
  or 16-bit (a 12-bit camera's data in uint16 maps 4095 to white, not 4095/65535 = 6 %); negative
  values or values above 65535 in an integer image are an error;
- floating point: values in [0, 1] are scaled by 255 (an image whose largest value is at most 2, or
  with at most 0.1 % of its values above 2, counts as [0, 1] data, its values above 1 clipped); NaN and infinite values become 0;
- multi-page TIFF / stacks: the first page is read (use ``tifffile`` directly for stacks).

Errors are :class:`ImageReadError` (a ``ValueError``) with a message that says what is wrong.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_nevus_seg.io.files import ImageReadError, check_file, check_pixel_count, decode_error, quiet_bomb_warning
from napari_nevus_seg.io.intensity import to_rgb_uint8


@dataclass(frozen=True)
class ImageInfo:
    """Metadata found in an image file."""

    pixel_size_mm: tuple[float, float] | None = None  # (row, column) size of a pixel in mm
    source_dtype: str = ""  # pixel type stored in the file, e.g. "uint8", "uint16", "float32"
    source_shape: tuple[int, ...] = ()  # array shape stored in the file (first page), e.g. (H, W, 4)
    source_mode: str = ""  # how the file stored colour: "gray", "gray+alpha", "RGB", "RGBA", "palette", ...


# --------------------------------------------------------------------------------------- images


def tiff_pixel_size(tif) -> tuple[float, float] | None:
    """Pixel size in mm from TIFF resolution tags, when the file carries a physical unit."""
    try:
        page = tif.pages[0]
        tags = page.tags
        unit = tags.get("ResolutionUnit")
        xr, yr = tags.get("XResolution"), tags.get("YResolution")
        if unit is None or xr is None or yr is None:
            return None
        unit_v = int(getattr(unit.value, "value", unit.value))
        per_mm = {2: 25.4, 3: 10.0}.get(unit_v)  # inch, centimetre
        if per_mm is None:
            return None

        def size(v):
            num, den = v.value if isinstance(v.value, tuple) else (v.value, 1)
            return per_mm * den / num if num else None

        sy, sx = size(yr), size(xr)
        if not sy or not sx:
            return None
        # 72 dpi is a common "no information" default of image software: ignore it
        if unit_v == 2 and abs(sx - 25.4 / 72) < 1e-9 and abs(sy - 25.4 / 72) < 1e-9:
            return None
        return (float(sy), float(sx))
    except Exception:  # noqa: BLE001 - metadata is optional
        return None


_MODES = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


def _read_tiff(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        arr, page = tiff_first_image(tif, path, stacklevel=4)
        mode = ""
        if int(page.photometric) == 3 and page.colormap is not None:  # palette
            cmap = np.asarray(page.colormap)  # (3, 2**bits), usually uint16
            arr = np.moveaxis(cmap[:, arr], 0, -1)
            if cmap.max() > 255:
                arr = np.rint(arr / 257.0).astype(np.uint8)
            mode = "palette"
        return arr, tiff_pixel_size(tif), mode


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    from PIL import Image

    with quiet_bomb_warning(), Image.open(path) as im:
        check_pixel_count(im.height, im.width, path)   # before decoding: the header is read, no pixels yet
        warn_exif_rotation(im, path)
        im.load()
        mode = ""
        if im.mode in ("P", "PA"):
            has_alpha = im.mode == "PA" or "transparency" in im.info
            im = im.convert("RGBA" if has_alpha else "RGB")
            mode = "palette"
        elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"):
            mode = im.mode
            im = im.convert({"1": "L", "La": "LA", "RGBa": "RGBA"}.get(im.mode, "RGB"))
        elif im.mode.startswith("I;16"):
            return np.asarray(im, dtype=np.uint16), "gray"
        return np.asarray(im), mode


EXIF_ORIENTATION = 0x0112


def warn_exif_rotation(im: Any, path: Path) -> None:
    """Warn when a photo's EXIF orientation asks viewers to rotate or mirror it.

    Images are read as stored, not rotated: masks drawn on the stored pixels, data-set tools and
    napari's own reader all use that orientation, so rotating here would misalign a mask.
    """
    try:
        orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - EXIF is optional and often malformed
        return
    if orientation not in (0, 1):
        warnings.warn(f"{path.name}: its EXIF orientation tag ({orientation}) asks viewers to rotate or mirror "
                      "it; it is read as stored, like its masks and napari's own reader (save it upright to "
                      "change that)", UserWarning, stacklevel=4)


def read_image_with_info(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as (H, W, 3) uint8 RGB plus :class:`ImageInfo` (pixel size, source type).

    The pixel size comes from TIFF resolution tags (inch or centimetre units; the 72-dpi default of
    image software is ignored). Raises :class:`ImageReadError` like :func:`read_image`.
    """
    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    pixel_size = None
    try:
        if suffix in (".tif", ".tiff"):
            arr, pixel_size, mode = _read_tiff(path)
        else:
            arr, mode = _read_pillow(path)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        raise decode_error(path, exc) from exc
    arr = np.asarray(arr)
    channels = arr.shape[-1] if arr.ndim == 3 and arr.shape[-1] <= 4 else (
        arr.shape[0] if arr.ndim == 3 else 1)
    info = ImageInfo(pixel_size_mm=pixel_size, source_dtype=str(arr.dtype), source_shape=tuple(arr.shape),
                     source_mode=mode or _MODES.get(channels, f"{channels} channels"))
    return to_rgb_uint8(arr, str(path)), info


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a dermoscopy image (BMP, PNG, JPEG, TIFF; 8/16-bit, float; gray, RGB, RGBA, palette).

    Returns (H, W, 3) uint8 RGB. Raises :class:`ImageReadError` for missing, empty, truncated,
    corrupt, unsupported or too small (< 8 px) files. See the module docstring for the rules.
    """
    return read_image_with_info(path)[0]


def tiff_first_image(tif, path: Path, stacklevel: int) -> tuple[np.ndarray, Any]:
    """The first image of an open TIFF file and its page, with a warning when other pages are left out.

    tifffile stores an (H, W, 2) array written without a photometric tag as H pages of (W, 2), with
    the shape in its metadata: such a file is read whole, as the one (H, W, 2) image it is.
    """
    if not tif.pages:
        raise ImageReadError(f"{path}: the TIFF file holds no image")
    page = tif.pages[0]
    series = tif.series[0] if tif.series else None
    check_pixel_count(page.imagelength, page.imagewidth, path)
    if (series is not None and len(tif.pages) > 1 and len(series.pages) == len(tif.pages)
            and len(series.shape) == 3 and series.shape[-1] in (1, 2, 3, 4)
            and tuple(page.shape) == tuple(series.shape[1:]) and page.samplesperpixel == 1):
        check_pixel_count(series.shape[0], series.shape[1], path)
        return series.asarray(), page
    if len(tif.pages) > 1:  # a stack, or several images (a thumbnail, a pyramid level) in one file
        warnings.warn(f"{path.name}: the TIFF file holds {len(tif.pages)} pages; only the first "
                      f"({'x'.join(str(n) for n in page.shape)}) is read", UserWarning, stacklevel=stacklevel)
    return page.asarray(), page


def read_tiff_page(path: Path) -> np.ndarray:
    """The first image of a TIFF file as stored (no colour conversion); a warning when there are more pages."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tiff_first_image(tif, path, stacklevel=4)[0]
