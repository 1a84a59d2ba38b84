"""Small text helpers for messages shown to people."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_SUBJECT: contextvars.ContextVar[str | None] = contextvars.ContextVar("nevus_seg_subject", default=None)


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count and its noun: ``plural(1, "pair")`` is ``"1 pair"``, ``plural(2, "pair")`` is ``"2 pairs"``.

    Parameters
    ----------
    n : int
        The count.
    noun : str
        The singular.
    nouns : str, optional
        The plural when it is not ``noun + "s"``.
    """
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def printable(value: object, limit: int = 300) -> str:
    """``value`` as one line of text safe to print: control characters (terminal escape sequences,
    newlines, carriage returns) shown as ``\\x1b``-style escapes, at most ``limit`` characters."""
    text = str(value)
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@contextlib.contextmanager
def about(name: str) -> Iterator[None]:
    """Within the block, messages made with :func:`named` start with ``name`` (a file being processed).

    Per thread (a context variable): a batch's reader, network and writer threads each name their own image.
    """
    token = _SUBJECT.set(name)
    try:
        yield
    finally:
        _SUBJECT.reset(token)


def named(message: str) -> str:
    """``message`` prefixed with the name set by :func:`about`, when there is one."""
    subject = _SUBJECT.get()
    return f"{subject}: {message}" if subject and not message.startswith(f"{subject}:") else message
