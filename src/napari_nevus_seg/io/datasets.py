"""Finding image/mask pairs in data-set folders (PH2, ISIC, images/ + masks/).

No Qt or napari here. :func:`discover_cases` only lists files (it reads no pixels, and a file header
only for a mask-named file without its image beside it), so it is fast on folders of thousands of
images; :func:`iter_pairs` then reads one case at a time.
These names are also available from :mod:`napari_nevus_seg.io`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_WORDS = ("_segmentation", "_Segmentation", "_mask", "_lesion", "_labels")


@dataclass(frozen=True)
class Case:
    """One image of a data set and its expert mask, if it has one (unpacks as ``name, image, mask``)."""

    name: str
    image: Path
    mask: Path | None = None

    def __iter__(self):
        return iter((self.name, self.image, self.mask))


# ------------------------------------------------------------------------------------ data sets
def _images_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    except OSError:
        return []


def _mask_base(stem: str) -> str | None:
    """The image stem a mask-like name belongs to (``x`` for ``x_mask``), or None for other names."""
    low = stem.lower()
    for w in MASK_WORDS:
        if low.endswith(w.lower()) and len(stem) > len(w):
            return stem[: -len(w)]
    return None


def is_mask_name(stem: str) -> bool:
    return _mask_base(stem) is not None


def _one_channel(path: Path) -> bool:
    """True when an image file stores a single channel (masks do; photographs store colour). Header only."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0] if tif.pages else None
                return page is not None and (len(page.shape) == 2 or page.samplesperpixel == 1)
        from PIL import Image

        with Image.open(path) as im:
            return im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16")
    except Exception:  # noqa: BLE001 - unreadable: left to the reader's clear error
        return False


def is_mask_file(path: str | os.PathLike, stems_beside: Collection[str] | None = None) -> bool:
    """True when an image file is an expert mask rather than a photograph to segment.

    A mask is named like one (``x_segmentation``, ``x_Segmentation``, ``x_mask``, ``x_lesion``,
    ``x_labels``) and either lies in a mask folder (``masks/``, ``ground_truth/``, ...), or has its image
    ``x`` beside it (any image suffix), or stores a single channel. So a colour photograph that happens to
    be called ``arm_lesion.jpg`` is a photograph. ``stems_beside``: the stems of the image files in the same
    folder, when the caller has listed it (else the folder is listed).
    """
    path = Path(path)
    base = _mask_base(path.stem)
    if base is None:
        return False
    if path.parent.name.lower() in {d.lower() for d in MASK_DIRS}:
        return True
    if stems_beside is None:
        stems_beside = {p.stem for p in _images_in(path.parent)}
    return base in stems_beside or _one_channel(path)


def is_not_a_photo(path: Path, stems_beside: Collection[str] | None = None) -> bool:
    """Masks, and the ISIC archives' superpixel maps (``ISIC_0000000_superpixels.png``): not images to segment."""
    return path.stem.lower().endswith("_superpixels") or is_mask_file(path, stems_beside)


def _photos(files: list[Path]) -> list[Path]:
    """The files of one folder listing that are photographs to segment."""
    stems = {p.stem for p in files}
    return [p for p in files if not is_not_a_photo(p, stems)]


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


MASK_DIRS = ("masks", "mask", "labels", "ground_truth", "groundtruth", "gt", "segmentations",
              "ISIC-2017_Training_Part1_GroundTruth", "ISBI2016_ISIC_Part1_Training_GroundTruth")
_IMAGE_DIRS = ("images", "image", "imgs", "ISIC-2017_Training_Data", "ISBI2016_ISIC_Part1_Training_Data")


