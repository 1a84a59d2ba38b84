"""What the case browser keeps of a session: each case's figures, and where its masks are saved.

No Qt here, so it is tested without a viewer:

- :func:`case_figures` scores one result: the number of lesions, the seconds it took and, when the case
  has an expert mask, the Dice and Jaccard of the result against it, computed by the core's
  :func:`~napari_nevus_seg.inference.metrics.dice` and :func:`~napari_nevus_seg.inference.metrics.jaccard`
  (the ISIC challenge's definitions);
- :class:`CaseRecord` holds the figures of every case segmented in this session, by image file, and
  the mean Dice over the cases of a data set that have an expert mask;
- :func:`default_mask_folder`, :func:`mask_file` and :func:`save_case_mask` decide where "Save mask" writes
  and write the file with :func:`~napari_nevus_seg.io.labels.write_labels` (atomic), refusing any place
  that would replace or sit among the data set's own images and expert masks;
- :func:`opened_dataset_case` finds the data-set case napari's reader opened, for the browser to take over
  (it reads layer metadata; napari is imported only there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_nevus_seg.inference.metrics import dice, jaccard
from napari_nevus_seg.io.datasets import Case, discover_cases
from napari_nevus_seg.io.labels import write_labels

MASK_FOLDER_SUFFIX = "_nevus-seg-masks"   # "<data set>_nevus-seg-masks" beside the data-set folder
MASK_FILE_SUFFIX = "_lesions.tif"         # "<case>_lesions.tif": numbered lesions and the pixel size


@dataclass(frozen=True)
class CaseFigures:
    """One segmented case: lesions found, seconds taken, and its scores against the expert mask (or None)."""

    lesions: int
    seconds: float
    dice: float | None = None
    jaccard: float | None = None


def case_figures(labels: Any, seconds: float, truth: Any = None) -> CaseFigures:
    """The figures of a result ``labels`` (0 background, 1..N lesions) that took ``seconds``.

    ``truth``: the expert mask (non-zero is lesion) of the same shape, or None; the result is binarised
    and scored against it with :func:`dice` and :func:`jaccard`. A ValueError is raised when the shapes differ.
    """
    arr = np.asarray(labels)
    lesions = int(np.unique(arr[arr != 0]).size)
    if truth is None:
        return CaseFigures(lesions, float(seconds))
    return CaseFigures(lesions, float(seconds), dice(arr, truth), jaccard(arr, truth))


def _key(image: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(image))


class CaseRecord:
    """The figures of the cases segmented in this session, by image file (a case segmented again is replaced)."""

    def __init__(self) -> None:
        self._figures: dict[str, CaseFigures] = {}

    def set(self, image: str | os.PathLike, figures: CaseFigures) -> None:
        """Record ``figures`` for the case whose image file is ``image``."""
        self._figures[_key(image)] = figures

    def get(self, image: str | os.PathLike) -> CaseFigures | None:
        """The figures recorded for ``image``, or None when it was not segmented in this session."""
        return self._figures.get(_key(image))

    def mean_dice(self, images: Iterable[str | os.PathLike]) -> tuple[float | None, int, int]:
        """(mean Dice, cases scored, cases segmented) over the recorded cases among ``images``.

        Only cases with an expert mask are scored; the mean is None when none is.
        """
        found = [f for f in (self.get(im) for im in images) if f is not None]
        scores = [f.dice for f in found if f.dice is not None]
        return (float(np.mean(scores)) if scores else None), len(scores), len(found)


def default_mask_folder(dataset: str | os.PathLike) -> Path:
    """Where masks of the data set in ``dataset`` are saved unless the user chose a folder:
    ``<data set>_nevus-seg-masks`` beside it, so that no file is added inside the data set."""
    root = Path(dataset).expanduser().absolute()
    if root.parent == root:   # a file-system root has nothing beside it
        return root / MASK_FOLDER_SUFFIX.lstrip("_")
    return root.with_name(root.name + MASK_FOLDER_SUFFIX)


def mask_file(folder: str | os.PathLike, case_name: str) -> Path:
    """The file a case's mask is saved to: ``<folder>/<case>_lesions.tif``."""
    return Path(folder) / f"{case_name}{MASK_FILE_SUFFIX}"


def check_mask_target(path: str | os.PathLike, cases: Sequence[Case]) -> None:
    """Raise ValueError when ``path`` is one of the data set's images or expert masks, or lies in a folder
    that holds any of them (saved masks never mix with, or replace, the data set's own files)."""
    target = Path(path).expanduser().resolve()
    files = {p.resolve() for c in cases for p in (c.image, c.mask) if p is not None}
    if target in files:
        raise ValueError(f"{target} is a file of the data set: it is never overwritten")
    if target.parent in {p.parent for p in files}:
        raise ValueError(f"{target.parent} holds the data set's images or expert masks: choose another "
                         "folder for the saved masks")


def save_case_mask(labels: Any, case: Case, folder: str | os.PathLike, cases: Sequence[Case],
                   pixel_size_mm: tuple[float, float] | None = None) -> Path:
    """Write ``labels`` (the case's result, corrections included) to :func:`mask_file` in ``folder``; return it.

    A 16/32-bit TIFF keeps every lesion's number, the pixel size (when known) and the image's path
    (:func:`~napari_nevus_seg.io.labels.write_labels`, written to a temporary name and renamed). The folder
    is made when missing (not its parents). Raises ValueError for a place among the data set's files
    (:func:`check_mask_target`) and OSError when the folder cannot be made or written.
    """
    path = mask_file(folder, case.name)
    check_mask_target(path, cases)
    path.parent.mkdir(exist_ok=True)
    return write_labels(labels, path, pixel_size_mm=pixel_size_mm, source=str(case.image))


def opened_dataset_case(viewer: Any) -> tuple[str, list[Case], int, Any, list] | None:
    """The data-set case napari's reader opened (its first case is on screen), for the case browser to take
    over: ``(folder, cases, index of the case, its image layer, its other layers)``, or None when there is
    none (the active layer's data set first, else the last opened; the folder must still list the case)."""
    opened = [ly for ly in viewer.layers if isinstance(ly.metadata, dict) and "dataset" in ly.metadata]
    if not opened:
        return None
    active = viewer.layers.selection.active
    ref = active if active in opened else opened[-1]
    folder, case = ref.metadata["dataset"], ref.metadata.get("case")
    try:
        cases = discover_cases(Path(folder))
    except OSError:
        return None
    names = [c.name for c in cases]
    mine = [ly for ly in opened if ly.metadata.get("dataset") == folder and ly.metadata.get("case") == case]
    from napari.layers import Image

    image = next((ly for ly in mine if isinstance(ly, Image)), None)
    if case not in names or image is None:
        return None
    return folder, cases, names.index(case), image, [ly for ly in mine if ly is not image]
