"""A small progress display for the command line (no dependency).

On a terminal: one line redrawn in place (``\\r``) at most ten times a second. Elsewhere (a log
file, a cluster job's output): a plain line every ``log_every`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """``update(done, total, note)``; ``close()`` ends the line."""

    def __init__(self, label: str = "", stream: TextIO | None = None, enabled: bool = True,
                 log_every: float = 30.0, width: int = 28, timed_from_first_update: bool = False):
        """``timed_from_first_update``: the bar is made when the first step is already done (training's
        progress reports): its rate counts the steps after that one, from the time it was reported."""
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.width = width
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._drawn = False
        self._done0: int | None = None if timed_from_first_update else 0

    def line(self, done: int, total: int, note: str = "") -> str:
        self._start(done)
        elapsed = time.perf_counter() - self.t0
        frac = done / total if total else 1.0
        fill = int(round(frac * self.width))
        counted = done - self._done0
        rate = counted / elapsed if elapsed > 0 and counted > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        bar = "#" * fill + "-" * (self.width - fill)
        speed = f" {rate:.2f}/s" if rate > 0 else ""
        text = f"{self.label} [{bar}] {done}/{total} {frac:4.0%}{speed} elapsed {_fmt_time(elapsed)}"
        if done < total and rate > 0:
            text += f" eta {_fmt_time(eta)}"
        return f"{text} {note}".rstrip()

    def _start(self, done: int) -> None:
        if self._done0 is None:   # the first report of a bar timed from it: no rate yet
            self._done0, self.t0 = done, time.perf_counter()

    def update(self, done: int, total: int, note: str = "") -> None:
        self._start(done)
        if not self.enabled:
            return
        now = time.perf_counter()
        final = done >= total
        if self.tty:
            if final or now - self._last >= 0.1:
                self.stream.write("\r\x1b[2K" + self.line(done, total, note))
                self.stream.flush()
                self._drawn = True
                self._last = now
        elif final or now - self._last >= self.log_every:
            self.stream.write(self.line(done, total, note) + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