def _match_masks(images: list[Path], mask_folders: list[Path]) -> list[Case]:
    """Pair images with masks by stem; in a folder that holds the images only mask-named files count."""
    image_dirs = {p.parent for p in images}
    candidates: dict[str, Path] = {}
    for folder in mask_folders:
        for m in _images_in(folder):
            stem = m.stem
            is_mask = False
            for w in MASK_WORDS:
                if stem.lower().endswith(w.lower()):
                    stem, is_mask = stem[: -len(w)], True
                    break
            if folder in image_dirs and not is_mask:
                continue  # an image, not its own mask
            candidates.setdefault(stem, m)
    return [Case(p.stem, p, candidates.get(p.stem)) for p in images]


def mask_for_image(image: str | os.PathLike) -> Path | None:
    """The expert mask that belongs to one image file by the data-set conventions, or None.

    Looks for the PH2 mask (``../IMDxxx_lesion/IMDxxx_lesion.bmp``), a mask beside the image
    (``<stem>_segmentation.png``, ``_Segmentation``, ``_mask``, ``_lesion``, ``_labels``), and a mask
    with the same stem in a sibling mask folder (``../masks/``, ``../ground_truth/``, ISIC names).
    """
    image = Path(image)
    stem, folder = image.stem, image.parent
    if folder.name == f"{stem}_Dermoscopic_Image":
        ph2 = folder.parent / f"{stem}_lesion" / f"{stem}_lesion.bmp"
        return ph2 if ph2.is_file() else None
    if is_mask_file(image):
        return None
    candidates = [folder]
    if folder.parent != folder:
        sibling = _find_subdir(folder.parent, MASK_DIRS)
        if sibling is not None and sibling != folder:
            candidates.append(sibling)
    for d in candidates:
        mask = _match_masks([image], [d])[0].mask
        if mask is not None and mask != image:
            return mask
    return None


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
      ``ISIC_xxxxxxx.jpg`` + ``ISIC_xxxxxxx_segmentation.png`` / ``_Segmentation.png``, or ``_mask``);
    - the image folder of such a pair of folders itself (``images/``): masks from its sibling ``masks/``.

    Images without a mask are returned with ``mask=None``. Raises ``FileNotFoundError`` when the
    folder does not exist, ``NotADirectoryError`` for a file, and returns ``[]`` when it holds no images.
    """
    root = Path(root)
    if root.is_file():
        raise NotADirectoryError(f"{root} is a file; discover_cases takes a data-set folder "
                                 "(mask_for_image finds the mask of one image)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    cases = _ph2_cases(root)
    if not cases and root.name.endswith("_Dermoscopic_Image"):  # the image folder inside a PH2 case
        case = _ph2_case(root.parent)
        cases = [case] if case else []
    if cases:
        return cases
    img_dir = _find_subdir(root, _IMAGE_DIRS)
    mask_dir = _find_subdir(root, MASK_DIRS)
    if img_dir is not None:
        images = _photos(_images_in(img_dir))
        return _match_masks(images, [d for d in (mask_dir, img_dir) if d is not None])
    files = _images_in(root)
    images = _photos(files)
    # the image folder of an images/ + masks/ layout opened itself: its masks are in the sibling folder
    sibling = _find_subdir(root.parent, MASK_DIRS) if root.parent != root else None
    return _match_masks(images, [root] + ([sibling] if sibling is not None and sibling != root else []))


def iter_pairs(root: str | os.PathLike, require_mask: bool = True) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """Yield ``(name, image, mask)`` arrays for the cases of a data-set folder, one at a time.

    Masks are boolean and checked to have the image's height and width.
    """
    from napari_nevus_seg.io.files import ImageReadError
    from napari_nevus_seg.io.images import read_image
    from napari_nevus_seg.io.mask_files import read_mask

    for case in discover_cases(root):
        if require_mask and case.mask is None:
            continue
        img = read_image(case.image)
        mask = read_mask(case.mask) if case.mask is not None else None
        if mask is not None and mask.shape != img.shape[:2]:
            raise ImageReadError(
                f"{case.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {img.shape[1]}x{img.shape[0]}")
        yield case.name, img, mask
