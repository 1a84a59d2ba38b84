"""BackgroundJob, the one way the widgets run work: the final status survives a late progress update."""

from __future__ import annotations

import time

import pytest
from qtpy.QtWidgets import QApplication, QLabel, QWidget

from napari_nevus_seg._napari._job import BackgroundJob

pytestmark = pytest.mark.gui


def test_the_end_of_a_run_delivered_during_a_progress_redraw_is_not_overwritten(qtbot):
    widget, status = QWidget(), QLabel()
    qtbot.addWidget(widget)

    def on_progress(d, pbar):
        time.sleep(0.5)                  # the worker ends meanwhile
        QApplication.processEvents()     # as napari's progress bar may do while it redraws
        status.setText(f"step {d['step']}/{d['steps']}")

    job = BackgroundJob(widget, "Test", run_button=None, cancel_button=None, status=status,
                        on_result=lambda target, value: status.setText("done"),
                        on_cancelled=lambda target: "cancelled: nothing changed", on_progress=on_progress)

    def work(cancel, progress):
        progress({"step": 1, "steps": 2})
        return 42

    assert job.start(work) is not None
    job.cancel()
    qtbot.waitUntil(lambda: job.worker is None, timeout=10_000)
    qtbot.wait(100)
    assert job.outcome == "cancelled"
    assert status.text() == "cancelled: nothing changed"


def test_a_run_keeps_neither_its_arguments_nor_its_layer_and_names_its_function(qtbot):
    """napari's activity list keeps every worker: once a run ends, the job and its worker hold neither the
    arrays it was given nor the layer it was for; the activity list names the function; a generator
    function (which napari would run differently) is refused."""
    import gc
    import weakref

    import numpy as np

    widget, status = QWidget(), QLabel()
    qtbot.addWidget(widget)
    results = []
    job = BackgroundJob(widget, "Test", run_button=None, cancel_button=None, status=status,
                        on_result=lambda target, value: results.append((target.shape, value)))

    def total(pixels, cancel, progress):
        return int(pixels.sum())

    pixels, layer = np.ones((64, 64), np.uint8), np.zeros((4, 4))
    gone, layer_gone = weakref.ref(pixels), weakref.ref(layer)
    worker = job.start(total, pixels, target=layer)
    assert "total" in repr(worker._func)            # what napari names the task by, not "<_Call object>"
    del pixels, layer
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    gc.collect()
    assert results == [((4, 4), 4096)] and gone() is None and layer_gone() is None

    def steps(cancel, progress):
        yield 1

    with pytest.raises(TypeError, match="generator"):
        job.start(steps)
    assert not job.running
