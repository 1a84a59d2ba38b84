"""Checks and error messages shared by every file reader: :class:`ImageReadError` and its wording."""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MAX_PIXELS = 64_000_000   # 8000 x 8000; about 1.5 GB of peak memory to segment and measure


class ImageReadError(ValueError):
    """A file could not be read as an image: missing, empty, corrupt, truncated or unsupported."""


def check_file(path: Path) -> None:
    """Raise :class:`ImageReadError` unless ``path`` is a non-empty regular file (links followed).

    A named pipe or device is refused before it is opened (reading one can block for ever).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageReadError(f"{path}: a link to {os.readlink(path)}, which does not exist") from None
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise ImageReadError(f"{path}: is {kind}, not an image file")
    if st.st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")


def max_pixels() -> int:
    """The largest image (height x width) the readers decode: ``$NEVUS_SEG_MAX_PIXELS`` or 64 million.

    The limit bounds memory: a file of a few kilobytes can declare a 50000 x 50000 image.
    """
    text = os.environ.get("NEVUS_SEG_MAX_PIXELS", "").strip().replace("_", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_PIXELS


def check_pixel_count(height: int, width: int, path: Path | str) -> None:
    """Raise :class:`ImageReadError` when a ``height`` x ``width`` image exceeds :func:`max_pixels`."""
    limit = max_pixels()
    if int(height) * int(width) > limit:
        raise ImageReadError(
            f"{path}: {width} x {height} px ({height * width / 1e6:.0f} megapixels) is more than this "
            f"installation reads ({limit / 1e6:g} megapixels); set NEVUS_SEG_MAX_PIXELS to a larger number "
            "of pixels to allow it (memory grows with the image: about 1.5 GB per 64 megapixels)")


def decode_error(path: Path, exc: Exception) -> ImageReadError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = reason.lower()
    if "decompression bomb" in low:
        return ImageReadError(f"{path}: the image is larger than this installation reads ({reason}); set "
                              "NEVUS_SEG_MAX_PIXELS to allow it")
    if "truncated" in low or "premature end" in low or "broken data stream" in low:
        return ImageReadError(f"{path}: the file is truncated or incomplete ({reason})")
    if "cannot identify image file" in low or "not a tiff file" in low:
        return ImageReadError(
            f"{path}: the file's content is not a {path.suffix.lstrip('.').upper() or 'known'} image "
            f"(or any format this plugin reads: BMP, PNG, JPEG, TIFF); it may be corrupt or misnamed")
    return ImageReadError(f"{path}: not a readable image or corrupt file ({reason})")


@contextlib.contextmanager
def quiet_bomb_warning() -> Iterator[None]:
    """Silence Pillow's decompression-bomb warning while a file is opened: :func:`check_pixel_count`
    decides (with this package's limit) before any pixel is decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
