"""What a Measure run is for and what it runs: :class:`MeasureJob` and the worker function :func:`measure_arrays`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image, Labels

from napari_nevus_seg import measure
from napari_nevus_seg._napari._layers import fingerprint, layer_array


@dataclass
class MeasureJob:
    """What a run was started for: the table goes to ``labels`` whatever happens in the viewer meanwhile."""

    labels: Labels
    image: Image | None
    pixel_size_mm: tuple[float, float] | None
    fingerprint: int = 0
    started: float = field(default_factory=time.perf_counter)

    def edited(self) -> bool:
        """Whether the labels measured have changed since (painted, erased, undone)."""
        try:
            return fingerprint(np.asarray(layer_array(self.labels))) != self.fingerprint
        except Exception:  # noqa: BLE001 - a layer whose data cannot be read is not "unchanged"
            return True

    def rescaled(self, pixel_size_mm_now) -> bool:
        """Whether ``pixel_size_mm_now`` differs from the pixel size this run measured with."""
        now, then = pixel_size_mm_now, self.pixel_size_mm
        if now is None or then is None:
            return (now is None) != (then is None)
        return not np.allclose(now, then, rtol=1e-9)

    def done_text(self, table) -> str:
        """The status line once ``table`` arrived: lesions, seconds, units and what was not measured."""
        unit = "mm" if self.pixel_size_mm is not None else "px"
        msg = (f"{len(table)} lesion(s) measured in {self.labels.name!r} ({time.perf_counter() - self.started:.1f} s, "
               f"lengths in {unit})")
        if self.image is None:
            msg += "; no image: colours and border abruptness not measured"
        elif len(table) and not table.attrs.get("colour_image", True):
            msg += "; grayscale image: colours not measured"
        return msg


def measure_arrays(labels: np.ndarray, image: np.ndarray | None, pixel_size_mm, *, cancel=None, progress=None):
    """Worker-thread function: the :func:`~napari_nevus_seg.measure` table and the largest label value."""
    table = measure(labels, image, pixel_size_mm, progress=progress, cancel=cancel)
    return table, int(np.max(labels)) if np.size(labels) else 0
