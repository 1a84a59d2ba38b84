"""Record the warnings one piece of work raises, also when several threads work at once.

``warnings.catch_warnings(record=True)`` swaps process-wide state (``warnings.showwarning`` and the
filters) on entry and puts back what it saw on exit. Two threads that overlap therefore undo each other:
when the first leaves, the second's warnings go to the log instead of its result, and when the second
leaves it puts back the *first* one's recorder, so every later warning in the process is appended to a
list nobody reads (silently lost). That happens with a Dask worker of several threads, each running
:func:`napari_nevus_seg.batch.work.process_one`.

:func:`recorded_warnings` instead installs one dispatcher for as long as any thread records (a count under
a lock): each warning goes to the innermost recorder of the thread that raised it, and a warning raised
where nothing records goes where it would have gone without this module. While any thread records, an
"always" filter is in front (each image's warnings are recorded, not only the first of a kind in the
process). When the last recorder leaves, only these two changes are undone (the filter entry removed if
it is still there, the dispatcher replaced if it is still installed): whatever other code did to the
warnings state meanwhile stays, so a snapshot of an older state is never put back.

Limit: other code that swaps ``warnings.showwarning`` meanwhile (``catch_warnings`` in another thread,
entered before a recorder and left during it) takes the dispatcher away until the next recorder starts:
those warnings reach the log, not the result. No Qt or napari here.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

_LOCK = threading.Lock()
_LOCAL = threading.local()
#: recorders in use, the filter entry this module put in front, and where unrecorded warnings go
_STATE: dict = {"active": 0, "filter": None, "passthrough": warnings.showwarning}


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


def _filters_changed() -> None:
    """Tell the warnings machinery that the filter list changed (its caches of past decisions)."""
    for name in ("_filters_mutated", "_filters_mutated_lock_held"):
        hook = getattr(warnings, name, None)
        if hook is not None:
            hook()
            return


def _install() -> None:
    if warnings.showwarning is not _dispatch:       # not a stale dispatcher left by someone else's exit
        _STATE["passthrough"] = warnings.showwarning
    # an entry of its own (simplefilter would take over an equal entry someone else put there)
    entry = ("always", None, Warning, None, 0)
    warnings.filters.insert(0, entry)
    _filters_changed()
    _STATE["filter"] = entry
    warnings.showwarning = _dispatch


def _uninstall() -> None:
    entry, _STATE["filter"] = _STATE["filter"], None
    for i, f in enumerate(warnings.filters):
        if f is entry:
            del warnings.filters[i]
            _filters_changed()
            break
    if warnings.showwarning is _dispatch:
        warnings.showwarning = _STATE["passthrough"]


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Context manager: yields the list that receives the warnings this thread raises inside it.

    Thread-safe (see the module's docstring); nested uses in one thread record into the innermost list.
    """
    caught: list[warnings.WarningMessage] = []
    with _LOCK:
        if _STATE["active"] == 0:
            _install()
        _STATE["active"] += 1
    _recorders().append(caught)
    try:
        yield caught
    finally:
        _recorders().pop()                      # nested uses leave in reverse order: this one is last
        with _LOCK:
            _STATE["active"] -= 1
            if _STATE["active"] == 0:
                _uninstall()
