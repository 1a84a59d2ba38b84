"""Reading dermoscopy images and masks, and finding image/mask pairs in data-set folders.

No Qt or napari here: everything is usable from a script.

Conversion rules of :func:`read_image` (the result is always (H, W, 3) uint8 RGB):

- grayscale (H, W) or (H, W, 1): the gray value is copied into the three channels;
- gray + alpha (H, W, 2) and RGBA (H, W, 4): alpha is composited over white (transparent pixels
  become white, like the paper around a photograph), then dropped;
- palette images are expanded to their RGB colours;
- 16-bit integers: scaled by 255/65535 (the full 16-bit range maps to the full 8-bit range);
  other integer types must already lie in 0..255;
- floating point: values in [0, 1] are scaled by 255; values in (1, 255] are taken as 0..255;
  NaN and infinite values become 0; the result is clipped to 0..255;
- multi-page TIFF / stacks: the first page is read (use ``tifffile`` directly for stacks).

Errors are :class:`ImageReadError` (a ``ValueError``) with a message that says what is wrong.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
MIN_SIDE = 8  # smaller images carry no usable lesion
_MASK_WORDS = ("_segmentation", "_Segmentation", "_mask", "_lesion")


class ImageReadError(ValueError):
    """A file could not be read as an image: missing, empty, corrupt, truncated or unsupported."""


@dataclass(frozen=True)
class ImageInfo:
    """Metadata found in an image file."""

    pixel_size_mm: tuple[float, float] | None = None  # (row, column) size of a pixel in mm


@dataclass(frozen=True)
class Case:
    """One image of a data set and its expert mask, if it has one."""

    name: str
    image: Path
    mask: Path | None = None


# --------------------------------------------------------------------------------------- images
def to_rgb_uint8(arr: np.ndarray, source: str = "array") -> np.ndarray:
    """Convert an image array of any common layout and dtype to (H, W, 3) uint8 RGB (rules above)."""
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels first (e.g. some TIFF writers)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"{source}: unsupported image shape {arr.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if arr.shape[0] < MIN_SIDE or arr.shape[1] < MIN_SIDE:
        raise ImageReadError(
            f"{source}: image is only {arr.shape[1]}x{arr.shape[0]} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    if arr.dtype.kind not in "uif":
        raise ImageReadError(f"{source}: unsupported pixel type {arr.dtype}")
    if arr.dtype == np.uint8:
        scaled = arr.astype(np.float32)
    elif arr.dtype == np.uint16 or (arr.dtype.kind in "ui" and arr.max(initial=0) > 255):
        if arr.dtype.kind == "i" and arr.min(initial=0) < 0:
            raise ImageReadError(f"{source}: negative pixel values in an integer image")
        scaled = arr.astype(np.float32) * (255.0 / 65535.0)
    elif arr.dtype.kind in "ui":
        scaled = arr.astype(np.float32)
    else:
        scaled = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if scaled.max(initial=0) <= 1.0:
            scaled = scaled * 255.0
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


def read_image_with_info(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as (H, W, 3) uint8 RGB plus metadata (pixel size from TIFF tags)."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    info = ImageInfo()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                arr = tif.pages[0].asarray()
                info = ImageInfo(_tiff_pixel_size(tif))
        else:
            from PIL import Image, UnidentifiedImageError  # noqa: F401

            with Image.open(path) as im:
                im.load()
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("L" if im.mode == "1" else "RGB")
                elif im.mode.startswith("I;16"):
                    arr16 = np.asarray(im, dtype=np.uint16)
                    return to_rgb_uint8(arr16, str(path)), info
                arr = np.asarray(im)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in reason.lower():
            raise ImageReadError(f"{path}: the file is truncated ({reason})") from exc
        raise ImageReadError(f"{path}: not a readable image or corrupt file ({reason})") from exc
    return to_rgb_uint8(arr, str(path)), info


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a dermoscopy image (BMP, PNG, JPEG, TIFF; 8/16-bit, float; gray, RGB, RGBA, palette).

    Returns (H, W, 3) uint8 RGB. Raises :class:`ImageReadError` for missing, empty, truncated,
    corrupt, unsupported or too small (< 8 px) files. See the module docstring for the rules.
    """
    return read_image_with_info(path)[0]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an expert mask (any image format) as an (H, W) boolean array: non-zero is lesion."""
    path = Path(path)
    _check_file(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im.convert("L") if im.mode not in ("L", "1", "I", "I;16") else im)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path}: not a readable mask ({exc})") from exc
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if arr.shape[-1] in (3, 4) else arr[0]
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: unsupported mask shape {arr.shape}")
    return arr > (127 if arr.dtype == np.uint8 and arr.max(initial=0) > 1 else 0)


# ------------------------------------------------------------------------------------ data sets
def _images_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    except OSError:
        return []


def _is_mask_name(stem: str) -> bool:
    return any(stem.endswith(w) or stem.lower().endswith(w.lower()) for w in _MASK_WORDS)


def _ph2_case(folder: Path) -> Case | None:
    name = folder.name
    img = folder / f"{name}_Dermoscopic_Image" / f"{name}.bmp"
    if not img.is_file():
        return None
    mask = folder / f"{name}_lesion" / f"{name}_lesion.bmp"
    return Case(name, img, mask if mask.is_file() else None)


def _ph2_cases(root: Path) -> list[Case]:
    case = _ph2_case(root)
    if case:
        return [case]
    out = []
    for sub in (root, root / "PH2 Dataset images", root / "PH2_Dataset_images"):
        if sub.is_dir():
            for d in sorted(sub.iterdir()):
                if d.is_dir() and re.fullmatch(r"IMD\d+", d.name):
                    c = _ph2_case(d)
                    if c:
                        out.append(c)
        if out:
            return out
    return out


_MASK_DIRS = ("masks", "mask", "labels", "ground_truth", "groundtruth", "gt", "segmentations",
              "ISIC-2017_Training_Part1_GroundTruth", "ISBI2016_ISIC_Part1_Training_GroundTruth")
_IMAGE_DIRS = ("images", "image", "imgs", "ISIC-2017_Training_Data", "ISBI2016_ISIC_Part1_Training_Data")


def _match_masks(images: list[Path], mask_folders: list[Path]) -> list[Case]:
    candidates: dict[str, Path] = {}
    for folder in mask_folders:
        for m in _images_in(folder):
            stem = m.stem
            for w in _MASK_WORDS:
                if stem.lower().endswith(w.lower()):
                    stem = stem[: -len(w)]
                    break
            candidates.setdefault(stem, m)
    return [Case(p.stem, p, candidates.get(p.stem)) for p in images]


def _find_subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    lower = {n.lower() for n in names}
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and d.name.lower() in lower:
            return d
    return None


def discover_cases(root: str | os.PathLike) -> list[Case]:
    """Find image/mask pairs under ``root`` (a file's folder, a case folder or a data-set folder).

    Layouts, tried in this order:

    - PH2: ``IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` with ``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``,
      for the whole database (also under ``PH2 Dataset images/``) or a single case folder;
    - image/mask sibling folders: ``images/`` + ``masks/`` (also ``labels``, ``ground_truth``, ISIC
      challenge folder names), matched by file stem, a mask suffix such as ``_segmentation`` allowed;
    - one folder holding images and their masks side by side (ISIC naming
      ``ISIC_xxxxxxx.jpg`` + ``ISIC_xxxxxxx_segmentation.png`` / ``_Segmentation.png``, or ``_mask``).

    Images without a mask are returned with ``mask=None``. Raises ``FileNotFoundError`` when the
    folder does not exist and returns ``[]`` when it holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    cases = _ph2_cases(root)
    if cases:
        return cases
    img_dir = _find_subdir(root, _IMAGE_DIRS)
    mask_dir = _find_subdir(root, _MASK_DIRS)
    if img_dir is not None:
        images = [p for p in _images_in(img_dir) if not _is_mask_name(p.stem)]
        return _match_masks(images, [d for d in (mask_dir, img_dir) if d is not None])
    files = _images_in(root)
    images = [p for p in files if not _is_mask_name(p.stem)]
    return _match_masks(images, [root])


def iter_pairs(root: str | os.PathLike, require_mask: bool = True) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """Yield ``(name, image, mask)`` arrays for the cases of a data-set folder, one at a time.

    Masks are boolean and checked to have the image's height and width.
    """
    for case in discover_cases(root):
        if require_mask and case.mask is None:
            continue
        img = read_image(case.image)
        mask = read_mask(case.mask) if case.mask is not None else None
        if mask is not None and mask.shape != img.shape[:2]:
            raise ImageReadError(
                f"{case.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {img.shape[1]}x{img.shape[0]}")
        yield case.name, img, mask
