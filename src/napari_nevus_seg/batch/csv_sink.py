"""One measurement table for a whole batch, streamed to disk and put in place atomically.

Rows are appended to a hidden temporary file (one JSON object per line) as images finish, so memory
stays bounded however many images there are and rows may differ in their columns (images with a pixel
size give ``_mm`` columns, images without one ``_px`` columns: the table has the union of them, in
order of first appearance). :meth:`CsvSink.close` sorts the rows by image and lesion label (tables up to
:data:`SORT_LIMIT_BYTES`; larger ones stay in arrival order) and renames the CSV into place, so the
table at the final path is always complete: an interrupted run writes ``<name>.partial.csv`` beside it
and leaves an earlier complete table untouched.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from napari_nevus_seg.batch.errors import BatchSetupError
from napari_nevus_seg.io.atomic import atomic_path

SORT_LIMIT_BYTES = 64 * 1024 * 1024  # rows (as JSON) beyond this are left in arrival order (memory)


class CsvSink:
    """Append measurement rows (dicts) for the table at ``path``; :meth:`close` writes the CSV."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)   # (segment_folder has refused a folder here before any work)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.rows")
        self.columns: list[str] = []
        self._known: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.tmp, "w", encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise BatchSetupError(f"cannot write the measurement table {self.path}: {exc.strerror or exc}") from exc

    @property
    def partial_path(self) -> Path:
        """Where an interrupted run's table goes: ``lesions.csv`` -> ``lesions.partial.csv``."""
        return self.path.with_name(f"{self.path.stem}.partial{self.path.suffix or '.csv'}")

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            plain = _plain(row)
            for k in plain:
                if k not in self._known:
                    self._known.add(k)
                    self.columns.append(k)
            self._fh.write(json.dumps(plain) + "\n")
        if rows:
            self._fh.flush()

    def close(self, complete: bool = True) -> Path:
        """Write the table (sorted by image, then label) to its path, or to :attr:`partial_path` when the
        run did not complete (the earlier complete table stays); returns the path written."""
        self._fh.close()
        target = self.path if complete else self.partial_path
        columns = self.columns or ["image"]
        try:
            # surrogateescape: a file name that is not valid UTF-8 is written back as the bytes it was
            with atomic_path(target) as tmp, \
                    open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as out:
                writer = csv.DictWriter(out, fieldnames=columns, restval="")
                writer.writeheader()
                writer.writerows(self._rows())
        finally:
            self.tmp.unlink(missing_ok=True)
        return target

    def _rows(self):
        with open(self.tmp, encoding="utf-8", errors="surrogateescape") as fh:
            if self.tmp.stat().st_size > SORT_LIMIT_BYTES:
                yield from (json.loads(line) for line in fh)
                return
            rows = [json.loads(line) for line in fh]
        rows.sort(key=lambda r: (str(r.get("image", "")), _number(r.get("label"))))
        yield from rows


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.inf


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()   # numpy scalars
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "<NA>":
            v = ""         # NaN and pandas' NA: an empty cell
        out[k] = v
    return out
