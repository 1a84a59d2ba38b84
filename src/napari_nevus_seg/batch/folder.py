"""Segment (and measure) thousands of images from files and folders, in this process or on Dask.

In this process the work is a small bounded pipeline (:mod:`napari_nevus_seg.batch.local`): reader
threads decode the next images while the main thread runs the network on the current one, and a writer
thread writes label images (atomically: a temporary file renamed into place) and measures them. Queues
are bounded, so memory stays the same for ten images or a hundred thousand. With ``workers=N`` or
``scheduler="tcp://..."`` the same per-image work runs on Dask workers (:mod:`napari_nevus_seg.batch.cluster`).

Outputs that already exist are skipped (resume after an interruption) unless ``overwrite=True``;
a file that cannot be read or segmented is reported and the batch goes on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from napari_nevus_seg.batch.csv_sink import CsvSink
from napari_nevus_seg.batch.errors import BatchInterrupted, BatchSetupError
from napari_nevus_seg.batch.inputs import file_id, find_images
from napari_nevus_seg.batch.options import FORMATS, BatchOptions
from napari_nevus_seg.batch.summary import BatchSummary
from napari_nevus_seg.batch.work import ImageResult, ImageTask, resolve_model
from napari_nevus_seg.inference.masks import check_args
from napari_nevus_seg.inference.options import DEFAULT, SegmentOptions
from napari_nevus_seg.io.atomic import remove_stale_temporaries
from napari_nevus_seg.io.datasets import IMAGE_SUFFIXES
from napari_nevus_seg.io.deadline import check_time_limit
from napari_nevus_seg.io.pixel_size import pixel_size_pair

__all__ = ["BatchInterrupted", "BatchSetupError", "BatchSummary", "segment_folder"]

ProgressFn = Callable[[ImageResult, int, int], None]


@dataclass(frozen=True)
class Execution:
    """Where a batch runs: this process (with ``readers`` threads, ``refine_workers`` processes) or Dask."""

    workers: int | None = None
    scheduler: str | None = None
    client: Any = None
    threads_per_worker: int = 1
    readers: int = 2
    refine_workers: int | None = None

    @property
    def local(self) -> bool:
        """True when this process does the work (no Dask)."""
        return self.workers is None and self.scheduler is None and self.client is None


# ----------------------------------------------------------------------------------- public API
def segment_folder(inputs: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
                   options: SegmentOptions | None = None, *,
                   model: Any = DEFAULT, device: str = DEFAULT, threshold: float = DEFAULT, tta: bool = DEFAULT,
                   min_size: int | None = DEFAULT, largest_only: bool = DEFAULT, refine: bool = DEFAULT,
                   zoom_small: bool = DEFAULT, convention: str | None = DEFAULT, fmt: str = "tif",
                   measure: str | os.PathLike | None = None,
                   pixel_size_mm: float | tuple[float, float] | None = None, find_ruler: bool = False,
                   overwrite: bool = False, recursive: bool = False, workers: int | None = None,
                   scheduler: str | None = None, client: Any = None, threads_per_worker: int = 1, readers: int = 2,
                   refine_workers: int | None = None, progress: ProgressFn | None = None,
                   cancel: Any = None, time_limit_s: float | None = None) -> BatchSummary:
    """Segment every image of ``inputs`` (files and/or folders) into label images under ``out``.

    Each image ``name.ext`` gives ``out/name.tif``: instance labels (uint16; 0 background, 1..N
    lesions by decreasing area) with the pixel size in its resolution tags, which napari and this
    plugin's reader open as a Labels layer; or with ``fmt="png"`` ``out/name.png``, the binary lesion
    mask (0/255) as the ISIC challenge distributes masks. Existing outputs are skipped unless
    ``overwrite``; an output never replaces an input image or a photograph (see
    :func:`~napari_nevus_seg.batch.inputs.find_images`).

    Parameters
    ----------
    inputs
        Image files and folders (one path or a sequence of them).
    out
        The output folder (created).
    options
        How to segment (:class:`~napari_nevus_seg.inference.options.SegmentOptions`). The keywords
        ``model``, ``device``, ``threshold``, ``tta``, ``min_size``, ``largest_only``, ``refine``,
        ``zoom_small`` and ``convention`` give the same settings one by one instead (defaults: those of
        ``SegmentOptions``); giving ``options`` and any of them is a TypeError.
    model, device, threshold, tta, min_size, largest_only, refine, zoom_small, convention
        As in :func:`~napari_nevus_seg.inference.pipeline.segment`; ``model`` is a loaded model, a
        file path or None (the default model).
    fmt
        ``"tif"`` (instance labels) or ``"png"`` (binary mask).
    measure
        Path of a ``.csv`` file (not an input image) that receives one row per lesion for all images
        (an ``image`` column first).
    pixel_size_mm
        Pixel size of every image (1e-6 to 1000 mm, or a (row, column) pair), instead of each file's
        metadata.
    find_ruler
        Look for a millimetre ruler in each image (:func:`~napari_nevus_seg.find_ruler`, 0.3-1.5 s an
        image): where one is found, its tick spacing taken as 1 mm is the image's pixel size, before
        ``pixel_size_mm`` and the file's. The measurement rows get ``pixel_size_from`` (``ruler``,
        ``option``, ``file`` or ``none``), ``ruler_spacing_px``, ``ruler_spacings`` and
        ``ruler_regularity``, so that the rulers can be checked (a half-millimetre ruler read as mm
        halves every length: docs/measurements.md).
    overwrite
        Redo images whose output exists already.
    recursive
        Include sub-folders of the input folders (their structure is kept under ``out``).
    workers, scheduler, client
        Run on Dask: a local cluster of ``workers`` processes, the scheduler at ``"tcp://host:port"``
        or an existing ``client`` (at most one of them); none: in this process.
    threads_per_worker
        Threads of each Dask worker of a local cluster.
    readers
        Image-decoding threads (in this process).
    refine_workers
        Processes refining outlines beside the network (in this process; the refinement holds
        Python's GIL). None picks half the CPU cores (all but one with a GPU) for runs of 16 images or
        more; 0 refines in this process.
    progress
        Called as ``progress(result, finished, total)`` for each image.
    cancel
        An object whose ``is_set()`` stops the run early (finished outputs stay; the summary has
        ``interrupted`` set).
    time_limit_s
        Seconds of work allowed per image (None: no limit; at most a week). An image that needs more
        fails with "time limit of ... s exceeded" in the summary and the run goes on. The limit is
        checked between steps (network windows, bands of the upsampling, measured lesions), so an
        image stops at most one step late; time spent waiting behind other images is not counted.

    Returns
    -------
    BatchSummary
        Counts, failures with their reasons, and the path of the measurement table.

    Raises
    ------
    TypeError
        ``options`` together with a segmentation keyword, or ``options`` that is no SegmentOptions.
    BatchSetupError
        The run cannot start: no images, output not writable, a bad ``measure`` path, pixel size,
        threshold or format, Dask missing. Image-level problems are reported in the summary instead.
    BatchInterrupted
        Ctrl-C, once the images in flight are written: a ``KeyboardInterrupt`` holding the summary.
    """
    t0 = time.perf_counter()
    segment = merge_segment_options(options, model=model, device=device, threshold=threshold, tta=tta,
                                    min_size=min_size, largest_only=largest_only, refine=refine,
                                    zoom_small=zoom_small, convention=convention)
    execution = Execution(workers, scheduler, client, threads_per_worker, readers, refine_workers)
    check_settings(segment, fmt, pixel_size_mm, execution)
    if find_ruler and fmt == "png" and measure is None:
        raise BatchSetupError("finding the ruler gives each image a pixel size, which a PNG mask cannot hold: "
                              "write TIFF labels (--format tif) or measure the lesions (--measure FILE.csv)")
    time_limit_s = checked_time_limit(time_limit_s)
    out = Path(out).absolute()   # this process's working folder, also for workers that run elsewhere (Dask)
    tasks, missing = collect_inputs(inputs, out, recursive, fmt)
    opts, loaded = plan_outputs(tasks, out, segment, execution, fmt=fmt, measure=measure,
                                pixel_size_mm=pixel_size_mm, overwrite=overwrite, time_limit_s=time_limit_s,
                                find_ruler=bool(find_ruler))
    summary = BatchSummary(total=len(tasks) + len(missing), find_ruler=bool(find_ruler))
    run_batch(tasks, missing, opts, loaded, execution, summary, measure=measure, progress=progress, cancel=cancel,
              started=t0)
    return summary


# ---------------------------------------------------------------------------------------- steps
def merge_segment_options(options: SegmentOptions | None, **keywords: Any) -> SegmentOptions:
    """The segmentation settings of a run: ``options``, or the keywords given (others at their defaults).

    Raises TypeError when ``options`` is given with any keyword that is not :data:`DEFAULT`, or is no
    :class:`~napari_nevus_seg.inference.options.SegmentOptions`.
    """
    given = {k: v for k, v in keywords.items() if v is not DEFAULT}
    if options is None:
        return SegmentOptions(**given)
    if not isinstance(options, SegmentOptions):
        raise TypeError(f"segment_folder() options must be a SegmentOptions, got {type(options).__name__}")
    if given:
        names = ", ".join(given)
        raise TypeError(f"segment_folder() got options and also the keyword argument(s) {names}: give the "
                        f"segmentation settings in one place, e.g. options=options.with_({next(iter(given))}=...)")
    return options


def check_settings(segment: SegmentOptions, fmt: str, pixel_size_mm: Any, execution: Execution) -> None:
    """Refuse (BatchSetupError) settings that cannot work, before any file is looked at."""
    if fmt not in FORMATS:
        raise BatchSetupError(f"unknown label format {fmt!r}; use one of {FORMATS}")
    try:
        check_args(segment.threshold, segment.min_size)   # segment()'s own checks, here before any work
    except ValueError as exc:
        raise BatchSetupError(str(exc)) from None
    if sum(x is not None for x in (execution.workers, execution.scheduler, execution.client)) > 1:
        raise BatchSetupError("give at most one of workers, scheduler and client")
    if execution.refine_workers is not None and execution.refine_workers < 0:
        raise BatchSetupError(f"refine_workers must be 0 or more, got {execution.refine_workers}")
    if execution.refine_workers and execution.local:
        import multiprocessing

        if multiprocessing.current_process().daemon:
            raise BatchSetupError("refine_workers: this process is daemonic (a multiprocessing.Pool worker?) and "
                                  "may not start processes; use refine_workers=0 (the default picks 0 here)")
    if pixel_size_mm is not None:
        try:
            pixel_size_pair(pixel_size_mm)
        except ValueError as exc:
            raise BatchSetupError(str(exc)) from None


def checked_time_limit(seconds: Any) -> float | None:
    """The per-image time limit as a float (or None); BatchSetupError for anything but a positive number of seconds."""
    try:
        return check_time_limit(seconds)
    except (TypeError, ValueError) as exc:
        raise BatchSetupError(str(exc)) from None


def collect_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike], out: Path, recursive: bool,
                   fmt: str) -> tuple[list[ImageTask], list[ImageResult]]:
    """The image tasks of ``inputs`` and a failed result per missing input; BatchSetupError if no images."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    tasks, missing = find_images(items, out, recursive, fmt=fmt)
    if not tasks:
        where = ", ".join(str(i) for i in items) or "(no inputs)"
        raise BatchSetupError(f"no images found in {where} (looked for {', '.join(IMAGE_SUFFIXES)}, leaving out "
                              "masks and files in mask folders such as masks/ or labels/"
                              f"{'' if recursive else '; sub-folders need --recursive'})")
    return tasks, missing


def plan_outputs(tasks: Sequence[ImageTask], out: Path, segment: SegmentOptions, execution: Execution, *,
                 fmt: str, measure: str | os.PathLike | None, pixel_size_mm: Any,
                 overwrite: bool, time_limit_s: float | None = None,
                 find_ruler: bool = False) -> tuple[BatchOptions, Any]:
    """Check the device, measurement table, model and output folder; the options every image is processed with.

    Returns the :class:`~napari_nevus_seg.batch.options.BatchOptions` (with a model path made absolute,
    so that Dask workers elsewhere resolve it as this process does) and the loaded model.
    """
    if execution.scheduler is None and execution.client is None:  # this machine does the work (also local Dask)
        from napari_nevus_seg.model.devices import resolve_device

        resolve_device(segment.device)   # an unavailable explicit device is a setup error, not N failed images
    if measure is not None:
        check_measure_path(measure, tasks)
    loaded = resolve_model(segment.model)    # fails here, once, for a bad model file
    if segment.convention is not None:   # a convention the model does not know: refused here, once
        try:
            loaded = loaded.with_convention(segment.convention)
        except ValueError as exc:
            raise BatchSetupError(str(exc)) from None
    check_output_folder(out)  # created only once the inputs and the model are known to be good
    for folder in {Path(t.output_stem).parent for t in tasks}:   # what runs killed here earlier left behind
        remove_stale_temporaries(folder)
    model = segment.model
    if isinstance(model, (str, os.PathLike)):
        model = os.path.abspath(model)
    elif model is not None:
        model = loaded
    refine = loaded.refines if segment.refine is None else segment.refine   # the model's choice unless given
    opts = BatchOptions(segment=segment.with_(model=model, refine=refine), fmt=fmt, measure=measure is not None,
                        pixel_size_mm=pixel_size_mm, find_ruler=find_ruler, overwrite=overwrite,
                        time_limit_s=time_limit_s)
    return opts, loaded


def run_batch(tasks: Sequence[ImageTask], missing: Sequence[ImageResult], opts: BatchOptions, loaded: Any,
              execution: Execution, summary: BatchSummary, *, measure: str | os.PathLike | None,
              progress: ProgressFn | None, cancel: Any, started: float) -> None:
    """Process ``tasks`` here or on Dask, counting every result into ``summary`` and the table.

    The measurement table is written complete when the run completes, else beside an earlier complete
    table (``.partial.csv``); ``summary.seconds`` counts from ``started`` (``time.perf_counter()``).
    Ctrl-C raises :class:`BatchInterrupted` holding ``summary``.
    """
    sink = CsvSink(measure) if measure is not None else None
    finished = 0

    def on_result(r: ImageResult) -> None:
        nonlocal finished
        finished += 1
        summary.add(r)
        if r.disk_full and summary.output_error is None:   # every further image would fail the same way
            summary.output_error = f"the disk is full: {r.name}'s labels could not be written ({r.reason})"
        if sink is not None and r.rows:
            sink.write(r.rows)
        if progress is not None:
            progress(r, finished, summary.total)

    interrupt: KeyboardInterrupt | None = None
    ended = False   # False after an unexpected error (e.g. in `progress`): the table is then incomplete
    try:
        for r in missing:
            on_result(r)
        stop = StopWhen(cancel, lambda: summary.output_error is not None)
        completed = run_tasks(tasks, opts, loaded, execution, on_result, stop)
        summary.interrupted = not completed and summary.output_error is None
        ended = completed
    except KeyboardInterrupt as exc:
        summary.interrupted = ended = True
        interrupt = exc
    finally:
        if sink is not None:   # an interrupted or failed run's rows go beside an earlier complete table, not over it
            written = sink.close(complete=ended and not summary.interrupted)
            summary.results_csv = str(written) if written is not None else None
            if sink.error is not None:
                summary.table_error = (f"the measurement table {measure} could not be written: {sink.error}"
                                       + (f"; {sink.lost_rows} lesions' rows not saved" if sink.lost_rows else ""))
        summary.seconds = time.perf_counter() - started
    if interrupt is not None:   # Ctrl-C stops the caller too (a script's loop), with what was done
        raise BatchInterrupted(summary) from interrupt


class StopWhen:
    """A cancel event that is set when the user's ``cancel`` is, or when ``condition()`` holds."""

    def __init__(self, cancel: Any, condition: Callable[[], bool]):
        self.cancel, self.condition = cancel, condition

    def is_set(self) -> bool:
        return self.condition() or (self.cancel is not None and self.cancel.is_set())


def run_tasks(tasks: Sequence[ImageTask], opts: BatchOptions, loaded: Any, execution: Execution,
              on_result: Callable[[ImageResult], None], cancel: Any) -> bool:
    """Run ``tasks`` in this process or on Dask; False when ``cancel`` stopped the run."""
    if execution.local:
        from napari_nevus_seg.batch.local import run_local

        refine_workers = execution.refine_workers
        if refine_workers is None:
            from napari_nevus_seg.batch.refine_pool import auto_refine_workers

            refine_workers = auto_refine_workers(len(tasks), opts.segment.device) if opts.segment.refine else 0
        return run_local(tasks, opts, on_result, model=loaded, readers=execution.readers, cancel=cancel,
                         refine_workers=refine_workers)
    from napari_nevus_seg.batch.cluster import run_on_dask

    return run_on_dask(tasks, opts, on_result, workers=execution.workers, scheduler=execution.scheduler,
                       client=execution.client, threads_per_worker=execution.threads_per_worker, cancel=cancel)


# ---------------------------------------------------------------------------------------- checks
def check_measure_path(measure: str | os.PathLike, tasks: Sequence[ImageTask]) -> None:
    """Refuse (BatchSetupError) a measurement table path that is a folder, an input image or no ``.csv`` file."""
    m = Path(measure)
    if m.is_dir():
        raise BatchSetupError(f"the measurement table {measure} is a folder: give a file name, "
                              f"e.g. {m / 'lesions.csv'}")
    mid = file_id(m)
    if mid is not None and any(file_id(t.source) == mid for t in tasks):
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
