"""Segment (and measure) thousands of images from files and folders, in this process or on Dask.

In this process the work is a small bounded pipeline: reader threads decode the next images while
the main thread runs the network on the current one, and a writer thread writes label images
(atomically: a temporary file renamed into place) and measures them. Queues are bounded, so memory
stays the same for ten images or a hundred thousand. With ``workers=N`` or ``scheduler="tcp://..."``
the same per-image work runs on Dask workers (:mod:`napari_nevus_seg.batch_cluster`).

Outputs that already exist are skipped (resume after an interruption) unless ``overwrite=True``;
a file that cannot be read or segmented is reported and the batch goes on.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from napari_nevus_seg.batch.csv_sink import CsvSink
from napari_nevus_seg.batch.work import FORMATS, ImageResult, ImageTask, SegmentOptions, resolve_model
from napari_nevus_seg.inference.masks import check_args
from napari_nevus_seg.io.datasets import IMAGE_SUFFIXES, is_not_a_photo
from napari_nevus_seg.io.labels import is_labels_file

ProgressFn = Callable[[ImageResult, int, int], None]


class BatchSetupError(RuntimeError):
    """The batch cannot start: no images, an output folder that cannot be written, no Dask, ..."""


@dataclass
class BatchSummary:
    """The outcome of :func:`segment_folder`."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (image, reason)
    no_lesion: int = 0           # images segmented with no lesion found (counted in ``done``)
    measured_rows: int = 0
    results_csv: str | None = None
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when every image was segmented or skipped and the run was not interrupted."""
        return not self.failed and not self.interrupted

    def add(self, r: ImageResult) -> None:
        if r.status == "done":
            self.done += 1
            self.no_lesion += int(r.n_lesions == 0)
        elif r.status == "skipped":
            self.skipped += 1
        else:
            self.failed.append((r.name, r.reason or "unknown error"))
        self.measured_rows += len(r.rows)

    def report(self, max_failures: int = 50) -> str:
        """A few lines for people: counts, speed and the reason of each failure."""
        rate = f" ({self.done / self.seconds:.2f} images/s)" if self.done and self.seconds > 0 else ""
        lines = [f"{self.done} segmented ({self.no_lesion} with no lesion found), {self.skipped} skipped "
                 f"(output already there), {len(self.failed)} failed, of {self.total} images "
                 f"in {self.seconds:.1f} s{rate}"]
        if self.results_csv:
            so_far = " so far (the complete table is written when a run finishes)" if self.interrupted else ""
            lines.append(f"measurements: {self.measured_rows} lesions{so_far} -> {self.results_csv}")
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume (finished outputs are skipped)")
        for name, reason in self.failed[:max_failures]:
            lines.append(f"  FAILED {name}: {reason}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more failures")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- discovery
def _folder_images(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    found = []
    # sub-folders that are links are followed, each real folder once (a link to a parent is no loop)
    walker = os.walk(folder, followlinks=True) if recursive else [(str(folder), [], os.listdir(folder))]
    seen = {folder.resolve()}
    for root, dirs, files in walker:
        root_p = Path(root)
        keep = []
        for d in sorted(dirs):
            real = (root_p / d).resolve()
            if d.startswith(".") or real in seen or (exclude is not None and real == exclude):
                continue
            seen.add(real)
            keep.append(d)
        dirs[:] = keep
        stems = {Path(f).stem for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES}
        for f in files:
            p = root_p / f
            if (f.startswith(".") or Path(f).suffix.lower() not in IMAGE_SUFFIXES or is_not_a_photo(p, stems)
                    or not p.is_file() or is_labels_file(p)):   # e.g. --out is the input folder itself
                continue
            found.append(p)
    return sorted(found)


def find_images(inputs: Iterable[str | os.PathLike], out: str | os.PathLike,
                recursive: bool = False, fmt: str = "tif") -> tuple[list[ImageTask], list[ImageResult]]:
    """Image tasks for files and folders, and a failed result for each input that does not exist.

    Folders give their images (BMP, PNG, JPEG, TIFF; hidden files, masks (named ``*_segmentation``,
    ``*_mask``, ``*_lesion`` or ``*_labels`` with their image beside them, in a mask folder or
    single-channel: :func:`~napari_nevus_seg.datasets.is_mask_file`), ISIC ``*_superpixels`` maps, label
    files this plugin wrote and the output folder are left out), with sub-folders when ``recursive``
    (linked ones followed, each real folder once), whose structure is kept under ``out``. Files named
    explicitly are always taken. Two inputs that would write the same output get their suffix, then a number, added;
    two inputs of the same name are named by their paths in the summary and the measurement table.
    An output (in format ``fmt``) is never an input image, nor a file that is not a label file (a photograph
    beside the inputs when ``--out`` is the input folder, or anywhere else): ``photo.tif`` gives
    ``photo_tif.tif`` there (then a number if that is taken).
    Sources are absolute paths (recorded in the label files, so that a resumed run never takes one
    image's labels for another's).
    """
    out = Path(out)
    exclude = out.resolve()
    tasks: list[tuple[Path, Path, str]] = []   # source, relative output stem, name
    missing: list[ImageResult] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for img in _folder_images(p, recursive, exclude):
                rel = img.relative_to(p)
                tasks.append((img, rel.with_suffix(""), rel.as_posix()))
        elif p.is_file():
            tasks.append((p, Path(p.stem), p.name))
        else:
            missing.append(ImageResult(str(p), str(p), "failed", reason="no such file or folder"))
    stems = _unique_stems([(src, rel) for src, rel, _ in tasks])
    stems = _spare_sources([src for src, _, _ in tasks], stems, out, fmt)
    names = [name for _, _, name in tasks]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    result = [ImageTask(os.path.abspath(src), str(out / stem), str(src) if counts[name] > 1 else name)
              for (src, _, name), stem in zip(tasks, stems)]
    return result, missing


def _unique_stems(items: list[tuple[Path, Path]]) -> list[Path]:
    """Output stems without clashes (case-insensitive): ``a.jpg`` + ``a.png`` -> ``a_jpg``, ``a_png``."""
    def clashes(stems: list[Path]) -> list[list[int]]:
        groups: dict[str, list[int]] = {}
        for i, st in enumerate(stems):
            groups.setdefault(st.as_posix().lower(), []).append(i)
        return [g for g in groups.values() if len(g) > 1]

    stems = [rel for _, rel in items]
    for group in clashes(stems):
        for i in group:
            src, rel = items[i]
            stems[i] = rel.with_name(f"{rel.name}_{src.suffix.lstrip('.').lower()}")
    taken = {st.as_posix().lower() for st in stems}
    for group in clashes(stems):   # same name and suffix in two input folders: number them
        for i in sorted(group, key=lambda j: str(items[j][0]))[1:]:
            k = 2
            while f"{stems[i].as_posix()}_{k}".lower() in taken:   # never a name another input has
                k += 1
            stems[i] = stems[i].with_name(f"{stems[i].name}_{k}")
            taken.add(stems[i].as_posix().lower())
    return stems


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of an existing file, after links (what ``os.path.samefile`` compares), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _spare_sources(sources: list[Path], stems: list[Path], out: Path, fmt: str) -> list[Path]:
    """Output stems whose files are never an input image (the same file, also through links or another
    letter case) nor a file that is not a label file (a photograph that is no input of this run, in a
    folder holding inputs or anywhere else; elsewhere an empty file may be replaced): ``photo.tif`` ->
    ``photo_tif`` (then ``photo_tif_2``, ...). Deterministic for the same inputs and files, so that a
    rerun finds (and skips) the outputs of the first run."""
    from napari_nevus_seg.batch.work import SUFFIX

    if fmt not in SUFFIX:
        raise ValueError(f"unknown label format {fmt!r}; use one of {FORMATS}")
    suffix = SUFFIX[fmt]
    source_ids = {i for i in map(_file_id, sources) if i is not None}
    dir_ids: dict[str, tuple[int, int] | None] = {}

    def dir_id(folder: Path) -> tuple[int, int] | None:
        key = str(folder)
        if key not in dir_ids:
            dir_ids[key] = _file_id(folder)
        return dir_ids[key]

    source_dirs = {dir_id(src.parent) for src in sources} - {None}

    def unsafe(stem: Path) -> bool:
        path = out / stem.with_name(stem.name + suffix)
        fid = _file_id(path)
        if fid is None:
            return False       # nothing there (every input exists)
        if fid in source_ids:
            return True
        if dir_id(path.parent) in source_dirs:
            return not is_labels_file(path)
        return path.stat().st_size > 0 and not is_labels_file(path)   # a photo (an empty file is replaced)

    stems = list(stems)
    taken = {st.as_posix().lower() for st in stems}
    for i, (src, stem) in enumerate(zip(sources, stems)):
        if not unsafe(stem):
            continue
        base = stem.with_name(f"{stem.name}_{src.suffix.lstrip('.').lower()}")
        cand, k = base, 1
        while cand.as_posix().lower() in taken or unsafe(cand):
            k += 1
            cand = base.with_name(f"{base.name}_{k}")
        stems[i] = cand
        taken.add(cand.as_posix().lower())
    return stems


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`segment_folder`: the images finished are written (and in the partial
    table), and ``summary`` says what was done. A ``KeyboardInterrupt``, so a script's loop stops too."""

    def __init__(self, summary: BatchSummary):
        super().__init__(f"interrupted: {summary.done} segmented, {summary.skipped} skipped of {summary.total}")
        self.summary = summary


