"""One measurement table for a whole batch, streamed to disk and put in place atomically.

Rows are appended to a hidden temporary file (one JSON object per line) as images finish, so memory
stays bounded however many images there are and rows may differ in their columns (images with a pixel
size give ``_mm`` columns, images without one ``_px`` columns: the table has the union of them, in
order of first appearance). :meth:`CsvSink.close` sorts the rows by image and lesion label (tables up to
:data:`SORT_LIMIT_BYTES`; larger ones stay in arrival order) and renames the CSV into place, so the
table at the final path is always complete: an interrupted run writes ``<name>.partial.csv`` beside it
and leaves an earlier complete table untouched (a later complete run removes that partial table).

Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return, e.g. an image named ``=1+2.png``) are written with a leading apostrophe, the escape
spreadsheets understand. When the disk fills up (or any other write error) the sink stops writing, keeps
what is already on disk consistent, and says so in :attr:`CsvSink.error`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from napari_nevus_seg.batch.errors import BatchSetupError
from napari_nevus_seg.io.atomic import atomic_path, remove_stale_temporaries

SORT_LIMIT_BYTES = 64 * 1024 * 1024  # rows (as JSON) beyond this are left in arrival order (memory)


class CsvSink:
    """Append measurement rows (dicts) for the table at ``path``; :meth:`close` writes the CSV."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)   # (segment_folder has refused a folder here before any work)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.rows")
        self.columns: list[str] = []
        self._known: set[str] = set()
        self.error: str | None = None   # why the table could not be written (a full disk, ...)
        self.lost_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.path.parent)   # rows files of killed runs
            self._fh = open(self.tmp, "w", encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise BatchSetupError(f"cannot write the measurement table {self.path}: {exc.strerror or exc}") from exc

    @property
    def partial_path(self) -> Path:
        """Where an interrupted run's table goes: ``lesions.csv`` -> ``lesions.partial.csv``."""
        return self.path.with_name(f"{self.path.stem}.partial{self.path.suffix or '.csv'}")

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows; after a write error they are counted in :attr:`lost_rows` instead."""
        if self.error is not None:
            self.lost_rows += len(rows)
            return
        try:
            for row in rows:
                plain = _plain(row)
                for k in plain:
                    if k not in self._known:
                        self._known.add(k)
                        self.columns.append(k)
                self._fh.write(json.dumps(plain) + "\n")
            if rows:
                self._fh.flush()
        except OSError as exc:
            self._fail(exc)
            self.lost_rows += len(rows)

    def _fail(self, exc: OSError) -> None:
        self.error = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")

    def close(self, complete: bool = True) -> Path | None:
        """Write the table (sorted by image, then label) to its path, or to :attr:`partial_path` when the
        run did not complete (the earlier complete table stays); returns the path written, or None when
        it could not be written (:attr:`error` says why; tables already on disk are left as they were)."""
        try:
            self._fh.close()
        except OSError as exc:
            self._fail(exc)
        target = self.path if complete else self.partial_path
        columns = self.columns or ["image"]
        try:
            if self.error is None:
                # surrogateescape: a file name that is not valid UTF-8 is written back as the bytes it was
                with atomic_path(target) as tmp, \
                        open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as out:
                    writer = csv.DictWriter(out, fieldnames=columns, restval="")
                    writer.writeheader()
                    writer.writerows(self._rows())
                if complete:
                    self.partial_path.unlink(missing_ok=True)   # an earlier interrupted run's rows are in it
        except OSError as exc:
            self._fail(exc)
        finally:
            self.tmp.unlink(missing_ok=True)
        return None if self.error is not None else target

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


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()   # numpy scalars
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "<NA>":
            v = ""         # NaN and pandas' NA: an empty cell
        elif isinstance(v, str):
            v = spreadsheet_safe(v)
        out[spreadsheet_safe(str(k))] = v
    return out
