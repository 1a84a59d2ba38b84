"""The work done for one image of a batch: read, segment, write the labels atomically, measure.

The same functions run in the in-process pipeline of :mod:`napari_nevus_seg.batch.local` (split in stages
so that reading, inference and writing overlap) and, whole, on Dask workers
(:mod:`napari_nevus_seg.batch.cluster`). Everything here is picklable: tasks, options and results are
plain dataclasses, and models are referred to by path (each process loads a model once: the loader in
:mod:`napari_nevus_seg.model.loading` caches it by path and modification time).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_nevus_seg.batch.options import FORMATS, SUFFIX, BatchOptions
from napari_nevus_seg.io.deadline import check_deadline
from napari_nevus_seg.io.text import about, named
from napari_nevus_seg.io.warning_capture import recorded_warnings


@dataclass(frozen=True)
class ImageTask:
    """One input image and where its labels go (``output_stem`` + ``.png`` or ``.tif``)."""

    source: str
    output_stem: str
    name: str  # how the image is named in the summary and in the measurement table


@dataclass(frozen=True)
class PixelScale:
    """An image's pixel size for its labels and measurements, and where it came from.

    ``mm``: (row, column) mm per pixel, or None (lengths in pixels); ``source``: ``"ruler"`` (the image's
    own ruler, ``ruler`` then holds its ticks), ``"option"`` (the run's ``pixel_size_mm``), ``"file"``
    (the image file's metadata) or ``"none"``.
    """

    mm: tuple[float, float] | None
    source: str
    ruler: Any = None

    def columns(self) -> dict[str, Any]:
        """The measurement-table columns that say where the pixel size came from (runs with find_ruler)."""
        r = self.ruler
        return {"pixel_size_from": self.source,
                "ruler_spacing_px": None if r is None else round(float(r.spacing_px), 3),
                "ruler_spacings": None if r is None else int(r.spacings),
                "ruler_regularity": None if r is None else round(float(r.regularity), 3)}


@dataclass
class ImageResult:
    """What happened to one image."""

    source: str
    name: str
    status: str                  # "done", "skipped" (output already there) or "failed"
    output: str | None = None
    reason: str | None = None
    n_lesions: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # measurement rows (with --measure)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)   # warnings of a run elsewhere (Dask), shown by the caller
    disk_full: bool = False      # failed because the output disk is full: the run stops
    pixel_size_from: str | None = None   # "ruler", "option", "file" or "none" (None: not read)


# ------------------------------------------------------------------------------------ outputs
def output_path(task: ImageTask, fmt: str) -> Path:
    """Where the labels of ``task`` go in format ``fmt``."""
    if fmt not in SUFFIX:
        raise ValueError(f"unknown label format {fmt!r}; use one of {FORMATS}")
    stem = Path(task.output_stem)
    return stem.with_name(stem.name + SUFFIX[fmt])


def existing_output(task: ImageTask, fmt: str) -> Path | None:
    """The label file already written for ``task`` in format ``fmt``, or None.

    A file that records another source image (two inputs of the same name whose output names were
    numbered differently in an earlier run with other inputs) is not ``task``'s: it is redone.
    Label files without a record (earlier versions, other tools) are taken as they are; a file that is
    no label file (a photograph) is not an output (and :func:`write_output` never replaces it).
    """
    from napari_nevus_seg.io.labels import is_labels_file, labels_source

    p = output_path(task, fmt)
    if not (p.is_file() and p.stat().st_size > 0):
        return None
    recorded = labels_source(p)
    if recorded is not None:
        return p if recorded == task.source else None
    return p if is_labels_file(p) else None


class NotALabelFileError(RuntimeError):
    """An output path holds a file that is not a label image (a photograph): it is never replaced."""


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise :class:`NotALabelFileError` when ``path`` holds a non-empty file that is no label file."""
    from napari_nevus_seg.io.labels import is_labels_file, labels_source

    path = Path(path)
    if path.is_file() and path.stat().st_size > 0 and labels_source(path) is None and not is_labels_file(path):
        raise NotALabelFileError(f"{path} exists and is not a label file (a photograph?): it is not replaced; "
                                 "choose another output folder")


def write_output(labels: np.ndarray, path: str | os.PathLike,
                 pixel_size_mm: float | tuple[float, float] | None = None, source: str | None = None) -> Path:
    """Write labels with :func:`napari_nevus_seg.io.labels.write_labels` (atomic: temporary file + rename).

    ``.tif``: instance labels (uint16, uint32 beyond 65535 lesions) with the pixel size in the
    resolution tags; ``.png``: the binary lesion mask (0/255), as the ISIC challenge distributes them.
    If writing fails, an earlier file at ``path`` is left exactly as it was; a file there that is no
    label file (a photograph) is never replaced (:class:`NotALabelFileError`).
    """
    from napari_nevus_seg.io.labels import write_labels

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(path)
    binary = path.suffix.lower() == ".png"
    return write_labels(labels, path, binary=binary, pixel_size_mm=None if binary else pixel_size_mm, source=source)


def read_output(path: str | os.PathLike) -> np.ndarray:
    """Labels back from an output file: exact instance numbers from TIFF; from a binary PNG mask the
    connected lesions numbered by decreasing area, as :func:`napari_nevus_seg.inference.postprocess` does."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.squeeze(tifffile.imread(path, key=0)).astype(np.int32, copy=False)
    from scipy import ndimage as ndi

    from napari_nevus_seg.io.mask_files import read_mask

    lab, n = ndi.label(read_mask(path))
    if n == 0:
        return lab.astype(np.int32, copy=False)
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    areas[0] = 0
    remap = np.zeros(n + 1, np.int32)
    remap[np.argsort(-areas[1:], kind="stable") + 1] = np.arange(1, n + 1, dtype=np.int32)
    return remap[lab]


# --------------------------------------------------------------------------------- the stages
def read_stage(task: ImageTask, opts: BatchOptions) -> tuple[np.ndarray, PixelScale]:
    """Decode the image: (H, W, 3) uint8 RGB and its pixel size: from its ruler (with ``opts.find_ruler``,
    where one is found), else ``opts.pixel_size_mm``, else the file's metadata, else none."""
    from napari_nevus_seg.io.images import read_image_with_info
    from napari_nevus_seg.io.pixel_size import pixel_size_pair

    img, info = read_image_with_info(task.source)
    if opts.pixel_size_mm is not None:
        scale = PixelScale(pixel_size_pair(opts.pixel_size_mm), "option")
    elif info.pixel_size_mm is not None:
        scale = PixelScale(tuple(info.pixel_size_mm), "file")
    else:
        scale = PixelScale(None, "none")
    if opts.find_ruler:
        from napari_nevus_seg.measurements.ruler import find_ruler

        ticks = find_ruler(img)
        if ticks is not None:
            size = ticks.pixel_size_mm(1.0)
            _warn_if_far((size, size), scale)
            return img, PixelScale((size, size), "ruler", ticks)
    return img, scale


#: how far (as a ratio) the ruler's pixel size may be from the one it replaces before a warning
RULER_WARN_RATIO = 1.5


def _warn_if_far(ruler_mm: tuple[float, float], replaced: PixelScale) -> None:
    """Warn when the ruler's pixel size is :data:`RULER_WARN_RATIO` times the given or the file's, or more."""
    if replaced.mm is None:
        return
    ratio = float(np.mean(ruler_mm)) / float(np.mean(replaced.mm))
    if max(ratio, 1 / ratio) >= RULER_WARN_RATIO:
        what = "the pixel size given" if replaced.source == "option" else "the file's pixel size"
        warnings.warn(named(f"the ruler found gives {ruler_mm[0]:.4g} mm per pixel, {ratio:.2f} times {what} "
                            f"({float(np.mean(replaced.mm)):.4g} mm); the ruler's is used: check its ticks (half "
                            "millimetres? every second tick?)"), UserWarning, stacklevel=2)


def resolve_model(model: Any):
    """A loaded model from a path, None (the default model) or a model object (returned as is)."""
    from napari_nevus_seg.model.loading import as_model

    return as_model(model)


def infer_stage(img: np.ndarray, opts: BatchOptions, model=None) -> np.ndarray:
    """Segment one image: (H, W) labels, uint8 when they fit (saves memory on huge images)."""
    from napari_nevus_seg.inference.pipeline import segment

    kwargs = opts.segment.segment_kwargs()
    kwargs["model"] = model if model is not None else resolve_model(opts.segment.model)
    return compact_labels(segment(img, **kwargs))


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 labels when they fit (at most 255 lesions): a quarter of the memory on huge images."""
    return labels.astype(np.uint8) if labels.max(initial=0) <= 255 else labels


def measure_rows(labels: np.ndarray, img: np.ndarray, task: ImageTask, scale: PixelScale,
                 opts: BatchOptions) -> list[dict[str, Any]]:
    """Per-lesion measurement rows, each with an ``image`` column first (and, with ``opts.find_ruler``,
    where the pixel size came from: :meth:`PixelScale.columns`)."""
    from napari_nevus_seg.measurements.table import measure

    table = measure(np.asarray(labels, dtype=np.int32), img, pixel_size_mm=scale.mm)
    records = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    where = scale.columns() if opts.find_ruler else {}
    return [{"image": task.name, **r, **where} for r in records]


def write_stage(labels: np.ndarray, img: np.ndarray | None, scale: PixelScale, task: ImageTask,
                opts: BatchOptions) -> tuple[Path, list[dict[str, Any]]]:
    """Write the labels atomically (with the pixel size), then measure (when asked). Returns (output path, rows)."""
    out = write_output(labels, output_path(task, opts.fmt), scale.mm, source=task.source)
    rows = measure_rows(labels, img, task, scale, opts) if opts.measure and img is not None else []
    return out, rows


def describe_error(exc: BaseException, source: str | None = None) -> str:
    """A one-line reason for the summary (without the file name, which the summary shows)."""
    if isinstance(exc, MemoryError):
        return "out of memory while processing this image"
    msg = str(exc).splitlines()[0] if str(exc) else ""
    if source and msg.startswith(f"{source}: "):
        msg = msg[len(source) + 2:]
    known = type(exc).__name__ in ("ImageReadError", "CheckpointError", "DeviceUnavailableError",
                                   "NotALabelFileError", "TimeLimitExceeded")
    if not msg:
        return type(exc).__name__
    return msg if known else f"{type(exc).__name__}: {msg}"


def failed_result(task: ImageTask, exc: BaseException, seconds: float = 0.0) -> ImageResult:
    """The result of an image whose processing raised ``exc`` (a full disk marked as such)."""
    from napari_nevus_seg.io.atomic import is_disk_full

    return ImageResult(task.source, task.name, "failed", reason=describe_error(exc, task.source), seconds=seconds,
                       disk_full=is_disk_full(exc))


def needs_work(task: ImageTask, opts: BatchOptions) -> Path | None:
    """The existing output when ``task`` can be skipped (resume), else None."""
    return None if opts.overwrite else existing_output(task, opts.fmt)


def process_one(task: ImageTask, opts: BatchOptions) -> ImageResult:
    """Read -> segment -> write -> measure one image, never raising: failures become results.

    Used whole by Dask workers. An image whose output already exists is skipped (unless
    ``opts.overwrite``); with ``opts.measure`` it is still measured from the existing labels. The
    warnings raised meanwhile (a grayscale image, ...) travel in the result's ``warnings``, so that the
    caller shows them instead of a worker's log (recorded per thread by
    :func:`~napari_nevus_seg.io.warning_capture.recorded_warnings`: a Dask worker may run several images
    at once, and each result gets its own image's warnings).
    """
    t0 = time.perf_counter()
    with recorded_warnings() as caught:
        try:
            with about(task.name), opts.deadline().running():
                result = _process(task, opts, t0)
        except Exception as exc:  # noqa: BLE001 - one bad image (MemoryError included) must not stop the batch
            result = failed_result(task, exc, time.perf_counter() - t0)
    result.warnings = list(dict.fromkeys(str(w.message) for w in caught))
    return result


def _process(task: ImageTask, opts: BatchOptions, t0: float) -> ImageResult:
    """The steps of :func:`process_one` (its errors become a failed result there)."""
    done = needs_work(task, opts)
    if done is not None:
        rows: list[dict[str, Any]] = []
        source = None
        if opts.measure:
            img, scale = read_stage(task, opts)
            labels = read_output(done)
            rows = measure_rows(labels, img, task, scale, opts)
            source = scale.source
        return ImageResult(task.source, task.name, "skipped", str(done), rows=rows,
                           seconds=time.perf_counter() - t0, pixel_size_from=source)
    img, scale = read_stage(task, opts)
    check_deadline("after reading the image")
    labels = infer_stage(img, opts)
    check_deadline("after the segmentation")
    out, rows = write_stage(labels, img if opts.measure else None, scale, task, opts)
    return ImageResult(task.source, task.name, "done", str(out), n_lesions=int(labels.max(initial=0)),
                       rows=rows, seconds=time.perf_counter() - t0, pixel_size_from=scale.source)
