"""The work done for one image of a batch: read, segment, write the labels atomically, measure.

The same functions run in the in-process pipeline of :mod:`napari_nevus_seg.batch` (split in stages
so that reading, inference and writing overlap) and, whole, on Dask workers
(:mod:`napari_nevus_seg.batch_cluster`). Everything here is picklable: tasks, options and results are
plain dataclasses, and models are referred to by path (each process loads a model once: the loader in
:mod:`napari_nevus_seg.inference` caches it by path and modification time).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LABEL_SUFFIXES = (".png", ".tif", ".tiff")
FORMATS = ("auto", "png", "tif")


@dataclass(frozen=True)
class ImageTask:
    """One input image and where its labels go (``output_stem`` + ``.png`` or ``.tif``)."""

    source: str
    output_stem: str
    name: str  # how the image is named in the summary and in the measurement table


@dataclass(frozen=True)
class SegmentOptions:
    """Everything a worker needs to process an image (picklable)."""

    model: Any = None            # path (str), None for the default model, or a loaded LesionModel
    device: str = "auto"
    threshold: float = 0.5
    tta: bool = False
    min_size: int | None = None
    largest_only: bool = False
    fmt: str = "auto"            # "auto" (PNG up to 255 lesions, else TIFF), "png" or "tif"
    measure: bool = False
    pixel_size_mm: float | tuple[float, float] | None = None  # overrides the files' metadata
    overwrite: bool = False


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


# ------------------------------------------------------------------------------------ outputs
def existing_output(task: ImageTask) -> Path | None:
    """The label file already written for ``task`` (any supported suffix), or None."""
    stem = Path(task.output_stem)
    for suffix in LABEL_SUFFIXES:
        p = stem.with_name(stem.name + suffix)
        if p.is_file() and p.stat().st_size > 0:
            return p
    return None


def _label_array(labels: np.ndarray, fmt: str) -> tuple[np.ndarray, str]:
    """Smallest unsigned dtype that holds the labels, and the file suffix to use."""
    n = int(labels.max(initial=0))
    if n > 65535:
        raise ValueError(f"{n} labels do not fit in a 16-bit label image")
    arr = labels.astype(np.uint8 if n <= 255 else np.uint16, copy=False)
    if fmt == "auto":
        suffix = ".png" if n <= 255 else ".tif"
    elif fmt in ("png", "tif"):
        suffix = "." + fmt
    else:
        raise ValueError(f"unknown label format {fmt!r}; use one of {FORMATS}")
    return arr, suffix


def write_labels_atomic(labels: np.ndarray, stem: str | os.PathLike, fmt: str = "auto") -> Path:
    """Write a label image next to nothing half-done: a temporary file is renamed into place.

    uint8 when there are at most 255 lesions, uint16 otherwise. Returns the path written. If writing
    fails, any earlier file at that path is left exactly as it was.
    """
    arr, suffix = _label_array(np.asarray(labels), fmt)
    stem = Path(stem)
    final = stem.with_name(stem.name + suffix)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if suffix == ".png":
                from PIL import Image

                Image.fromarray(arr).save(fh, format="PNG", compress_level=1)
            else:
                import tifffile

                tifffile.imwrite(fh, arr, compression="zlib")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    # a stale output of the other format (e.g. .tif from an earlier run) would make resume ambiguous
    for other in LABEL_SUFFIXES:
        p = stem.with_name(stem.name + other)
        if p != final and p.is_file():
            p.unlink()
    return final


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image written by :func:`write_labels_atomic` as (H, W) int32."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
    if arr.ndim != 2:
        raise ValueError(f"{path}: not a label image (shape {arr.shape})")
    return arr.astype(np.int32, copy=False)


# --------------------------------------------------------------------------------- the stages
def read_stage(task: ImageTask) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Decode the image: (H, W, 3) uint8 RGB and the pixel size in mm from its metadata (or None)."""
    from .io import read_image_with_info

    img, info = read_image_with_info(task.source)
    return img, info.pixel_size_mm


