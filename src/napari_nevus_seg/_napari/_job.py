"""One way for the dock widgets to run work in the background: :class:`BackgroundJob`.

A widget makes one :class:`BackgroundJob` and calls :meth:`BackgroundJob.start` with a plain function
and the layer the work is for. The function runs in a napari thread worker
(:func:`napari.qt.threading.create_worker`) and is called as ``func(*args, cancel=token, progress=report,
**kwargs)``:

- ``cancel`` is a :class:`CancelToken` (``is_set()``), the token the API's loops poll
  (:func:`~napari_nevus_seg.measure`, :func:`~napari_nevus_seg.training.finetune.fine_tune`); a function
  that checks it itself raises :class:`JobCancelled`;
- ``progress`` takes a dict from the worker thread (``step``, ``steps`` and an optional ``text``, or the
  API's own progress dicts) and hands it to the GUI thread, where a napari progress bar shows it.

The job enables the widget's start and Cancel buttons while it runs, stops the work when the Cancel
button is pressed, when napari quits the worker (its window closes) and when the widget is removed from
its dock or closed, reports an error one way (a napari notification and the widget's status label), and
hands the result to ``on_result(target, value)`` with the layer it was computed for. Callbacks arriving
after the widget's Qt object was deleted are dropped. A script that ends while a job runs (without
``napari.run()``, whose exit asks workers to quit) has its work cancelled and awaited at interpreter exit,
also where the widget was removed meanwhile.
"""

from __future__ import annotations

import atexit
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject, QThreadPool, Signal
from qtpy.QtWidgets import QLabel, QPushButton, QWidget

#: how long the interpreter's exit waits for cancelled jobs to stop
EXIT_WAIT_S = 30.0
#: the cancel tokens of the work running now, held until the work returns (its widget and job may be gone)
_running: set[CancelToken] = set()


class JobCancelled(Exception):
    """Raised by a job's function that noticed its :class:`CancelToken` was set."""


