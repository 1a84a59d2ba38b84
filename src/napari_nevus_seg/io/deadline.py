"""A time limit for the work on one image: the work checks it between its steps and gives up when it is spent.

A :class:`Deadline` holds a budget of seconds that is charged only while the image is being worked on
(:meth:`Deadline.running`), so that time an image spends waiting in a pipeline's queue behind another
image is not counted against it. Code that runs in steps (the network's windows, the upsampling's
bands, the measurement's lesions) calls :func:`check_deadline` between steps; it raises
:class:`TimeLimitExceeded` once the budget is spent. A step is never interrupted, so an image stops at
most one step after its limit; the steps are bounded (at most 16 network windows, bands of a few
megapixels, one lesion), which keeps that overrun short.

The deadline of the work in progress is a context variable: the batch code sets it around a stage
(``with deadline.running():``) and the functions deeper down (:func:`~napari_nevus_seg.inference.pipeline.segment`)
check it without taking a parameter. Outside such a block :func:`check_deadline` does nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["Deadline", "TimeLimitExceeded", "check_deadline", "check_time_limit"]

MAX_TIME_LIMIT_S = 7 * 24 * 3600.0   # a week: larger values are almost certainly a unit mistake


class TimeLimitExceeded(RuntimeError):
    """The work on one image ran past its time limit (the image is reported as failed)."""


class Deadline:
    """A budget of ``seconds`` for one image (None: no limit), charged only inside :meth:`running` blocks.

    It also behaves as a cancel event (``is_set()``), so it can be passed where a function takes one
    (:func:`~napari_nevus_seg.measurements.table.measure`).
    """

    def __init__(self, seconds: float | None):
        self.limit = float("inf") if seconds is None else float(seconds)
        self.spent = 0.0
        self._since: float | None = None

    def elapsed(self) -> float:
        """Seconds charged so far (including the current :meth:`running` block)."""
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.spent + running

    def is_set(self) -> bool:
        """True once the budget is spent."""
        return self.elapsed() > self.limit

    def check(self, step: str = "") -> None:
        """Raise :class:`TimeLimitExceeded` (naming ``step``) if the budget is spent."""
        if self.is_set():
            where = f" ({step})" if step else ""
            raise TimeLimitExceeded(f"time limit of {self.limit:g} s exceeded{where}")

    @contextlib.contextmanager
    def running(self) -> Iterator[Deadline]:
        """Charge the time spent in this block, and make this deadline the one :func:`check_deadline` sees."""
        token = _CURRENT.set(self)
        self._since = time.monotonic()
        try:
            yield self
        finally:
            self.spent += time.monotonic() - self._since
            self._since = None
            _CURRENT.reset(token)


_CURRENT: ContextVar[Deadline | None] = ContextVar("nevus_seg_deadline", default=None)


def check_deadline(step: str = "") -> None:
    """Raise :class:`TimeLimitExceeded` if the deadline of the work in progress is spent (else nothing)."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.check(step)


def check_time_limit(seconds) -> float | None:
    """``seconds`` as a float (None: no limit); TypeError for a value that is no number, ValueError for one out of range."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"time limit must be a number of seconds, not {seconds!r}")
    value = float(seconds)
    if not 0.0 < value <= MAX_TIME_LIMIT_S:
        raise ValueError(f"time limit must be more than 0 and at most {MAX_TIME_LIMIT_S:g} s (a week), "
                         f"not {seconds!r}")
    return value