def resolve_model(model: Any):
    """A loaded model from a path, None (the default model) or a model object (returned as is)."""
    from .inference import load_model
    from .model import LesionModel

    if isinstance(model, LesionModel):
        return model
    return load_model(model)


def infer_stage(img: np.ndarray, opts: SegmentOptions, model=None) -> np.ndarray:
    """Segment one image: (H, W) labels, uint8 when they fit (saves memory on huge images)."""
    from .inference import segment

    labels = segment(img, model=model if model is not None else resolve_model(opts.model), device=opts.device,
                     threshold=opts.threshold, tta=opts.tta, min_size=opts.min_size,
                     largest_only=opts.largest_only)
    if labels.max(initial=0) <= 255:
        labels = labels.astype(np.uint8)
    return labels


def measure_rows(labels: np.ndarray, img: np.ndarray, task: ImageTask, pixel_size_mm,
                 opts: SegmentOptions) -> list[dict[str, Any]]:
    """Per-lesion measurement rows, each with an ``image`` column first."""
    try:
        from .measure import measure
    except ImportError as exc:  # the measurement module is not installed in this version
        raise RuntimeError(f"measurements are not available in this installation ({exc})") from exc
    px = opts.pixel_size_mm if opts.pixel_size_mm is not None else pixel_size_mm
    table = measure(np.asarray(labels, dtype=np.int32), img, pixel_size_mm=px)
    records = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    return [{"image": task.name, **r} for r in records]


def write_stage(labels: np.ndarray, img: np.ndarray | None, pixel_size_mm, task: ImageTask,
                opts: SegmentOptions) -> tuple[Path, list[dict[str, Any]]]:
    """Write the labels atomically, then measure (when asked). Returns (output path, rows)."""
    out = write_labels_atomic(labels, task.output_stem, opts.fmt)
    rows = measure_rows(labels, img, task, pixel_size_mm, opts) if opts.measure and img is not None else []
    return out, rows


def describe_error(exc: BaseException, source: str | None = None) -> str:
    """A one-line reason for the summary (without the file name, which the summary shows)."""
    if isinstance(exc, MemoryError):
        return "out of memory while processing this image"
    msg = str(exc).splitlines()[0] if str(exc) else ""
    if source and msg.startswith(f"{source}: "):
        msg = msg[len(source) + 2:]
    known = type(exc).__name__ in ("ImageReadError", "CheckpointError", "DeviceUnavailableError")
    if not msg:
        return type(exc).__name__
    return msg if known else f"{type(exc).__name__}: {msg}"


def needs_work(task: ImageTask, opts: SegmentOptions) -> Path | None:
    """The existing output when ``task`` can be skipped (resume), else None."""
    return None if opts.overwrite else existing_output(task)


def process_one(task: ImageTask, opts: SegmentOptions) -> ImageResult:
    """Read -> segment -> write -> measure one image, never raising: failures become results.

    Used whole by Dask workers. An image whose output already exists is skipped (unless
    ``opts.overwrite``); with ``opts.measure`` it is still measured from the existing labels.
    """
    t0 = time.perf_counter()
    try:
        done = needs_work(task, opts)
        if done is not None:
            rows: list[dict[str, Any]] = []
            if opts.measure:
                img, px = read_stage(task)
                labels = read_labels(done)
                rows = measure_rows(labels, img, task, px, opts)
            return ImageResult(task.source, task.name, "skipped", str(done), rows=rows,
                               seconds=time.perf_counter() - t0)
        img, px = read_stage(task)
        labels = infer_stage(img, opts)
        out, rows = write_stage(labels, img if opts.measure else None, px, task, opts)
        return ImageResult(task.source, task.name, "done", str(out), n_lesions=int(labels.max(initial=0)),
                           rows=rows, seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one bad image (MemoryError included) must not stop the batch
        return ImageResult(task.source, task.name, "failed", reason=describe_error(exc, task.source),
                           seconds=time.perf_counter() - t0)
