"""Training pairs in memory: read, checked and resized to the model's input size.

Images go through :mod:`napari_nevus_seg.inference.preprocess` exactly as at inference (the whole image
resized to the model's square input size) and are kept as uint8 tensors; augmentation happens per batch
in the training loop. ::

    pairs = load_pairs("ISIC2017/", size=256)              # every image/mask pair of a data-set folder
    pairs = prepare_pairs(images, masks, 256, names)       # or pairs already in memory
    train_set, val_set = split_pairs(pairs, val_fraction=0.1)
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.inference.preprocess import mask_input, model_input
from napari_nevus_seg.io.datasets import discover_cases
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.io.mask_files import read_mask

#: receives progress reports: dicts with at least ``stage``, ``step`` and ``steps``
ProgressCallback = Callable[[dict[str, Any]], None]


class CancelToken(Protocol):
    """Anything with ``is_set()``, such as a :class:`threading.Event`: when it turns true, work stops."""

    def is_set(self) -> bool: ...


@dataclass
class PairSet:
    """Training pairs at the model's input size: images (N, 3, S, S) uint8, masks (N, 1, S, S) uint8."""

    images: torch.Tensor
    masks: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: Sequence[int]) -> "PairSet":
        """The pairs ``idx``, in that order."""
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        return PairSet(self.images[idx_t], self.masks[idx_t], [self.names[i] for i in idx])


def _prepare_one(img: np.ndarray, mask: np.ndarray, size: int,
                 where: str = "pair") -> tuple[torch.Tensor, torch.Tensor]:
    """One pair as (3, S, S) and (1, S, S) uint8 tensors; a ``ValueError`` names the pair by ``where``."""
    img = np.asarray(img)
    m = lesion_mask(mask, img.shape[:2], where)   # (H, W, 3) colour masks too; ValueError naming ``where``
    try:
        x = torch.from_numpy(model_input(img, size).copy()).permute(2, 0, 1)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    y = torch.from_numpy(mask_input(m, size).copy())[None]
    return x, y


def describe_pair(i: int, images: Sequence, masks: Sequence, names: Sequence[str] | None = None) -> str:
    """How error messages name pair ``i``.

    Parameters
    ----------
    i : int
        The pair's index.
    images, masks : sequence
        The pairs; when both have a ``paths`` attribute (as lazy file-reading sequences have), the pair
        is named by its files.
    names : sequence of str, optional
        The pairs' names, used when there are no files.

    Returns
    -------
    str
        ``"pair 3 (image a.jpg, mask a.png)"``, ``"pair 3 ('a')"`` or ``"pair 3"``.
    """
    ipaths, mpaths = getattr(images, "paths", None), getattr(masks, "paths", None)
    if ipaths is not None and mpaths is not None and i < len(ipaths) and i < len(mpaths):
        return f"pair {i} (image {ipaths[i]}, mask {mpaths[i]})"
    if names is not None and i < len(names):
        return f"pair {i} ({names[i]!r})"
    return f"pair {i}"


def prepare_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], size: int,
                  names: Sequence[str] | None = None) -> PairSet:
    """Turn images and masks in memory into a :class:`PairSet` at the model's input size.

    Parameters
    ----------
    images : sequence of (H, W, 3) arrays
        RGB images of any sizes and dtypes.
    masks : sequence of (H, W) arrays
        Bool or label masks (non-zero is lesion) of the same sizes.
    size : int
        The model's square input size.
    names : sequence of str, optional
        The pairs' names (default ``pair0``, ``pair1``, ...).

    Returns
    -------
    PairSet

    Raises
    ------
    ValueError
        When there are no pairs, the counts differ, or a pair does not fit (mask size, NaN mask); a pair is
        named by its files when the sequences have ``paths``, else by its name.
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if len(images) == 0:
        raise ValueError("no training pairs given")
    xs, ys = zip(*(_prepare_one(images[i], masks[i], size, describe_pair(i, images, masks, names))
                   for i in range(len(images))))
    return PairSet(torch.stack(xs), torch.stack(ys), list(names or [f"pair{i}" for i in range(len(xs))]))


def load_pairs(root: str | os.PathLike, size: int, limit: int | None = None,
               progress: ProgressCallback | None = None, workers: int = 4) -> PairSet:
    """Read every image/mask pair of a data-set folder (any layout :func:`discover_cases` knows).

    Parameters
    ----------
    root : path
        The data-set folder.
    size : int
        The model's square input size.
    limit : int, optional
        Read only the first ``limit`` pairs.
    progress : callable, optional
        Receives ``{"stage": "load", "step": i, "steps": n}`` every 100 pairs and after the last.
    workers : int
        Threads reading the files.

    Returns
    -------
    PairSet
        Named by the cases' names.

    Raises
    ------
    ValueError
        When the folder holds no pairs, or a pair cannot be used (naming its image and mask files).
    """
    cases = [c for c in discover_cases(root) if c.mask is not None][:limit]
    if not cases:
        raise ValueError(f"{root}: no image/mask pairs found")

    def work(case):
        # read errors name their file already; a mask that does not fit its image names both
        return _prepare_one(read_image(case.image), read_mask(case.mask), size,
                            f"image {case.image}, mask {case.mask}")

    xs, ys = [], []
    with ThreadPoolExecutor(workers) as pool:
        for i, (x, y) in enumerate(pool.map(work, cases)):
            xs.append(x)
            ys.append(y)
            if progress and (i % 100 == 0 or i == len(cases) - 1):
                progress({"stage": "load", "step": i + 1, "steps": len(cases)})
    return PairSet(torch.stack(xs), torch.stack(ys), [c.name for c in cases])


def split_pairs(pairs: PairSet, val_fraction: float = 0.1, seed: int = 0) -> tuple[PairSet, PairSet]:
    """Split pairs at random, deterministically (``seed``), into (training, validation) sets.

    The validation set holds ``round(n * val_fraction)`` pairs, at least one when ``val_fraction > 0`` and
    there are two pairs or more; both sets keep the pairs' order.
    """
    n = len(pairs)
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 and n > 1 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return pairs.subset(sorted(order[n_val:])), pairs.subset(sorted(order[:n_val]))
