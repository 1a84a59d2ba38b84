"""Label images on disk: :func:`write_labels` (atomic PNG mask or 16/32-bit TIFF) and :func:`read_labels`.

:func:`as_label_array` checks a label image in memory (also for measurement).

A binary mask is saved as an 8-bit PNG (0 / 255, the ISIC convention); instance labels (1..N) as a
16-bit TIFF (32-bit past 65535 labels), with the pixel size in the resolution tags. Files are written
to a temporary name and renamed into place, and carry a marker so that the napari reader reopens them
as Labels layers. No Qt or napari here. These names are also available from :mod:`napari_nevus_seg.io`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_nevus_seg.io.atomic import atomic_path
from napari_nevus_seg.io.datasets import MASK_DIRS, is_mask_file
from napari_nevus_seg.io.files import ImageReadError, check_file, decode_error
from napari_nevus_seg.io.images import read_tiff_page, tiff_pixel_size
from napari_nevus_seg.io.mask_files import is_colour_page, mask_of_plane, mask_plane, read_mask
from napari_nevus_seg.io.pixel_size import pixel_size_pair

LABELS_MARKER = "napari-nevus-seg labels"  # written into label files so that they reopen as labels
SOURCE_TAG = "napari-nevus-seg source"  # PNG text key of the image path (TIFF: the DocumentName tag)
LABEL_SUFFIXES = (".png", ".tif", ".tiff")


def as_label_array(labels: Any) -> np.ndarray:
    """Check a label image and return it as a 2-D array of label values.

    Parameters
    ----------
    labels : array-like
        0 is background, 1, 2, ... are lesions: integers, booleans or whole-number floats. Singleton axes
        are dropped while more than two axes remain ((1, H, W) from a 3-D napari layer, (H, W, 1)).

    Returns
    -------
    numpy.ndarray
        (H, W): booleans as uint8 (0/1), integers as given, whole-number floats as int64. An array
        without pixels is returned as it is (callers name that error themselves).

    Raises
    ------
    ValueError
        For another number of axes, another dtype, NaN or infinite values, fractional floats, negative
        values, or values above 2**63 - 1.
    """
    arr = np.asarray(labels)
    while arr.ndim > 2 and 1 in arr.shape:
        arr = arr.squeeze(axis=arr.shape.index(1))
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {np.asarray(labels).shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError("labels contain NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise ValueError("labels must hold whole numbers (label values), got fractional floats; "
                             "threshold a probability map first (e.g. prob > 0.5)")
        if arr.size and float(np.abs(arr).max()) >= 2.0 ** 63:
            raise ValueError("label values are too large (at most 2**63 - 1)")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers or booleans (or whole-number floats), got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"labels must not be negative (values >= 0: 0 is background, 1, 2, ... are lesions); "
                         f"found {arr.min()}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError("label values are too large (at most 2**63 - 1)")
    return arr


def _rational(value: float) -> tuple[int, int]:
    """``value`` as the unsigned 32-bit rational a TIFF resolution tag stores (as tifffile rounds it)."""
    from fractions import Fraction

    f = Fraction(value).limit_denominator(max(1, min(4294967295, int(4294967295 / abs(value)))))
    return f.numerator, f.denominator


def _tiff_resolution(sizes: tuple[float, float], path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(x, y)`` resolution tags (pixels per cm) for a ``(row, column)`` pixel size in mm; ValueError when
    the 32-bit rational tags cannot store it within 1 ppm."""
    tags = []
    for size in (sizes[1], sizes[0]):  # x (columns), then y (rows)
        per_cm = 10.0 / size
        num, den = _rational(per_cm) if np.isfinite(per_cm) and per_cm <= 4294967295 else (0, 1)
        if num == 0 or abs(num / den - per_cm) > 1e-6 * per_cm:
            raise ValueError(f"{path.name}: a pixel size of {size!r} mm cannot be stored in a TIFF file's "
                             "resolution tags (32-bit fractions of pixels per cm, kept to 1 ppm); the smallest "
                             "is about 2.3e-09 mm")
        tags.append((num, den))
    return tags[0], tags[1]


