"""Reading dermoscopy images and masks, writing label images; data-set discovery (from .datasets).

No Qt or napari here: everything is usable from a script.

Conversion rules of :func:`read_image` (the result is always (H, W, 3) uint8 RGB):

- grayscale (H, W) or (H, W, 1): the gray value is copied into the three channels;
- gray + alpha (H, W, 2) and RGBA (H, W, 4): alpha is composited over white (transparent pixels
  become white, like the paper around a photograph), then dropped;
- palette images are expanded to their RGB colours;
- integers (any type) and floats beyond [0, 1] are scaled by the bit depth their values need
  (:func:`intensity_full_scale`): values within 0..255 are taken as 8-bit, larger ones as 10, 12, 14
  or 16-bit (a 12-bit camera's data in uint16 maps 4095 to white, not 4095/65535 = 6 %); negative
  values or values above 65535 in an integer image are an error;
- floating point: values in [0, 1] are scaled by 255 (an image whose largest value is at most 2, or
  with at most 0.1 % of its values above 2, counts as [0, 1] data, its values above 1 clipped); NaN and infinite values become 0;
- multi-page TIFF / stacks: the first page is read (use ``tifffile`` directly for stacks).

Errors are :class:`ImageReadError` (a ``ValueError``) with a message that says what is wrong.

Label images (:func:`write_labels` / :func:`read_labels`, defined in :mod:`.labels_io`): a binary mask is saved as an 8-bit PNG
(0 / 255, the ISIC convention); instance labels (1..N) as a 16-bit TIFF (32-bit past 65535 labels).
Files are written atomically (a temporary file, then a rename) and carry a marker so that the napari
reader reopens them as Labels layers.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# data-set discovery lives in .datasets; its names are part of this module's API too
from napari_nevus_seg.io.datasets import (IMAGE_SUFFIXES, _MASK_WORDS, Case, _is_mask_name, discover_cases, is_mask_file, iter_pairs, mask_for_image)

MIN_SIDE = 8  # smaller images carry no usable lesion


class ImageReadError(ValueError):
    """A file could not be read as an image: missing, empty, corrupt, truncated or unsupported."""


@dataclass(frozen=True)
class ImageInfo:
    """Metadata found in an image file."""

    pixel_size_mm: tuple[float, float] | None = None  # (row, column) size of a pixel in mm
    source_dtype: str = ""  # pixel type stored in the file, e.g. "uint8", "uint16", "float32"
    source_shape: tuple[int, ...] = ()  # array shape stored in the file (first page), e.g. (H, W, 4)
    source_mode: str = ""  # how the file stored colour: "gray", "gray+alpha", "RGB", "RGBA", "palette", ...


# --------------------------------------------------------------------------------------- images
FLOAT_UNIT_PEAK = 2.0  # float images whose largest value is at most this are [0, 1] data
FLOAT_OUTLIER_SHARE = 1e-3  # ... and so are those with at most this share of values above it (hot pixels)


def warn_not_finite(count: int, total: int, source: str = "image") -> None:
    """Warn that ``count`` of ``total`` pixel values are NaN or infinite (they are replaced, not segmented as data)."""
    if count:
        warnings.warn(f"{source}: {count} of {total} pixel values ({100.0 * count / max(total, 1):.3g} %) are NaN or "
                      "infinite; they were replaced (NaN by black), so colours and outlines there are not the "
                      "image's own", UserWarning, stacklevel=3)


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
    scaled = arr.astype(np.float32)
    if arr.dtype.kind == "f":
        warn_not_finite(int(scaled.size - np.count_nonzero(np.isfinite(scaled))), scaled.size, source)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
    scaled *= 255.0 / full
    scaled = np.clip(scaled, 0, 255)
    channels = scaled.shape[-1]
    if channels in (2, 4):
        alpha = scaled[..., -1:] / 255.0
        scaled = scaled[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    return np.ascontiguousarray(np.rint(scaled).astype(np.uint8))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")


def _tiff_pixel_size(tif) -> tuple[float, float] | None:
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


def _decode_error(path: Path, exc: Exception) -> ImageReadError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = reason.lower()
    if "truncated" in low or "premature end" in low or "broken data stream" in low:
        return ImageReadError(f"{path}: the file is truncated or incomplete ({reason})")
    if "cannot identify image file" in low or "not a tiff file" in low:
        return ImageReadError(
            f"{path}: the file's content is not a {path.suffix.lstrip('.').upper() or 'known'} image "
            f"(or any format this plugin reads: BMP, PNG, JPEG, TIFF); it may be corrupt or misnamed")
    return ImageReadError(f"{path}: not a readable image or corrupt file ({reason})")


def _read_tiff(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        arr, page = _tiff_first_image(tif, path, stacklevel=4)
        mode = ""
        if int(page.photometric) == 3 and page.colormap is not None:  # palette
            cmap = np.asarray(page.colormap)  # (3, 2**bits), usually uint16
            arr = np.moveaxis(cmap[:, arr], 0, -1)
            if cmap.max() > 255:
                arr = np.rint(arr / 257.0).astype(np.uint8)
            mode = "palette"
        return arr, _tiff_pixel_size(tif), mode


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    from PIL import Image

    with Image.open(path) as im:
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


def read_image_with_info(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as (H, W, 3) uint8 RGB plus :class:`ImageInfo` (pixel size, source type).

    The pixel size comes from TIFF resolution tags (inch or centimetre units; the 72-dpi default of
    image software is ignored). Raises :class:`ImageReadError` like :func:`read_image`.
    """
    path = Path(path)
    _check_file(path)
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
        raise _decode_error(path, exc) from exc
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


