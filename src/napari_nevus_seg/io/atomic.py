"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Write to a temporary file in the destination's folder, then rename it over the destination in one
step (``os.replace``); on any error the temporary file is removed and the destination is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0o022)  # reading the umask means setting it: set it back at once (at import, one thread)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it becomes ``path``.

    ``exclusive=True``: ``path`` is created only if nothing has that name yet, decided in one step by the
    file system (a hard link), so that of two processes saving under one name at once, one gets
    :class:`FileExistsError` instead of both "succeeding" and one file silently replacing the other.

    The temporary name keeps ``path``'s suffix (writers that choose the format by suffix still work).
    The result gets the mode a plain write would give (or that of the file it replaces), not
    ``mkstemp``'s private 0600. ``fsync=True`` flushes the data to disk before the rename.
    """
    path = Path(path)
    # a short prefix: the temporary name must fit the file system's limit wherever the final name does
    fd, name = tempfile.mkstemp(prefix=f".{path.stem[:32]}.", suffix=path.suffix[:16], dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() and not exclusive else 0o666 & ~_UMASK)
        if exclusive:
            _link_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_exclusive(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s data the name ``path`` unless that name exists (FileExistsError)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:   # a file system without hard links: reserve the name, then fill it
        pass
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
    os.close(fd)
    os.replace(tmp, path)
