"""One measurement table for a whole batch, streamed to disk and put in place atomically.

Rows are appended to a hidden temporary file as images finish (memory stays bounded however many
images there are); :meth:`CsvSink.close` sorts the rows by image and lesion label and renames the
file into place, so the table at the final path is always complete (an earlier table there is kept
untouched until then).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

SORT_LIMIT_BYTES = 256 * 1024 * 1024  # larger tables are left in arrival order


class CsvSink:
    """Append measurement rows (dicts with the same keys) to ``path``; columns from the first row."""

    def __init__(self, path: str | os.PathLike):
        from .batch import BatchSetupError

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.columns: list[str] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.tmp, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise BatchSetupError(f"cannot write the measurement table {self.path}: {exc.strerror or exc}") from exc
        self._writer: Any = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._writer is None:
            self.columns = list(rows[0])
            self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerows(_plain(r) for r in rows)
        self._fh.flush()

    def close(self) -> Path:
        """Finish the table (sorted by image, then label) and move it to its final path."""
        if self._writer is None:
            self._fh.write("image\n")
        self._fh.close()
        try:
            if self._writer is not None and self.tmp.stat().st_size <= SORT_LIMIT_BYTES:
                _sort_csv(self.tmp)
            os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return self.path


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()   # numpy scalars
        if isinstance(v, float) and math.isnan(v):
            v = ""
        out[k] = v
    return out


def _sort_csv(path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    keys = [c for c in ("image", "label") if c in df.columns]
    if keys:
        df = df.sort_values(keys, kind="stable")
    df.to_csv(path, index=False)
