"""The command line's progress display: a tqdm bar on a terminal, plain lines in logs.

On a terminal, tqdm redraws one line in place at most ten times a second. Elsewhere (a log file, a
cluster job's output) the same text is written as a plain line every ``log_every`` seconds, so that
logs stay readable instead of holding one carriage-return-separated line. Both show done/total, the
share done, the speed, the time elapsed, the time left and a note (e.g. the number of failed images).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

#: the line shown, for a bar of ``width`` characters: ``label [####----] 3/8  38% 9.98/s elapsed 00:01
#: eta 00:01 (1 failed)``
BAR_FORMAT = "{{desc}} [{{bar:{width}}}] {{n_fmt}}/{{total_fmt}} {{percentage:3.0f}}%{{speed}} elapsed {{elapsed}}{{eta}}{{note}}"


class _NullFile:
    """Where tqdm's own drawing goes when lines are written by :class:`ProgressBar` instead."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _Bar(tqdm):
    """tqdm with the speed and time left counted from the first step reported (``initial``)."""

    note = ""

    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict
        counted = d["n"] - d["initial"]
        rate = counted / d["elapsed"] if d["elapsed"] > 0 and counted > 0 else 0.0
        d["speed"] = f" {rate:.2f}/s" if rate > 0 else ""
        left = (d["total"] - d["n"]) / rate if rate > 0 and d["total"] and d["n"] < d["total"] else None
        d["eta"] = f" eta {self.format_interval(left)}" if left is not None else ""
        d["note"] = f" {self.note}" if self.note else ""
        return d


class ProgressBar:
    """A progress display on ``stream`` (default stderr): ``update(done, total, note)``, then ``close()``.

    Parameters
    ----------
    label
        Shown before the bar.
    stream
        Where the display goes (default ``sys.stderr``).
    enabled
        False shows nothing.
    log_every
        Seconds between lines when ``stream`` is no terminal (the last step is always written).
    width
        Characters of the bar itself.
    timed_from_first_update
        The bar is made when the first step is already done (training's progress reports): its speed
        counts the steps after the first update, from the time of that update.
    """

    def __init__(self, label: str = "", stream: TextIO | None = None, enabled: bool = True,
                 log_every: float = 30.0, width: int = 28, timed_from_first_update: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.width = width
        self.timed_from_first_update = timed_from_first_update
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._bar: _Bar | None = None

    def _start(self, done: int, total: int) -> _Bar:
        if self._bar is None:
            drawn = self.enabled and self.tty
            self._bar = _Bar(total=total, initial=done if self.timed_from_first_update else 0, desc=self.label,
                             file=self.stream if drawn else _NullFile(), bar_format=BAR_FORMAT.format(width=self.width),
                             ascii="-#", mininterval=0.1, miniters=0, leave=True)
            if not self.timed_from_first_update:   # timed from when the bar was made
                self._bar.start_t -= time.perf_counter() - self.t0
        return self._bar

    def line(self, done: int, total: int, note: str = "") -> str:
        """The text the display shows for ``done`` of ``total`` steps."""
        bar = self._start(done, total)
        bar.total, bar.n, bar.note = total, done, note
        return str(bar).rstrip()

    def update(self, done: int, total: int, note: str = "") -> None:
        """Show that ``done`` of ``total`` steps are done, with ``note`` after the numbers."""
        bar = self._start(done, total)
        if not self.enabled:
            return
        final = done >= total
        if self.tty:
            bar.total, bar.note = total, note
            bar.update(done - bar.n)
            if final:
                bar.refresh()
            return
        now = time.perf_counter()
        if final or now - self._last >= self.log_every:
            self.stream.write(self.line(done, total, note) + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        """End the display (on a terminal: the line stays, and the cursor goes to the next one)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
