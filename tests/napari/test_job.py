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
