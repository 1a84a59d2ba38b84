"""Outline refinement in worker processes, beside the network, for the in-process batch pipeline.

The refinement (:mod:`napari_nevus_seg.inference.refine`) is NumPy/SciPy work that holds Python's GIL, so in
one process it runs on one core while the network waits. Here the calling thread runs the network
and sends the refinement's small inputs (image and map on the <= 384 px work grid, under 1 MB) to a
pool of worker processes; the writer thread collects each result and builds the full-resolution
labels. The labels are identical to those of :func:`napari_nevus_seg.inference.pipeline.segment`.

Worker processes are started with ``spawn`` (never ``fork``: the parent runs PyTorch's thread pools),
and PyTorch in the parent is kept to the cores the workers leave free (its idle threads spin and
would otherwise take those cores). They are started without the caller's main module
(:mod:`napari_nevus_seg.batch.spawning`), so scripts without an ``if __name__ == "__main__":`` guard work.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from napari_nevus_seg.batch.spawning import main_module_hidden

MIN_TASKS = 16   # fewer images than this: refinement stays in the calling thread (worker start-up ~0.3 s)


def auto_refine_workers(n_tasks: int, device: str) -> int:
    """Refinement processes for a run of ``n_tasks`` images: half the cores on CPU, all but one on a GPU.

    0 (refine in the calling thread) for short runs, single-core machines and daemonic processes.
    """
    from napari_nevus_seg.model.devices import cpu_cores, resolve_device

    cores = cpu_cores()
    if n_tasks < MIN_TASKS or cores < 2 or multiprocessing.current_process().daemon:
        return 0   # (a daemonic process, e.g. a multiprocessing.Pool worker, may not start processes)
    return max(1, cores // 2) if resolve_device(device).type == "cpu" else cores - 1


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"   # the refinement is single-threaded NumPy/SciPy
    # Ctrl-C, and SIGTERM sent to the whole job (a batch system's time limit, `kill -- -PGID`), are the
    # parent's to handle: it stops reading new images and lets the refinements in flight finish and be
    # written, instead of every worker dying with a traceback and those images failing
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # and a worker leaves when its parent is gone, however it ended (SIGKILL, the OOM killer, a parent
    # that did not handle SIGTERM): it would otherwise wait for work for ever
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True).start()


def _exit_with_parent(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _warm_up() -> None:
    from napari_nevus_seg.inference import refine  # noqa: F401 - the import (NumPy, SciPy; no PyTorch) is most of a worker's start-up


class PendingLabels:
    """Labels being refined in a worker process; :meth:`result` waits and returns them."""

    def __init__(self, future: Future, plane: np.ndarray, opts: Any, model: Any):
        self.future, self.plane, self.opts, self.model = future, plane, opts, model

    def result(self) -> np.ndarray:
        """The labels; the zoomed second look at small lesions (when chosen) runs here, in the caller's thread."""
        from napari_nevus_seg.batch.work import compact_labels
        from napari_nevus_seg.inference.pipeline import labels_from_refined, zoom_labels

        seg = self.opts.segment
        labels = labels_from_refined(self.future.result(), self.plane.shape[:2], seg.min_size,
                                     largest_only=seg.largest_only)
        if seg.zoom_small:
            labels = zoom_labels(self.plane, labels, self.model, seg)
        self.plane = None
        return compact_labels(labels)


class RefinePool:
    """A pool of ``workers`` processes refining outlines; :meth:`submit` runs the network here."""

    def __init__(self, workers: int):
        with main_module_hidden():
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker)
            # start every worker now, while the first images are read: each submit starts one process
            # (no worker is idle before its start-up is over), so none is started later with __main__
            for _ in range(workers):
                self._pool.submit(_warm_up)

    def submit(self, img: np.ndarray, opts: Any, model: Any) -> PendingLabels:
        from napari_nevus_seg.inference.pipeline import network_map
        from napari_nevus_seg.inference.refine import refine_inputs, refine_outline

        seg = opts.segment
        plane, prob_small = network_map(img, model=model, device=seg.device, tta=seg.tta, convention=seg.convention)
        small, prob, work_min = refine_inputs(plane, prob_small, seg.min_size)
        future = self._pool.submit(refine_outline, small, prob, seg.threshold, work_min, seg.largest_only)
        return PendingLabels(future, plane, opts, model)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
