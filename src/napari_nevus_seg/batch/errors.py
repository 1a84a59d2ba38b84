"""The errors a batch run raises to its caller: it cannot start, or Ctrl-C stopped it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - for the annotation only
    from napari_nevus_seg.batch.summary import BatchSummary


class BatchSetupError(RuntimeError):
    """The batch cannot start: no images, an output folder that cannot be written, no Dask, ..."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`~napari_nevus_seg.batch.folder.segment_folder`.

    The images finished are written (and in the partial table), and ``summary`` says what was done.
    A ``KeyboardInterrupt``, so a script's loop stops too.

    Parameters
    ----------
    summary
        The :class:`~napari_nevus_seg.batch.summary.BatchSummary` of the images processed so far.
    """

    def __init__(self, summary: BatchSummary):
        super().__init__(f"interrupted: {summary.done} segmented, {summary.skipped} skipped of {summary.total}")
        self.summary = summary
