"""The outcome of a batch run: counts, failures with their reasons, and a report for people."""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_nevus_seg.batch.work import ImageResult
from napari_nevus_seg.io.text import plural


@dataclass
class BatchSummary:
    """The outcome of :func:`~napari_nevus_seg.batch.folder.segment_folder`."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (image, reason)
    no_lesion: int = 0           # images segmented with no lesion found (counted in ``done``)
    measured_rows: int = 0
    results_csv: str | None = None
    seconds: float = 0.0
    interrupted: bool = False
    table_error: str | None = None   # the measurement table could not be written (a full disk, ...)
    output_error: str | None = None  # label images could not be written (a full disk): the run stopped
    find_ruler: bool = False     # the run looked for a ruler in each image
    pixel_size_from: dict[str, int] = field(default_factory=dict)   # images read, by where their pixel size came from

    @property
    def ok(self) -> bool:
        """True when every image was segmented or skipped, the table written, and the run not interrupted."""
        return not self.failed and not self.interrupted and self.table_error is None and self.output_error is None

    def add(self, r: ImageResult) -> None:
        """Count one image's result."""
        if r.status == "done":
            self.done += 1
            self.no_lesion += int(r.n_lesions == 0)
        elif r.status == "skipped":
            self.skipped += 1
        else:
            self.failed.append((r.name, r.reason or "unknown error"))
        self.measured_rows += len(r.rows)
        if r.pixel_size_from is not None:
            self.pixel_size_from[r.pixel_size_from] = self.pixel_size_from.get(r.pixel_size_from, 0) + 1

    def report(self, max_failures: int = 50) -> str:
        """A few lines for people: counts, speed and the reason of each failure."""
        rate = f" ({self.done / self.seconds:.2f} images/s)" if self.done and self.seconds > 0 else ""
        lines = [f"{self.done} segmented ({self.no_lesion} with no lesion found), {self.skipped} skipped "
                 f"(output already there), {len(self.failed)} failed, of {plural(self.total, 'image')} "
                 f"in {self.seconds:.1f} s{rate}"]
        if self.results_csv:
            so_far = " so far (the complete table is written when a run finishes)" if self.interrupted else ""
            lines.append(f"measurements: {self.measured_rows} lesions{so_far} -> {self.results_csv}")
        read = sum(self.pixel_size_from.values())
        if self.find_ruler and read:
            found = self.pixel_size_from.get("ruler", 0)
            check = "the ruler_* columns of the measurements" if self.results_csv else "the label files' pixel sizes"
            lines.append(f"ruler found in {found} of {plural(read, 'image')} read: their pixel size is the ruler's "
                         f"tick spacing taken as 1 mm (check {check}); the others keep --pixel-size-mm, their "
                         "file's pixel size, or pixels")
        if self.find_ruler and self.skipped:
            measured = " (their measurements use the ruler's)" if self.results_csv else ""
            lines.append(f"{plural(self.skipped, 'label file')} from an earlier run kept the pixel size written "
                         f"then{measured}: --overwrite writes them again with their ruler's")
        if self.table_error:
            lines.append(f"ERROR {self.table_error}. The label images written are complete; free some space "
                         "and run the same command again: finished images are skipped and measured again "
                         "from their label files")
        if self.output_error:
            left = self.total - self.done - self.skipped - len(self.failed)
            lines.append(f"ERROR {self.output_error}: the run stopped ({plural(left, 'image')} not processed). The "
                         "label images written are complete; free some space and run the same command again: "
                         "finished images are skipped")
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume (finished outputs are skipped)")
        for name, reason in self.failed[:max_failures]:
            lines.append(f"  FAILED {name}: {reason}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more failures")
        return "\n".join(lines)
