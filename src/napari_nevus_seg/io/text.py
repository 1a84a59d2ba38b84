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