def write_labels(labels, path: str | os.PathLike, *, binary: bool | None = None,
                 pixel_size_mm: float | tuple[float, float] | None = None, source: str | None = None) -> Path:
    """Save a label image; return the path written.

    - ``.png``: an 8-bit mask, 0 background and 255 lesion. The labels must be binary (0/1 or
      boolean) unless ``binary=True``, which merges all lesions into one mask; otherwise a
      ``ValueError`` says to use ``.tif`` (instance numbers would be lost).
    - ``.tif`` / ``.tiff``: the label values as uint16 (uint32 above 65535), zlib-compressed, with
      resolution tags when ``pixel_size_mm`` is given; ``binary=True`` stores 0/1.

    ``pixel_size_mm``: a positive number of mm, or a (row, column) pair; anything else (0, negative, NaN,
    a string, a size the TIFF tags cannot hold) raises ValueError before anything is written. Labels
    without pixels are refused likewise.

    ``source``: the path of the image the labels belong to, recorded in the file (TIFF DocumentName tag,
    PNG text chunk; read back by :func:`labels_source`); batch runs use it to resume safely.

    The file is written to a temporary name in the same folder and renamed into place, so a failure
    never leaves a half-written file and never destroys an existing one.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise ValueError(f"{path}: cannot save labels as {suffix or 'a file without extension'!r}; "
                         "use .png (binary mask) or .tif (instance labels)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: the folder does not exist")
    arr = as_label_array(labels)
    if arr.size and arr.max() > np.iinfo(np.uint32).max:
        raise ValueError(f"label {arr.max()} does not fit a 32-bit TIFF")
    if arr.size == 0:
        raise ValueError(f"{path.name}: the labels have no pixels (shape {arr.shape}); nothing to save")
    resolution = None
    if pixel_size_mm is not None:  # checked whatever the format; stored (so checked for storage) in a TIFF
        sizes = pixel_size_pair(pixel_size_mm, f"{path.name}: pixel_size_mm", limits=None)  # TIFF: checked below
        resolution = _tiff_resolution(sizes, path) if suffix != ".png" else None
    values_max = int(arr.max()) if arr.size else 0
    if binary:
        arr = (arr > 0).astype(np.uint8)
    elif suffix == ".png" and values_max > 1:
        raise ValueError(
            f"{path.name}: these labels hold lesions numbered up to {values_max}; a PNG stores a binary "
            "0/255 mask only. Save as .tif to keep each lesion's number, or pass binary=True to merge them.")
    with atomic_path(path) as tmp:
        if suffix == ".png":
            from PIL import Image, PngImagePlugin

            meta = PngImagePlugin.PngInfo()
            meta.add_text("Software", LABELS_MARKER)
            if source is not None:
                meta.add_text(SOURCE_TAG, json.dumps(str(source)))
            Image.fromarray((arr > 0).astype(np.uint8) * 255).save(tmp, format="PNG", pnginfo=meta)
        else:
            import tifffile

            dtype = np.uint16 if values_max <= np.iinfo(np.uint16).max else np.uint32
            kwargs = {}
            if resolution is not None:
                kwargs = {"resolution": resolution, "resolutionunit": "CENTIMETER"}
            if source is not None:  # DocumentName (269), ASCII: the path as a JSON string (non-ASCII escaped)
                kwargs["extratags"] = [(269, "s", 0, json.dumps(str(source)), True)]
            tifffile.imwrite(tmp, arr.astype(dtype), compression="zlib", description=LABELS_MARKER,
                             metadata=None, **kwargs)
    return path


def labels_source(path: str | os.PathLike) -> str | None:
    """The image path recorded by :func:`write_labels` in a label file, or None (not recorded, unreadable)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(269) if tif.pages else None
                text = tag.value if tag is not None else None
        elif path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                text = im.info.get(SOURCE_TAG)
        else:
            return None
        value = json.loads(text) if text else None
    except Exception:  # noqa: BLE001 - no record
        return None
    return value if isinstance(value, str) else None


def is_labels_file(path: str | os.PathLike) -> bool:
    """True when a file holds labels rather than a photograph.

    That is: it was written by :func:`write_labels` (marker), it is an expert mask
    (:func:`~napari_nevus_seg.io.datasets.is_mask_file`: named ``x_segmentation``, ``x_mask``, ``x_lesion``,
    ``x_labels``, ... with its image beside it, in a mask folder or single-channel), it is a single-channel
    TIFF of 32/64-bit integers (as napari's own writer saves a Labels layer), or it lies in a mask folder
    (``masks/``, ``ground_truth/``, ...). Reads only the file header.
    """
    path = Path(path)
    if is_mask_file(path) or path.parent.name.lower() in {d.lower() for d in MASK_DIRS}:
        return True
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if not tif.pages:
                    return False
                page = tif.pages[0]
                # 32/64-bit integers in one channel are label numbers, never a photograph
                return page.description == LABELS_MARKER or (
                    len(page.shape) == 2 and page.dtype is not None and page.dtype.kind in "ui"
                    and page.dtype.itemsize >= 4)
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                return im.info.get("Software") == LABELS_MARKER
    except Exception:  # noqa: BLE001 - unreadable files are not label files; read_* will say why
        return False
    return False


def file_pixel_size(path: str | os.PathLike) -> tuple[float, float] | None:
    """(row, column) pixel size in mm stored in a TIFF file's resolution tags, else None."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tiff_pixel_size(tif)
    except Exception:  # noqa: BLE001 - metadata is optional
        return None


def _is_binary_255(arr: np.ndarray) -> bool:
    return arr.dtype == np.uint8 and arr.max(initial=0) == 255 and not np.any((arr != 0) & (arr != 255))


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image as (H, W): instance numbers from TIFF, 0/1 uint8 from a binary mask.

    Integer TIFFs keep their values and dtype (the first page; one trailing channel or gray + alpha is
    read as its gray channel); any other mask (PNG/BMP/JPEG, 0/255 or 0/1, 1-bit) becomes uint8 0/1 via
    :func:`read_mask`. Raises :class:`~napari_nevus_seg.io.files.ImageReadError` for a TIFF holding negative
    label values or no pixels.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return read_mask(path).astype(np.uint8)
    check_file(path)
    try:
        arr = read_tiff_page(path)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise decode_error(path, exc) from exc
    colour = is_colour_page(arr)
    arr = mask_plane(arr, path)
    # a 16/32-bit TIFF is instance labels whatever its values; an 8-bit one holding only 0 and 255
    # is a binary mask saved as TIFF (its lesion is label 1); a colour TIFF is a mask
    if arr.dtype.kind in "ui" and not colour and not _is_binary_255(arr):
        if arr.dtype.kind == "i" and arr.min() < 0:
            raise ImageReadError(f"{path}: the labels hold negative values (down to {arr.min()}); label values "
                                 "must be 0 (background) or positive lesion numbers")
        return arr
    return mask_of_plane(arr).astype(np.uint8)
