"""Which pairs fine-tuning holds out, and lazy subsets of the pairs.

A tuned model records the images it was trained on (:func:`image_key` hashes, in ``meta["trained_images"]``);
:func:`choose_holdout` holds out pairs whose image the base model has not seen while there are enough.
:class:`PickedPairs` takes a subset of a (possibly lazy, file-reading) sequence without reading it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_nevus_seg.io.intensity import to_rgb_uint8
from napari_nevus_seg.training.data import CancelToken
from napari_nevus_seg.training.finetune_defaults import DEFAULTS, is_share
from napari_nevus_seg.training.loop import TrainingCancelled

#: from this many pairs on, fine-tuning holds some out
MIN_PAIRS_FOR_HOLDOUT = 4

#: the share of the pairs held out by default
DEFAULT_HOLDOUT = DEFAULTS["holdout"]


def holdout_count(n_pairs: int, holdout: float | int | None = DEFAULT_HOLDOUT) -> int:
    """How many of ``n_pairs`` pairs are held out (the rule of :mod:`napari_nevus_seg.training.finetune`)."""
    if not holdout or n_pairs < MIN_PAIRS_FOR_HOLDOUT:
        return 0
    if is_share(holdout):   # a float of any kind (np.float32 too) is a share, as fine-tuning's settings check reads it
        k = max(1, round(float(holdout) * n_pairs))
    else:
        k = int(holdout)
    return min(k, n_pairs - 1)


def image_key(image: np.ndarray) -> str:
    """A short content hash of an image's pixels (as 8-bit RGB): how a tuned model records the images it
    was trained on (``meta["trained_images"]``), so that later rounds hold out other pairs."""
    arr = np.asarray(image)
    try:
        arr = to_rgb_uint8(arr, min_side=1)   # the same picture as uint8, float or RGBA hashes alike
    except ValueError:                        # refused later with its own message; hash the raw pixels
        arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{arr.shape}{arr.dtype.str}".encode())
    h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return h.hexdigest()


def pair_names(images: Sequence, names: Sequence[str] | None, n: int) -> list[str] | None:
    """The pairs' names: ``names`` if given, else the image files' stems when the sequence reads files."""
    if names is not None:
        names = [str(x) for x in names]
        if len(names) != n:
            raise ValueError(f"{len(names)} names for {n} pairs")
        return names
    paths = getattr(images, "paths", None)
    if paths is not None and len(paths) == n:
        return [Path(p).stem for p in paths]
    return None


def choose_holdout(n: int, k: int, keys: list[str], seen: set[str], seed: int) -> tuple[list[int], list[int]]:
    """``k`` held-out indices, at random (``seed``) among the pairs whose image the base model has not seen,
    then (only when too few are left) among the others; returns (held-out, training) indices, sorted."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    ranked = [i for i in order if keys[i] not in seen] + [i for i in order if keys[i] in seen]
    return sorted(ranked[:k]), sorted(ranked[k:])


class PickedPairs(Sequence):
    """Items ``idx`` of a sequence, taken from it when asked for (a lazy sequence stays lazy).

    With ``cancel``, each item asked for after ``cancel.is_set()`` raises :class:`TrainingCancelled`
    instead of being read: preparing pairs read from disk stops within one pair."""

    def __init__(self, seq: Sequence, idx: Sequence[int], cancel: CancelToken | None = None):
        self.seq, self.idx, self.cancel = seq, list(idx), cancel

    def __len__(self) -> int:
        return len(self.idx)

    def _get(self, j: int):
        if self.cancel is not None and self.cancel.is_set():
            raise TrainingCancelled("cancelled while reading the pairs")
        return self.seq[j]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in self.idx[i]]
        return self._get(self.idx[i])

    @property
    def paths(self) -> list | None:
        """The files of the items, when the sequence reads files (for error messages)."""
        paths = getattr(self.seq, "paths", None)
        return None if paths is None else [paths[j] for j in self.idx]
