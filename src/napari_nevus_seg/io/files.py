"""Checks and error messages shared by every file reader: :class:`ImageReadError` and its wording."""

from __future__ import annotations

from pathlib import Path


class ImageReadError(ValueError):
    """A file could not be read as an image: missing, empty, corrupt, truncated or unsupported."""


def check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")


def decode_error(path: Path, exc: Exception) -> ImageReadError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = reason.lower()
    if "truncated" in low or "premature end" in low or "broken data stream" in low:
        return ImageReadError(f"{path}: the file is truncated or incomplete ({reason})")
    if "cannot identify image file" in low or "not a tiff file" in low:
        return ImageReadError(
            f"{path}: the file's content is not a {path.suffix.lstrip('.').upper() or 'known'} image "
            f"(or any format this plugin reads: BMP, PNG, JPEG, TIFF); it may be corrupt or misnamed")
    return ImageReadError(f"{path}: not a readable image or corrupt file ({reason})")
