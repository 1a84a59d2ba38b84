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


def test_a_script_that_ends_during_a_run_exits_cleanly_and_its_work_was_cancelled(tmp_path):
    # (also when the widget, and with it the job, was removed first: the work's token is held until it returns)
    # a script that closed its viewer during a Segment run and ended was aborted by Qt ("wrapped C/C++ object
    # of type _ProgressBridge has been deleted", exit status 134): closing the viewer sets the token, but the
    # work went on to its next check while the interpreter tore down the Qt objects it reports to
    from subprocess_helpers import run_script

    flag = tmp_path / "stopped"
    code = ("import time, napari\n"
            "from qtpy.QtWidgets import QApplication, QWidget\n"
            "from napari_nevus_seg._napari._job import BackgroundJob\n"
            "viewer = napari.Viewer(show=False)\n"
            "widget = QWidget()\n"
            "job = BackgroundJob(widget, 'Test', run_button=None, cancel_button=None, status=None,\n"
            "                    on_result=lambda target, value: None)\n"
            "def work(cancel, progress):\n"
            "    while not cancel.is_set():\n"
            "        progress({'step': 1, 'steps': 2})\n"
            "        time.sleep(0.01)\n"
            "    time.sleep(1.0)\n"                            # a step that does not look at the token
            "    progress({'step': 2, 'steps': 2})\n"
            f"    open({str(flag)!r}, 'w').write('cancelled')\n"
            "job.start(work)\n"
            "widget.deleteLater()\n"                         # the dock removed: the job goes with it
            "del job, widget\n"
            "t0 = time.time()\n"
            "while time.time() - t0 < 0.5:\n"
            "    QApplication.processEvents()\n"
            "viewer.close()\n"
            "print('end of script', flush=True)\n")
    out = run_script(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "end of script"
    assert flag.read_text() == "cancelled"
    assert "waiting up to 30 s for 1 background job(s) to stop" in out.stderr
