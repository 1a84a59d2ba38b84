"""Small text helpers for messages shown to people."""

from __future__ import annotations


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
