"""What every ``nevus-seg`` command shares: exit statuses, the setup error, messages to the user."""

from __future__ import annotations

import errno
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_OUTPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143
DEVICES = ("auto", "cpu", "cuda", "mps")


class SetupError(Exception):
    """A problem that stops a command before it starts (exit status 2)."""


def setup_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "cannot start": reported in one line, exit status 2."""
    from napari_nevus_seg.batch.errors import BatchSetupError
    from napari_nevus_seg.model.devices import DeviceUnavailableError
    from napari_nevus_seg.model.networks import CheckpointError

    return (SetupError, BatchSetupError, CheckpointError, DeviceUnavailableError, FileNotFoundError,
            NotADirectoryError, PermissionError)


def err(msg: str) -> None:
    """Print ``nevus-seg: error: msg`` to stderr."""
    print(f"nevus-seg: error: {msg}", file=sys.stderr)


def say(text: str) -> None:
    """Print to stdout; a reader that has gone (``| head``) is no error: the rest of the output is dropped."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        drop_stdout()


def drop_stdout() -> None:
    """Send the rest of stdout to the null device (its reader has gone)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())   # also keeps Python's exit-time flush from failing again
    os.close(devnull)


def error_reason(exc: BaseException) -> str:
    """One line for an error: the message, or for an operating-system error its path and reason
    (never a bare errno such as "17")."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or type(exc).__name__


def write_error_message(exc: OSError) -> str:
    """The one line for an operating-system error that stopped a command (exit status 3): its path and
    reason, and for a full disk what to do."""
    reason = error_reason(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{reason}: the disk is full. Files are written whole or not at all, so what was written "
                "before is complete; free some space and run the command again")
    return reason


def is_write_failure(exc: BaseException) -> bool:
    """True for an operating-system error that means "could not write" (full disk, quota, file too big, I/O error)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
