"""Running the per-image batch work on Dask (``dask.distributed``): a local cluster or a scheduler.

Each Dask task is :func:`napari_nevus_seg.batch.work.process_one` (read -> segment -> write ->
measure one image). Workers load the model once per process (cached by path) and use CUDA when they
have a GPU (``device="auto"``). Results stream back with ``as_completed`` while a bounded number of
tasks is in flight, so the client's memory does not grow with the number of images. Input images,
the output folder and the model file must be reachable under the same paths from every worker (a
shared file system), as usual for Dask clusters.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from napari_nevus_seg.batch.errors import BatchSetupError
from napari_nevus_seg.batch.options import BatchOptions
from napari_nevus_seg.batch.spawning import main_module_hidden
from napari_nevus_seg.batch.work import ImageResult, ImageTask, describe_error, needs_work, process_one

CONNECT_TIMEOUT = "15s"
MISSING_DASK = ("Dask is needed for --workers/--scheduler but is not installed: "
                "pip install 'dask[distributed]'  (or, in a checkout of the plugin: pip install -e '.[cluster]')")


@contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None,
                threads_per_worker: int = 1) -> Iterator[Any]:
    """A ``distributed.Client`` on a new local cluster of ``workers`` processes, or on ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BatchSetupError(MISSING_DASK) from exc
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BatchSetupError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None or workers < 1:
        raise BatchSetupError(f"--workers must be at least 1, got {workers}")
    from napari_nevus_seg.model.devices import cpu_cores  # (PyTorch: loaded when a cluster starts)

    # each worker process gets its share of the cores for PyTorch and OpenMP from the start, so that
    # the workers' thread pools do not spin against each other
    share = str(max(1, cpu_cores() // workers))
    # Dask's nannies run in this process and write the workers' thread settings into its environment:
    # put it back, or this process (e.g. napari, after a batch run from its console) would stay at 1 thread
    saved = dict(os.environ)
    try:
        with main_module_hidden():   # the workers start without the caller's script (see spawning)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=max(1, threads_per_worker),
                                   processes=True, dashboard_address=None, silence_logs=logging.ERROR,
                                   env={"NEVUS_SEG_NUM_THREADS": share, "OMP_NUM_THREADS": share})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _cpu_share(n_local: int) -> None:
    """On a local cluster of ``n_local`` worker processes, keep this worker thread on its own CPUs.

    PyTorch would otherwise use every core in every worker and they would fight over them.
    """
    try:
        from distributed import get_worker

        cpus = sorted(os.sched_getaffinity(0))
        index = int(get_worker().name) % n_local
    except Exception:  # noqa: BLE001 - not on Linux, or not a numbered local worker
        return
    share = max(1, len(cpus) // n_local)
    mine = cpus[index * share:(index + 1) * share] or cpus
    if len(mine) < len(cpus):
        os.sched_setaffinity(0, mine)


def _cluster_task(task: ImageTask, opts: BatchOptions, model: Any, n_local: int) -> ImageResult:
    if model is not None:
        opts = opts.with_model(model)
    if n_local > 1:
        _cpu_share(n_local)
    return process_one(task, opts)


def _n_threads(client: Any) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001
        return 1


def run_on_dask(tasks: Sequence[ImageTask], opts: BatchOptions, on_result: Callable[[ImageResult], None],
                workers: int | None = None, scheduler: str | None = None, client: Any = None,
                threads_per_worker: int = 1, cancel: Any = None, max_in_flight: int | None = None) -> bool:
    """Process ``tasks`` on Dask; ``on_result`` receives each result as it arrives. False if cancelled."""
    if client is None:
        with open_client(workers, scheduler, threads_per_worker) as c:
            return _run(c, tasks, opts, on_result, cancel, max_in_flight, n_local=workers or 0)
    return _run(client, tasks, opts, on_result, cancel, max_in_flight, n_local=0)


def _run(client: Any, tasks: Sequence[ImageTask], opts: BatchOptions, on_result, cancel,
         max_in_flight: int | None, n_local: int) -> bool:
    from distributed import as_completed

    from napari_nevus_seg.model.networks import LesionModel

    model_ref = None
    if isinstance(opts.segment.model, LesionModel):   # an in-memory model: send it to every worker once
        model_ref = client.scatter(opts.segment.model, broadcast=True, hash=False)   # a fresh key each run: a
        # content-hashed key released by an earlier run on this client would be lost to this one
        opts = opts.with_model(None)
    limit = max_in_flight or 2 * _n_threads(client) + 1
    todo = iter(tasks)
    owner: dict[Any, ImageTask] = {}
    ac = as_completed()

    def submit_next() -> bool:
        for task in todo:
            existing = needs_work(task, opts)
            if existing is not None and not opts.measure:
                on_result(ImageResult(task.source, task.name, "skipped", str(existing)))
                continue
            fut = client.submit(_cluster_task, task, opts, model_ref, n_local, pure=False)
            owner[fut] = task
            ac.add(fut)
            return True
        return False

    for _ in range(limit):
        if not submit_next():
            break
    completed = True
    try:
        for fut in ac:
            task = owner.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS (out of memory)
                result = ImageResult(task.source, task.name, "failed",
                                     reason=f"on the cluster: {describe_error(exc, task.source)}")
            fut.release()
            for message in result.warnings:   # raised on a worker: shown here, where the user looks
                warnings.warn(message, UserWarning, stacklevel=2)
            on_result(result)
            if cancel is not None and cancel.is_set():
                completed = False
                break
            submit_next()
    except KeyboardInterrupt:
        for fut in list(owner):
            fut.cancel()
        raise
    if not completed:
        for fut in list(owner):
            fut.cancel()
    return completed
