"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Write to a temporary file in the destination's folder, then rename it over the destination in one
step (``os.replace``); on any error the temporary file is removed and the destination is untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
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
    # the process id in the name lets a later run remove what a killed one left (remove_stale_temporaries)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem[:32]}.{os.getpid()}.", suffix=path.suffix[:16], dir=path.parent)
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


_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.(?:[a-z0-9_]{8}(?P<suffix>\.[^.]*)?|rows)$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


STALE_AFTER_S = 15 * 60   # a temporary file untouched this long is no write in progress


def remove_stale_temporaries(folder: str | os.PathLike, min_age_s: float = STALE_AFTER_S) -> int:
    """Delete the hidden temporary files that killed processes left in ``folder`` (not those of running
    ones): ``.NAME.PID.xxxxxxxx.SUFFIX`` of :func:`atomic_path` and ``.NAME.PID.rows`` of batch tables.

    A file is left alone while its process id runs on this machine, and while it was modified less than
    ``min_age_s`` ago: a run on another machine writing into the same shared folder (a Dask cluster, a
    network drive) has process ids this machine cannot check, and its files in progress are fresh.
    Returns how many were removed; a folder that cannot be listed removes none."""
    import time

    now = time.time()
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMPORARY.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False) or pid_alive(int(m.group("pid"))):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
        except OSError:
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full: writing more files cannot work."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
