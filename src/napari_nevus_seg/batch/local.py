"""The in-process batch pipeline: reader threads -> inference in the calling thread -> a writer thread.

- Reader threads decode the next images (JPEG/PNG decoders release the GIL) while the network runs.
- The calling thread runs the network (PyTorch uses every core, or the GPU).
- With ``refine_workers``, worker processes refine the outlines (:mod:`napari_nevus_seg.batch.refine_pool`)
  while the network runs on the next images.
- A writer thread writes the label files (atomically) and measures the lesions.

Memory stays bounded whatever the number of images: at most ``readers + 1`` images are decoded
ahead, at most ``queue_size`` wait for the writer, and a pixel budget (:data:`IN_FLIGHT_PIXELS`)
caps the pixels of all images in flight together, so that very large images (6000x4000 and more)
go through one at a time instead of adding up their memory peaks.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from napari_nevus_seg.batch.options import BatchOptions
from napari_nevus_seg.batch.refine_pool import PendingLabels, RefinePool
from napari_nevus_seg.batch.work import (
    ImageResult,
    ImageTask,
    describe_error,
    failed_result,
    infer_stage,
    measure_rows,
    needs_work,
    read_output,
    read_stage,
    resolve_model,
    write_stage,
)
from napari_nevus_seg.io.text import about

IN_FLIGHT_PIXELS = 16_000_000   # pixels of all images decoded and not yet written, together


class PixelBudget:
    """A weighted semaphore over pixels; one image larger than the whole budget may run alone."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, pixels: int, block: bool = True) -> bool:
        with self._cond:
            while not (self.used == 0 or self.used + pixels <= self.capacity):
                if not block:
                    return False
                self._cond.wait()
            self.used += pixels
            return True

    def release(self, pixels: int) -> None:
        with self._cond:
            self.used -= pixels
            self._cond.notify_all()


def header_pixels(path: str) -> int:
    """Pixel count read from the file header only (0 when unknown: decoding will say what is wrong)."""
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                return int(shape[0]) * int(shape[1]) if len(shape) >= 2 else 0
        from PIL import Image

        with Image.open(path) as im:
            return int(im.size[0]) * int(im.size[1])
    except Exception:  # noqa: BLE001
        return 0


def _read_task(task: ImageTask, opts: BatchOptions):
    """Reader thread: decode the image; for an image finished earlier, read its labels too."""
    t0 = time.perf_counter()
    deadline = opts.deadline()
    try:
        existing = needs_work(task, opts)
        with about(task.name), deadline.running():
            img, scale = read_stage(task, opts)
            labels = read_output(existing) if existing is not None else None
            deadline.check("after reading the image")
        return t0, deadline, img, scale, existing, labels, None
    except Exception as exc:  # noqa: BLE001 - reported per image
        return t0, deadline, None, None, None, None, exc


def _writer(jobs: queue.Queue, results: queue.SimpleQueue, opts: BatchOptions, budget: PixelBudget) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        task, labels, img, scale, t0, deadline, existing, pixels = job
        try:
            if isinstance(labels, PendingLabels):
                with about(task.name):   # its wait in the pool's queue is not charged to the image (nor the
                    labels = labels.result()   # refinement itself: bounded work on at most 384 px)
            with about(task.name), deadline.running():
                deadline.check("after the outline refinement")
                if existing is not None:     # finished earlier: measure only
                    rows = measure_rows(labels, img, task, scale, opts)
                else:
                    out, rows = write_stage(labels, img, scale, task, opts)
            if existing is not None:
                result = ImageResult(task.source, task.name, "skipped", str(existing), rows=rows,
                                     pixel_size_from=scale.source)
            else:
                result = ImageResult(task.source, task.name, "done", str(out), n_lesions=int(labels.max(initial=0)),
                                     rows=rows, pixel_size_from=scale.source)
        except Exception as exc:  # noqa: BLE001 - MemoryError included
            result = failed_result(task, exc)
        del job, labels, img
        budget.release(pixels)
        result.seconds = time.perf_counter() - t0
        results.put(result)