def _tiff_first_image(tif, path: Path, stacklevel: int) -> tuple[np.ndarray, Any]:
    """The first image of an open TIFF file and its page, with a warning when other pages are left out.

    tifffile stores an (H, W, 2) array written without a photometric tag as H pages of (W, 2), with
    the shape in its metadata: such a file is read whole, as the one (H, W, 2) image it is.
    """
    if not tif.pages:
        raise ImageReadError(f"{path}: the TIFF file holds no image")
    page = tif.pages[0]
    series = tif.series[0] if tif.series else None
    if (series is not None and len(tif.pages) > 1 and len(series.pages) == len(tif.pages)
            and len(series.shape) == 3 and series.shape[-1] in (1, 2, 3, 4)
            and tuple(page.shape) == tuple(series.shape[1:]) and page.samplesperpixel == 1):
        return series.asarray(), page
    if len(tif.pages) > 1:  # a stack, or several images (a thumbnail, a pyramid level) in one file
        warnings.warn(f"{path.name}: the TIFF file holds {len(tif.pages)} pages; only the first "
                      f"({'x'.join(str(n) for n in page.shape)}) is read", UserWarning, stacklevel=stacklevel)
    return page.asarray(), page


def _read_tiff_page(path: Path) -> np.ndarray:
    """The first image of a TIFF file as stored (no colour conversion); a warning when there are more pages."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return _tiff_first_image(tif, path, stacklevel=4)[0]


def _mask_plane(arr: np.ndarray, path: Path) -> np.ndarray:
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


def _is_colour_page(arr: np.ndarray) -> bool:
    """True when :func:`_mask_plane` reads ``arr`` as a colour (3 or 4 channel) image."""
    arr = np.asarray(arr)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    return arr.ndim == 3 and (arr.shape[-1] in (3, 4) or (arr.shape[-1] not in (1, 2) and arr.shape[0] in (3, 4)))


def _mask_of_plane(arr: np.ndarray) -> np.ndarray:
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
    _check_file(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = _read_tiff_page(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode in ("L", "1", "I", "I;16"):
                    arr = np.asarray(im)
                elif im.mode == "LA":
                    arr = np.asarray(im.getchannel(0))
                else:   # RGB, RGBA, palette...: the brightest channel (a red or blue lesion is no darker than grey)
                    arr = np.asarray(im.convert("RGB"))
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _decode_error(path, exc) from exc
    return _mask_of_plane(_mask_plane(arr, path))


# ------------------------------------------------------------------------------------- labels
_LABEL_FILE_NAMES = ("LABEL_SUFFIXES", "write_labels", "read_labels", "is_labels_file", "file_pixel_size")


def __getattr__(name: str):
    """Label-file functions live in :mod:`.labels_io`; they are part of this module's API too."""
    if name in _LABEL_FILE_NAMES:
        from napari_nevus_seg.io import labels as labels_io

        return getattr(labels_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from napari_nevus_seg.io.labels import (LABEL_SUFFIXES, file_pixel_size, is_labels_file, read_labels, write_labels)  # noqa: F401