#: the pixel sizes (mm per pixel) a batch accepts: 1 nm to 1 m, storable in TIFF resolution tags
PIXEL_SIZE_RANGE_MM = (1e-6, 1e3)


def check_pixel_size(value: float | tuple[float, float] | None, what: str = "pixel_size_mm") -> None:
    """Refuse (BatchSetupError) a pixel size that is not a finite number in :data:`PIXEL_SIZE_RANGE_MM`."""
    if value is None:
        return
    lo, hi = PIXEL_SIZE_RANGE_MM
    try:
        values = (value,) if isinstance(value, (int, float)) or getattr(value, "ndim", 1) == 0 else tuple(value)
        ok = len(values) in (1, 2) and all(math.isfinite(float(v)) and lo <= float(v) <= hi for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise BatchSetupError(f"{what} must be a number of mm per pixel from {lo:g} to {hi:g} (or a (row, column) "
                              f"pair of them), got {value!r}")


def check_measure_path(measure: str | os.PathLike, tasks: Sequence[ImageTask]) -> None:
    """Refuse (BatchSetupError) a measurement table path that is a folder, an input image or no ``.csv`` file."""
    m = Path(measure)
    if m.is_dir():
        raise BatchSetupError(f"the measurement table {measure} is a folder: give a file name, "
                              f"e.g. {m / 'lesions.csv'}")
    mid = _file_id(m)
    if mid is not None and any(_file_id(t.source) == mid for t in tasks):
        raise BatchSetupError(f"the measurement table {measure} is one of the input images: give the name of a "
                              "new .csv file, e.g. lesions.csv")
    if m.suffix.lower() != ".csv":
        raise BatchSetupError(f"the measurement table {measure} must be a .csv file (e.g. "
                              f"{m.with_name('lesions.csv')}), got suffix {m.suffix or '(none)'!r}")


def check_output_folder(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and check that files can be written there (else BatchSetupError)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".nevus-seg-write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise BatchSetupError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from exc
    return out


# ----------------------------------------------------------------------------------- public API
def segment_folder(inputs: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   model: Any = None, device: str = "auto", threshold: float = 0.5, tta: bool = False,
                   min_size: int | None = None, largest_only: bool = False, refine: bool = True, fmt: str = "tif",
                   measure: str | os.PathLike | None = None,
                   pixel_size_mm: float | tuple[float, float] | None = None, overwrite: bool = False,
                   recursive: bool = False, workers: int | None = None, scheduler: str | None = None,
                   client: Any = None, threads_per_worker: int = 1, readers: int = 2,
                   refine_workers: int | None = None, progress: ProgressFn | None = None,
                   cancel: Any = None) -> BatchSummary:
    """Segment every image of ``inputs`` (files and/or folders) into label images under ``out``.

    Each image ``name.ext`` gives ``out/name.tif``: instance labels (uint16; 0 background, 1..N
    lesions by decreasing area) with the pixel size in its resolution tags, which napari and this
    plugin's reader open as a Labels layer; or with ``fmt="png"`` ``out/name.png``, the binary lesion
    mask (0/255) as the ISIC challenge distributes masks.
    ``threshold``, ``tta``, ``min_size``, ``largest_only`` and ``refine`` are those of :func:`segment`.
    Existing outputs are skipped unless ``overwrite``; an output never replaces an input image or a
    photograph (see :func:`find_images`). ``measure``: path of a ``.csv`` file (not an input image)
    that receives one row per lesion for all images (an ``image`` column first), pixel size from each
    file's metadata unless ``pixel_size_mm`` is given (1e-6 to 1000 mm: :data:`PIXEL_SIZE_RANGE_MM`).
    ``model``: a loaded model, a file path or None (the default). Runs in this process, or on Dask
    with ``workers=N`` (a local cluster of N processes), ``scheduler="tcp://host:port"`` or an
    existing ``client``. In this process, ``refine_workers``
    processes refine the outlines beside the network (the refinement holds Python's GIL); None picks
    half the CPU cores (all but one with a GPU) for runs of 16 images or more, 0 refines in this
    process. ``progress(result, finished, total)``
    is called per image; ``cancel.is_set()`` stops the run early (finished outputs stay).

    Ctrl-C raises :class:`BatchInterrupted` (a ``KeyboardInterrupt`` holding the summary) once the
    images in flight are written; ``cancel`` instead returns the summary with ``interrupted`` set.
    Raises :class:`BatchSetupError` when the run cannot start (no images, output not writable, a bad
    ``measure`` path or pixel size, Dask missing); image-level problems are reported in the returned
    :class:`BatchSummary`.
    """
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise BatchSetupError(f"unknown label format {fmt!r}; use one of {FORMATS}")
    try:
        check_args(threshold, min_size)   # segment()'s own checks, here before any work
    except ValueError as exc:
        raise BatchSetupError(str(exc)) from None
    if sum(x is not None for x in (workers, scheduler, client)) > 1:
        raise BatchSetupError("give at most one of workers, scheduler and client")
    if refine_workers is not None and refine_workers < 0:
        raise BatchSetupError(f"refine_workers must be 0 or more, got {refine_workers}")
    if refine_workers and workers is None and scheduler is None and client is None:
        import multiprocessing

        if multiprocessing.current_process().daemon:
            raise BatchSetupError("refine_workers: this process is daemonic (a multiprocessing.Pool worker?) and "
                                  "may not start processes; use refine_workers=0 (the default picks 0 here)")
    check_pixel_size(pixel_size_mm)
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out = Path(out).absolute()   # this process's working folder, also for workers that run elsewhere (Dask)
    tasks, missing = find_images(items, out, recursive, fmt=fmt)
    if not tasks:
        where = ", ".join(str(i) for i in items) or "(no inputs)"
        raise BatchSetupError(f"no images found in {where} (looked for {', '.join(IMAGE_SUFFIXES)}, leaving out "
                              "masks and files in mask folders such as masks/ or labels/"
                              f"{'' if recursive else '; sub-folders need --recursive'})")
    if measure is not None:
        try:
            from napari_nevus_seg import measure as _measure_module  # noqa: F401
        except ImportError as exc:
            raise BatchSetupError(f"measurements are not available in this installation ({exc})") from exc
    if scheduler is None and client is None:  # this machine does the work (also a local Dask cluster)
        from napari_nevus_seg.model.devices import resolve_device

        resolve_device(device)   # an unavailable explicit device is a setup error, not N failed images
    if measure is not None:
        check_measure_path(measure, tasks)
    loaded = resolve_model(model)    # fails here, once, for a bad model file
    check_output_folder(out)  # created only once the inputs and the model are known to be good
    opts = SegmentOptions(model=model if model is None or isinstance(model, (str, os.PathLike)) else loaded,
                          device=device, threshold=threshold, tta=tta, min_size=min_size,
                          largest_only=largest_only, refine=refine, fmt=fmt, measure=measure is not None,
                          pixel_size_mm=pixel_size_mm, overwrite=overwrite)
    if isinstance(opts.model, (str, os.PathLike)):   # workers elsewhere (Dask) resolve it as this process does
        opts = replace(opts, model=os.path.abspath(opts.model))
    summary = BatchSummary(total=len(tasks) + len(missing))
    sink = CsvSink(measure) if measure is not None else None
    finished = 0

    def on_result(r: ImageResult) -> None:
        nonlocal finished
        finished += 1
        summary.add(r)
        if sink is not None and r.rows:
            sink.write(r.rows)
        if progress is not None:
            progress(r, finished, summary.total)

    interrupt: KeyboardInterrupt | None = None
    ended = False   # False after an unexpected error (e.g. in `progress`): the table is then incomplete
    try:
        for r in missing:
            on_result(r)
        if workers is None and scheduler is None and client is None:
            from napari_nevus_seg.batch.local import run_local

            if refine_workers is None:
                from napari_nevus_seg.batch.refine_pool import auto_refine_workers

                refine_workers = auto_refine_workers(len(tasks), device) if refine else 0
            completed = run_local(tasks, opts, on_result, model=loaded, readers=readers, cancel=cancel,
                                  refine_workers=refine_workers)
        else:
            from napari_nevus_seg.batch.cluster import run_on_dask

            completed = run_on_dask(tasks, opts, on_result, workers=workers, scheduler=scheduler, client=client,
                                    threads_per_worker=threads_per_worker, cancel=cancel)
        summary.interrupted = not completed
        ended = True
    except KeyboardInterrupt as exc:
        summary.interrupted = ended = True
        interrupt = exc
    finally:
        if sink is not None:   # an interrupted or failed run's rows go beside an earlier complete table, not over it
            summary.results_csv = str(sink.close(complete=ended and not summary.interrupted))
        summary.seconds = time.perf_counter() - t0
    if interrupt is not None:   # Ctrl-C stops the caller too (a script's loop), with what was done
        raise BatchInterrupted(summary) from interrupt
    return summary
