"""A training set on disk: (image, corrected mask) pairs written the moment the user adds them.

Layout (one a data-set layout that :func:`~napari_nevus_seg.io.datasets.discover_cases` already reads, so
``nevus-seg train`` and :func:`~napari_nevus_seg.training.data.load_pairs` can use the folder directly)::

    <folder>/images/<name>.png     RGB uint8
    <folder>/masks/<name>.png      uint8, 0 background, 255 lesion

Every file is written to a temporary name and renamed into place, so a crash or a closed napari
never leaves a half-written pair: a pair exists when both files exist. The image is written first,
then the mask; an image without its mask (interrupted add) is ignored and cleaned up by the next
:meth:`TrainingStore.add` of the same name.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.io.atomic import atomic_path
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.io.intensity import to_rgb_uint8
from napari_nevus_seg.io.mask_files import read_mask

_BAD_CHARS = re.compile(r"[^\w.+()-]+")


class StoredPair(NamedTuple):
    name: str
    image: Path
    mask: Path


def default_store_dir() -> Path:
    """Default training folder: ``$NEVUS_SEG_TRAINING_DIR`` or ``<user data dir>/training-set``."""
    env = os.environ.get("NEVUS_SEG_TRAINING_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-nevus-seg")) / "training-set"


LOCK_WAIT_S = 30.0     # how long an add waits for another one to finish
STALE_LOCK_S = 120.0   # a lock older than this was left by a process that died
MAX_NAME_BYTES = 180  # UTF-8 bytes of a stem: file systems allow 255 per name, temporary names add a few


def safe_name(name: str) -> str:
    """A file-system safe stem from a layer or case name (``"IMD002 lesions"`` -> ``"IMD002_lesions"``)."""
    stem = _BAD_CHARS.sub("_", str(name).strip()).strip("._")[:120]
    while len(stem.encode("utf-8")) > MAX_NAME_BYTES:   # file names are limited in bytes, not characters
        stem = stem[:-1]
    return stem.rstrip("._ ") or "image"


def _write_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path, fsync=True) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG", compress_level=1)


def _as_mask(mask: np.ndarray, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    lesion = lesion_mask(mask, None, name)   # 2-D or colour, numbers, no NaN
    if lesion.shape != tuple(shape):
        raise ValueError(f"{name}: mask is {lesion.shape[1]}x{lesion.shape[0]} but its image is "
                         f"{shape[1]}x{shape[0]}: they must have the same size")
    if not lesion.any():
        warnings.warn(f"{name}: the mask is empty, so a model fine-tuned on this pair learns that the image shows "
                      "no lesion. That is right for an image of healthy skin; otherwise draw the lesion first",
                      UserWarning, stacklevel=3)
    return lesion.astype(np.uint8) * 255


class FilesAsArrays(Sequence):
    """A read-only sequence of arrays read from ``paths`` with ``reader`` each time an item is asked for.

    Its ``paths`` attribute lets :func:`~napari_nevus_seg.fine_tune` name a bad pair by its files."""

    def __init__(self, paths: list, reader: Callable[[Any], Any]):
        self.paths, self.reader = list(paths), reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.reader(p) for p in self.paths[i]]
        return self.reader(self.paths[i])


class TrainingStore:
    """The user's corrected pairs in ``folder`` (created on first use). See the module docstring."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_store_dir()
        self.image_dir = self.folder / "images"
        self.mask_dir = self.folder / "masks"

    def __repr__(self) -> str:
        n = len(self)
        return f"TrainingStore({str(self.folder)!r}, {n} pair{'' if n == 1 else 's'})"

    # ------------------------------------------------------------------------------------ listing
    def pairs(self) -> list[StoredPair]:
        """Complete pairs (image and mask both present), sorted by name."""
        if not self.mask_dir.is_dir():
            return []
        out = []
        for m in sorted(self.mask_dir.glob("*.png"), key=lambda p: p.stem):
            if m.name.startswith("."):
                continue
            img = self.image_dir / m.name
            if img.is_file():
                out.append(StoredPair(m.stem, img, m))
        return out

    def names(self) -> list[str]:
        return [p.name for p in self.pairs()]

    def __len__(self) -> int:
        return len(self.pairs())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for p in self.pairs():
            yield p.name, read_image(p.image), read_mask(p.mask)

    def lazy(self) -> tuple[FilesAsArrays, FilesAsArrays, list[str]]:
        """The pairs as (images, masks, names), the images and masks read from disk each time one is asked
        for: what :func:`~napari_nevus_seg.fine_tune` takes without holding the whole set in memory."""
        pairs = self.pairs()
        return (FilesAsArrays([p.image for p in pairs], read_image), FilesAsArrays([p.mask for p in pairs], read_mask),
                [p.name for p in pairs])

    def load(self) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
        """All pairs in memory: (images (H, W, 3) uint8, masks (H, W) bool, names); :meth:`lazy` reads them
        when used instead."""
        images, masks, names = [], [], []
        for name, img, mask in self:
            images.append(img)
            masks.append(mask)
            names.append(name)
        return images, masks, names

    # ------------------------------------------------------------------------------------ editing
    def add(self, image: np.ndarray, mask: np.ndarray, name: str) -> StoredPair:
        """Write an image and its corrected mask now; returns the stored pair (its name and paths).

        ``image``: (H, W, 3) of any dtype :func:`to_rgb_uint8` accepts (grayscale and RGBA too);
        ``mask``: (H, W) bool or labels, non-zero is lesion (NaN refused; an empty mask is stored with a
        warning: it teaches "no lesion", right only for healthy skin). A pair whose name is already taken by
        the *same image* is updated (the new mask replaces the old: a re-corrected outline); a
        different image under a taken name is stored as ``name-2``, ``name-3``, ...
        """
        img = to_rgb_uint8(np.asarray(image), source=str(name))
        m = _as_mask(mask, img.shape[:2], str(name))
        with self._adding():   # another window or program adding at the same time waits: no crossed pairs
            stem = self._free_name(safe_name(name), img)
            self.image_dir.mkdir(parents=True, exist_ok=True)
            self.mask_dir.mkdir(parents=True, exist_ok=True)
            pair = StoredPair(stem, self.image_dir / f"{stem}.png", self.mask_dir / f"{stem}.png")
            if not (pair.image.is_file() and pair.mask.is_file()):
                _write_png(img, pair.image)
            _write_png(m, pair.mask)
        return pair

    @contextlib.contextmanager
    def _adding(self):
        """A lock file in the folder, held while a name is chosen and the pair written (any process)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = self.folder / ".adding.lock"
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                try:
                    if time.time() - lock.stat().st_mtime > STALE_LOCK_S:   # left by a process that died
                        lock.unlink(missing_ok=True)
                        continue
                except FileNotFoundError:
                    continue
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.folder} is busy: another window or program is adding a pair "
                                       f"(if none is, delete {lock})") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    def _free_name(self, stem: str, img: np.ndarray) -> str:
        candidate, k = stem, 1
        while True:
            ip, mp = self.image_dir / f"{candidate}.png", self.mask_dir / f"{candidate}.png"
            if not ip.is_file():
                return candidate
            if not mp.is_file():   # interrupted earlier add: its image file is reused/overwritten
                ip.unlink()
                return candidate
            try:
                same = np.array_equal(read_image(ip), img)
            except ValueError:
                same = False
            if same:
                return candidate
            k += 1
            candidate = f"{stem}-{k}"

    def remove(self, name: str) -> None:
        """Delete a pair (both files). Raises ``KeyError`` when there is no such pair."""
        img, mask = self.image_dir / f"{name}.png", self.mask_dir / f"{name}.png"
        if not (img.is_file() or mask.is_file()):
            raise KeyError(f"no pair named {name!r} in {self.folder}")
        for p in (mask, img):
            if p.is_file():
                p.unlink()
