"""Record the warnings one piece of work raises, also when several threads work at once.

``warnings.catch_warnings(record=True)`` swaps process-wide state (``warnings.showwarning`` and the
filters) on entry and puts back what it saw on exit. Two threads that overlap therefore undo each other:
when the first leaves, the second's warnings go to the log instead of its result, and when the second
leaves it puts back the *first* one's recorder, so every later warning in the process is appended to a
list nobody reads (silently lost). That happens with a Dask worker of several threads, each running
:func:`napari_nevus_seg.batch.work.process_one`.

:func:`recorded_warnings` instead installs one dispatcher for as long as any thread records (a count under
a lock): each warning goes to the innermost recorder of the thread that raised it, and a warning raised
where nothing records goes where it would have gone without this module. While any thread records, the
filter is "always" (each image's warnings are recorded, not only the first of a kind in the process).

Limit: other code that swaps ``warnings.showwarning`` meanwhile (a library's own ``catch_warnings``
in another thread) can still divert some warnings to the log for a moment; none is swallowed, since the
dispatcher passes on whatever it cannot attribute. No Qt or napari here.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

_LOCK = threading.Lock()
_LOCAL = threading.local()
#: recorders in use, the catch_warnings that restores the state of before, and where unrecorded warnings go
_STATE: dict = {"active": 0, "saved": None, "passthrough": warnings.showwarning}


def _recorders() -> list[list[warnings.WarningMessage]]:
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


def _dispatch(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` while recording: to this thread's innermost recorder, else passed on."""
    stack = _recorders()
    if stack:
        stack[-1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        return
    original = _STATE["passthrough"]
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    if original is getattr(warnings, "_showwarning_orig", None) and impl is not None:
        # showwarning was not replaced before: what warnings does then (also inside someone else's
        # catch_warnings(record=True), e.g. pytest's, whose list this reaches)
        impl(warnings.WarningMessage(message, category, filename, lineno, file, line))
    else:
        original(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Context manager: yields the list that receives the warnings this thread raises inside it.

    Thread-safe (see the module's docstring); nested uses in one thread record into the innermost list.
    """
    caught: list[warnings.WarningMessage] = []
    with _LOCK:
        if _STATE["active"] == 0:
            saved = warnings.catch_warnings()
            saved.__enter__()                   # remembers the filters and showwarning as they are now
            _STATE["saved"] = saved
            if warnings.showwarning is not _dispatch:   # a stale dispatcher put back by someone else's exit
                _STATE["passthrough"] = warnings.showwarning
            warnings.simplefilter("always")
            warnings.showwarning = _dispatch
        _STATE["active"] += 1
    _recorders().append(caught)
    try:
        yield caught
    finally:
        _recorders().pop()                      # nested uses leave in reverse order: this one is last
        with _LOCK:
            _STATE["active"] -= 1
            if _STATE["active"] == 0:
                _STATE["saved"].__exit__(None, None, None)   # the filters and showwarning of before
                _STATE["saved"] = None
