"""What a batch run does with each image: how to segment it, and how to write and measure the result."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from napari_nevus_seg.inference.options import SegmentOptions
from napari_nevus_seg.io.deadline import Deadline

FORMATS = ("tif", "png")
SUFFIX = {"tif": ".tif", "png": ".png"}


@dataclass(frozen=True)
class BatchOptions:
    """Everything a worker needs to process one image of a batch (picklable: Dask tasks carry it).

    Parameters
    ----------
    segment
        How to segment: model, device, threshold, TTA, smallest lesion, largest only, refinement. Its
        ``model`` is a path (str), None for the default model, or a loaded ``LesionModel``.
    fmt
        ``"tif"``: instance labels (uint16) with the pixel size; ``"png"``: binary 0/255 mask (ISIC style).
    measure
        Measure the lesions of each image (rows for the measurement table).
    pixel_size_mm
        Pixel size (mm, one number or a ``(row, column)`` pair) used instead of each file's metadata.
    find_ruler
        Look for a millimetre ruler in each image (:func:`~napari_nevus_seg.find_ruler`): where one is
        found, its tick spacing gives the pixel size (one tick = 1 mm), before ``pixel_size_mm`` and the
        file's metadata. The measurement rows then say where each image's pixel size came from.
    overwrite
        Redo images whose output exists already (otherwise they are skipped).
    time_limit_s
        Seconds of work allowed per image (None: no limit). An image that needs more fails with
        "time limit ... exceeded" and the batch goes on; the limit is checked between steps (network
        windows, bands of the upsampling, lesions of the measurement: :mod:`napari_nevus_seg.io.deadline`).
    """

    segment: SegmentOptions = field(default_factory=SegmentOptions)
    fmt: str = "tif"
    measure: bool = False
    pixel_size_mm: float | tuple[float, float] | None = None
    find_ruler: bool = False
    overwrite: bool = False
    time_limit_s: float | None = None

    def deadline(self) -> Deadline:
        """A fresh time budget for one image (unlimited without ``time_limit_s``)."""
        return Deadline(self.time_limit_s)

    def with_model(self, model: Any) -> BatchOptions:
        """A copy whose segmentation uses ``model`` (a path, None or a loaded model)."""
        return replace(self, segment=replace(self.segment, model=model))