class CancelToken:
    """The cancel flag handed to a job's function: set by Cancel, by removing the widget, or by napari.

    ``is_set()`` is also true once napari asked the worker to quit (``worker.quit()``, e.g. when the
    viewer's window closes), which a plain function never sees otherwise.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.worker: Any = None

    def set(self) -> None:
        """Ask the work to stop at its next check."""
        self._event.set()

    def is_set(self) -> bool:
        """Whether the work was asked to stop."""
        return self._event.is_set() or bool(getattr(self.worker, "abort_requested", False))

    def raise_if_set(self, message: str = "cancelled") -> None:
        """Raise :class:`JobCancelled` when the work was asked to stop."""
        if self.is_set():
            raise JobCancelled(message)


def qt_deleted(widget: QObject) -> bool:
    """Whether a widget's Qt object is gone (its dock or the viewer's window was closed)."""
    try:
        widget.objectName()
    except RuntimeError:   # "wrapped C/C++ object ... has been deleted"
        return True
    return False


def layer_name(target: Any) -> str:
    """The name of the layer a job is for (``repr``-quoted), or an empty string without one."""
    name = getattr(target, "name", None)
    return f" for {name!r}" if name is not None else ""


class _ProgressBridge(QObject):
    """Carries progress dicts from the worker thread to the GUI thread.

    It has no Qt parent and the worker's ``progress`` callback holds it, so that it outlives a widget
    deleted while its work still runs (emitting on a deleted object from another thread would crash).
    """

    changed = Signal(object)

    def emit(self, d: Any) -> None:
        self.changed.emit(d)


class _Call:
    """``func(*args, **kwargs)``, holding its arguments only until :meth:`release`: napari's activity list
    keeps every worker it was shown (its Cancel callback), so a worker must not keep the images it was given."""

    def __init__(self, func: Callable, args: tuple, kwargs: dict) -> None:
        self.func, self.args, self.kwargs = func, args, kwargs

    def __call__(self, **more: Any) -> Any:
        token = more.get("cancel")
        _running.add(token)
        try:
            return self.func(*self.args, **self.kwargs, **more)
        finally:
            _running.discard(token)

    def __repr__(self) -> str:   # napari's activity list names the task by it
        return repr(self.func)

    def release(self) -> None:
        self.args, self.kwargs = (), {}


class BackgroundJob(QObject):
    """Runs one function at a time in a napari thread worker on behalf of ``widget``.

    Parameters
    ----------
    widget
        The dock widget; the job stops its work when the widget is removed from its dock or closed.
    title
        The widget's name in messages ("Measure lesions").
    run_button, cancel_button
        Disabled / enabled while the job runs; the Cancel button's ``clicked`` is connected to :meth:`cancel`.
    status
        The label that shows "Cancelling…", the error of a failed run and the text of a cancelled one.
    on_result
        ``on_result(target, value)`` in the GUI thread with the function's return value.
    on_cancelled
        ``on_cancelled(target) -> str``: the status text of a cancelled run (default "Cancelled").
    on_progress
        ``on_progress(d, pbar)`` for each progress dict; without it, ``step``, ``steps`` and ``text``
        of the dict move the progress bar.
    on_finished
        ``on_finished(outcome)`` once the run is over and the buttons are enabled again, with outcome
        ``"ok"``, ``"cancelled"`` or ``"error"``.
    """

    def __init__(self, widget: QWidget, title: str, *, run_button: QPushButton | None,
                 cancel_button: QPushButton | None, status: QLabel | None,
                 on_result: Callable[[Any, Any], None],
                 on_cancelled: Callable[[Any], str] | None = None,
                 on_progress: Callable[[dict, Any], None] | None = None,
                 on_finished: Callable[[str], None] | None = None):
        super().__init__(widget)
        self.widget, self.title = widget, title
        self.run_button, self.cancel_button, self.status = run_button, cancel_button, status
        self.on_result, self.on_cancelled = on_result, on_cancelled
        self.on_progress, self.on_finished = on_progress, on_finished
        self._in_progress = False
        self._deferred: list[tuple[Callable, tuple]] = []
        self.worker = None
        self.pbar = None
        self.target: Any = None
        self.token = CancelToken()
        self.outcome: str | None = None   # of the last run: "ok", "cancelled" or "error"
        self._desc = ""
        self._bridge: _ProgressBridge | None = None
        self._call = _Call(lambda **_: None, (), {})
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(self.cancel)
        widget.installEventFilter(self)

    @property
    def running(self) -> bool:
        """Whether a run is going on."""
        return self.worker is not None

    def start(self, func: Callable, *args: Any, target: Any = None, desc: str = "", **kwargs: Any):
        """Run ``func(*args, cancel=token, progress=report, **kwargs)`` in a worker thread.

        ``target`` is the layer the work is for (handed back to ``on_result``); ``desc`` the progress
        bar's and the status label's text. Returns the worker, or None when a run is going on already.
        """
        if inspect.isgeneratorfunction(func):
            raise TypeError(f"BackgroundJob runs plain functions, not generator functions ({func.__name__})")
        if self.worker is not None:
            show_info(f"{self.title}: already running")
            return None
        self.token = CancelToken()
        self.target, self.outcome, self._desc = target, None, desc
        self._bridge = _ProgressBridge()
        self._bridge.changed.connect(self._on_progress)
        self._call = _Call(func, args, kwargs)
        worker = create_worker(self._call, cancel=self.token, progress=self._bridge.emit,
                               _start_thread=False, _ignore_errors=True)
        self.token.worker = worker
        self.worker = worker
        self.pbar = napari_progress(total=0, desc=desc or self.title)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._set_buttons(running=True)
        if self.status is not None and desc:
            self.status.setText(f"{desc}…")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running work to stop at its next check; its result, if any, is dropped."""
        if self.worker is None:
            return
        self.token.set()
        if not qt_deleted(self.widget) and self.status is not None:
            self._safely(self.status.setText, "Cancelling…")

    # ------------------------------------------------------------------------------ Qt plumbing
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt name
        """Cancel the work when the widget is closed or taken out of its dock (no ``closeEvent`` then)."""
        if obj is self.widget and self.worker is not None:
            kind = event.type()
            if kind == QEvent.Type.Close or (kind == QEvent.Type.ParentChange and obj.parent() is None):
                self.cancel()
        return False

    def _safely(self, func: Callable, *args: Any) -> Any:
        """Call ``func`` unless the widget is gone; a deletion while it runs is no error."""
        if qt_deleted(self.widget):
            return None
        try:
            return func(*args)
        except RuntimeError:
            if qt_deleted(self.widget) or (self.status is not None and qt_deleted(self.status)):
                return None
            raise

    def _set_buttons(self, running: bool) -> None:
        if self.run_button is not None:
            self.run_button.setEnabled(not running)
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(running)

    def _on_progress(self, d: dict) -> None:
        pbar = self.pbar   # napari may process events (and end the run) while the bar redraws
        if pbar is None or not isinstance(d, dict):
            return
        self._in_progress = True
        try:
            if self.on_progress is not None:
                self._safely(self.on_progress, d, pbar)
                return
            if "steps" in d:
                pbar.total = int(d["steps"])
                pbar.n = int(d.get("step", 0))
            if d.get("text"):
                pbar.set_description(f"{self._desc}: {d['text']}" if self._desc else str(d["text"]))
            pbar.refresh()
        finally:
            self._in_progress = False
            # the run's end, delivered while the bar redrew, comes after this update (else the update
            # would overwrite the final status, e.g. "Cancelled" with "step 2/2400")
            while self._deferred:
                func, args = self._deferred.pop(0)
                func(*args)

    def _later(self, func: Callable, *args: Any) -> bool:
        """Queue ``func(*args)`` after the progress update being handled; False when none is."""
        if getattr(self, "_in_progress", False):
            self._deferred.append((func, args))
            return True
        return False

    def _on_returned(self, value: Any) -> None:
        if self._later(self._on_returned, value):
            return
        if self.token.is_set():
            self.outcome = "cancelled"
            return
        self.outcome = "ok"
        self._safely(self.on_result, self.target, value)

    def _on_errored(self, exc: BaseException) -> None:
        if self._later(self._on_errored, exc):
            return
        if self.token.is_set() or isinstance(exc, JobCancelled):
            self.outcome = "cancelled"
            return
        self.outcome = "error"
        show_error(f"{self.title} failed{layer_name(self.target)}: {exc}")
        if self.status is not None:
            self._safely(self.status.setText, f"Failed: {exc}")

    def _on_finished(self) -> None:
        if self._later(self._on_finished):
            return
        if self.outcome is None:   # napari quit the worker: no result, no error
            self.outcome = "cancelled"
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
        self.worker = None
        target, self.target = self.target, None   # a layer closed since may go, with its pixels:
        self._call.release()                       # nothing of this run keeps them
        self.token.worker = None
        if qt_deleted(self.widget):   # closed with the viewer
            return
        if self.outcome == "cancelled":
            text = (self._safely(self.on_cancelled, target) if self.on_cancelled is not None else None) \
                or "Cancelled"
            show_info(f"{self.title}: {text}")
            if self.status is not None:
                self._safely(self.status.setText, text)
        self._safely(self._set_buttons, False)
        if self.on_finished is not None:
            self._safely(self.on_finished, self.outcome)


@atexit.register
def _stop_jobs_at_exit() -> None:
    """Cancel the work still running when the interpreter exits and wait for its threads (at most
    :data:`EXIT_WAIT_S`, saying so on stderr).

    A worker thread still running while Python tears down its Qt objects emits on deleted ones and aborts the
    process (seen with a script that closed its viewer during a run and ended); ``napari.run()`` avoids it
    by asking every worker to quit when its application quits, a script without it did not. Work that does
    not look at its token within the wait (one long computation) still ends that way.
    """
    running = list(_running.copy())   # (a worker may finish meanwhile)
    if not running:
        return
    for token in running:
        token.set()
    print(f"napari-nevus-seg: waiting up to {EXIT_WAIT_S:.0f} s for {len(running)} background job(s) to stop",
          file=sys.stderr, flush=True)
    QThreadPool.globalInstance().waitForDone(int(EXIT_WAIT_S * 1000))