def run_local(tasks: Sequence[ImageTask], opts: BatchOptions, on_result: Callable[[ImageResult], None],
              model=None, readers: int = 2, queue_size: int = 2, cancel: Any = None,
              max_pixels: int | None = None, refine_workers: int = 0) -> bool:
    """Process ``tasks`` in this process; ``on_result`` is called here for each image. False if cancelled.

    ``refine_workers`` > 0 (with ``opts.segment.refine``): that many processes refine the outlines, and PyTorch
    on the CPU keeps to the remaining cores.
    """
    model = model if model is not None else resolve_model(opts.segment.model)
    if not (opts.segment.refine and refine_workers > 0):
        return _run(tasks, opts, on_result, model, readers, queue_size, cancel, max_pixels, None)
    from napari_nevus_seg.model.devices import cpu_cores, cpu_threads_capped, resolve_device

    on_cpu = resolve_device(opts.segment.device).type == "cpu"
    refiner = RefinePool(refine_workers)
    try:
        with cpu_threads_capped(max(1, cpu_cores() - refine_workers)) if on_cpu else contextlib.nullcontext():
            return _run(tasks, opts, on_result, model, readers, max(queue_size, refine_workers + 1), cancel,
                        max_pixels, refiner)
    finally:
        refiner.close()


def _run(tasks, opts, on_result, model, readers, queue_size, cancel, max_pixels, refiner) -> bool:
    readers = max(1, readers)
    budget = PixelBudget(max_pixels or IN_FLIGHT_PIXELS)
    results: queue.SimpleQueue = queue.SimpleQueue()
    jobs: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
    writer = threading.Thread(target=_writer, args=(jobs, results, opts, budget), name="nevus-seg-writer",
                              daemon=True)
    writer.start()
    pending: deque = deque()      # (task, future, pixels) in input order
    todo = iter(tasks)
    waiting: list = []            # a task whose pixels did not fit the budget yet
    completed = True

    def drain() -> None:
        while True:
            try:
                on_result(results.get_nowait())
            except queue.Empty:
                return

    def submit_next(block: bool) -> bool:
        """Start reading the next task if the budget allows (blocking only when nothing is pending)."""
        while True:
            if not waiting:
                task = next(todo, None)
                if task is None:
                    return False
                existing = needs_work(task, opts)
                if existing is not None and not opts.measure:
                    results.put(ImageResult(task.source, task.name, "skipped", str(existing)))
                    continue
                waiting.append((task, header_pixels(task.source)))
            task, pixels = waiting[0]
            if not budget.acquire(pixels, block=block):
                return False
            waiting.clear()
            pending.append((task, pool.submit(_read_task, task, opts), pixels))
            return True

    with ThreadPoolExecutor(readers, thread_name_prefix="nevus-seg-reader") as pool:
        try:
            while True:
                while len(pending) <= readers and submit_next(block=False):
                    pass
                drain()
                if cancel is not None and cancel.is_set():
                    completed = False
                    break
                if not pending and not submit_next(block=True):
                    break
                task, fut, pixels = pending.popleft()
                t0, deadline, img, scale, existing, labels, err = fut.result()
                if err is None and existing is None:
                    try:
                        with about(task.name), deadline.running():
                            if refiner is not None and img.ndim == 3:
                                labels = refiner.submit(img, opts, model)
                            else:
                                labels = infer_stage(img, opts, model)
                                deadline.check("after the segmentation")
                    except Exception as exc:  # noqa: BLE001 - MemoryError included
                        err = exc
                if err is not None:
                    budget.release(pixels)
                    results.put(ImageResult(task.source, task.name, "failed", reason=describe_error(err, task.source),
                                            seconds=time.perf_counter() - t0))
                else:
                    jobs.put((task, labels, img if opts.measure else None, scale, t0, deadline, existing, pixels))
                del img, labels, fut
        except KeyboardInterrupt:   # the images finished so far are still written (finally), then it goes on up
            completed = False
            raise
        finally:
            for _, fut, _ in pending:
                fut.cancel()
            jobs.put(None)
            writer.join()
            drain()
    return completed
