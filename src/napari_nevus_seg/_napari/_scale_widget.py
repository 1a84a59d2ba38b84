"""The "Set scale from a ruler" dock widget: the pixel size from a line drawn along N mm of a ruler.

Many dermoscopy photographs show a millimetre ruler. The user clicks *Draw a line on the ruler* (a
Shapes layer ``<image> ruler`` opens in line mode over the image), draws a line from one mark to another,
types how many mm it spans, and clicks *Set scale*. Or *Find the ruler* looks for the ruler's tick marks
(:func:`napari_nevus_seg.find_ruler`, in the background) and draws that line itself, from the first tick
found to the last, with their count in mm, for the user to check before *Set scale*. The pixel size
(:func:`napari_nevus_seg.pixel_size_from_ruler`) goes to the image's ``scale`` and ``units`` (mm), to
every result layer of that image (labels, probability map) and to its expert mask, so that napari's scale bar, the Measure widget, the measurement table
and the saved label TIFFs use it.
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
from napari.layers import Image, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_nevus_seg._napari._controls import LayerCombo
from napari_nevus_seg._napari._dock_scroll import scroll_contents
from napari_nevus_seg._napari._job import BackgroundJob, JobCancelled
from napari_nevus_seg._napari._layers import SOURCE_KEY, ground_truth_of, plane_of, plane_shape, source_id
from napari_nevus_seg.io.pixel_size import pixel_size_from_ruler
from napari_nevus_seg.measurements.ruler import WORK_SIDE, RulerSearchCancelled, RulerTicks, find_ruler

RULER_KEY = "nevus_seg_ruler_of"   # metadata of a ruler layer: the image it measures
FOUND_KEY = "nevus_seg_found_line"  # metadata of a ruler layer: the last line Find the ruler drew


class ScaleWidget(QWidget):
    """Set an image's pixel size from a line drawn along a ruler in it."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.image_combo = LayerCombo(viewer, Image)
        self.draw_button = QPushButton("Draw a line on the ruler")
        self.draw_button.setToolTip("Opens a line layer over the image: draw from one ruler mark to another")
        self.length = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1000.0, singleStep=1.0, value=1.0)
        self.length.setSuffix(" mm")
        self.length.setToolTip("How many millimetres of the ruler the line spans")
        self.find_button = QPushButton("Find the ruler")
        self.find_button.setToolTip("Looks for a millimetre ruler's tick marks in the image and draws a line "
                                    "from the first tick found to the last, for you to check")
        self.cancel_button = QPushButton("Cancel")
        self.set_button = QPushButton("Set scale")
        self.set_button.setToolTip("The pixel size from the line goes to the image and its results")
        self.status = QLabel("Draw a line along the ruler's marks, type its length, then Set scale.")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Image:", self.image_combo)
        form.addRow("Line spans:", self.length)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.draw_button)
        find_row = QHBoxLayout()
        find_row.addWidget(self.find_button, 1)
        find_row.addWidget(self.cancel_button)
        lay.addLayout(find_row)
        lay.addWidget(self.set_button)
        lay.addWidget(self.status)
        lay.addStretch(1)
        scroll_contents(self)
        self.task = BackgroundJob(self, "Find the ruler", run_button=self.find_button,
                                  cancel_button=self.cancel_button, status=self.status, on_result=self._on_found)
        self.draw_button.clicked.connect(lambda: self.draw())
        self.find_button.clicked.connect(lambda: self.find())
        self.set_button.clicked.connect(lambda: self.set_scale())

    def ruler_layer(self, image: Image) -> Shapes | None:
        """The ruler layer opened for ``image`` (None if there is none)."""
        sid = source_id(image)
        return next((ly for ly in self.viewer.layers if isinstance(ly, Shapes) and ly.metadata.get(RULER_KEY) == sid),
                    None)

    def draw(self) -> Shapes | None:
        """Open (or select) the ruler layer of the chosen image, in line-drawing mode."""
        image = self.image_combo.layer()
        if image is None:
            show_error("Set scale: open or choose an image layer first")
            return None
        ruler = self._open_ruler(image)
        self.viewer.layers.selection.active = ruler
        ruler.mode = "add_line"
        self.status.setText("Draw a line from one ruler mark to another (click, move, click), "
                            "then type its length and press Set scale.")
        return ruler

    def _open_ruler(self, image: Image) -> Shapes:
        """The ruler layer of ``image``, added over it (yellow lines) if there is none yet."""
        ruler = self.ruler_layer(image)
        if ruler is None:
            width = max(1.0, max(plane_shape(image)) / 300) * float(image.scale[-1])
            ruler = self.viewer.add_shapes(ndim=2, name=f"{image.name} ruler", scale=tuple(image.scale[-2:]),
                                           translate=tuple(image.translate[-2:]), edge_color="yellow",
                                           edge_width=width, metadata={RULER_KEY: source_id(image)})
        return ruler

    def find(self):
        """Look for the chosen image's ruler in the background; :meth:`_on_found` draws what was found."""
        image = self.image_combo.layer()
        if image is None:
            show_error("Find the ruler: open or choose an image layer first")
            return None
        if image.ndim != 2:
            show_error(f"Find the ruler: {image.name!r} is a stack, not one photograph; draw the line by hand")
            return None
        pixels, factors = _search_level(image)
        return self.task.start(_find_ticks, pixels, factors, target=image, desc=f"Looking for a ruler in {image.name!r}")

    def _on_found(self, image: Image, ticks: RulerTicks | None) -> None:
        """Draw the line along the ticks found over ``image`` (or say none was); if ``image`` is still the
        one chosen, select the line and put the count of spacings in *Line spans*, otherwise leave the
        user's choices alone and say how to use the line."""
        if image not in self.viewer.layers:
            self.status.setText(f"{image.name!r} was closed while its ruler was looked for: nothing drawn.")
            return
        if ticks is None:
            msg = (f"No ruler found in {image.name!r}: no evenly spaced tick marks stand out. "
                   "Draw a line along the ruler by hand (Draw a line on the ruler).")
            self.status.setText(msg)
            show_info(f"Find the ruler: {msg}")
            return
        chosen = self.image_combo.layer() is image
        active = self.viewer.layers.selection.active
        ruler = self._open_ruler(image)                         # napari makes a new layer the active one
        line = np.array([ticks.start, ticks.end])
        found_before = ruler.metadata.get(FOUND_KEY)
        if (found_before is not None and len(ruler.data) and ruler.shape_type[-1] == "line"
                and np.allclose(ruler.data[-1][:, -2:], found_before)):
            ruler.selected_data = {len(ruler.data) - 1}       # the line found before, unmoved: replaced
            ruler.remove_selected()
        ruler.add_lines(line)                                   # after any line the user drew: kept
        ruler.metadata[FOUND_KEY] = line
        found = f"Found {ticks.spacings + 1} tick marks {ticks.spacing_px:.2f} px apart"
        if chosen:
            self.viewer.layers.selection.active = ruler
            ruler.mode = "select"
            ruler.selected_data = {len(ruler.data) - 1}            # shown: the line Set scale will use
            self.length.setValue(float(ticks.spacings))
            which = "the selected line, the last one, which Set scale uses" if len(ruler.data) > 1 \
                else "the selected line"
            msg = (f"{found} ({which}; {ticks.spacings} spacings). If they are millimetres, press "
                   f"Set scale for {ticks.spacings} mm; otherwise type the length the line spans, or move its ends.")
        else:                                                   # the user chose another image meanwhile
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active    # whatever they were working on
            else:
                self.viewer.layers.selection.clear()
            msg = (f"{found} in {image.name!r} (the last line of {ruler.name!r}, {ticks.spacings} spacings). "
                   f"To use it, choose {image.name!r} above and, if they are millimetres, set Line spans to "
                   f"{ticks.spacings} mm and press Set scale.")
        self.status.setText(msg)
        show_info(f"Find the ruler: {msg}")

    def set_scale(self) -> float | None:
        """Compute the pixel size from the last line of the ruler layer and give it to the image and its results."""
        image = self.image_combo.layer()
        ruler = self.ruler_layer(image) if image is not None else None
        lines = [d for d, kind in zip(ruler.data, ruler.shape_type) if kind in ("line", "path")] if ruler else []
        if not lines:
            msg = "draw a line along the ruler first (Draw a line on the ruler), or Find the ruler"
            show_error(f"Set scale: {msg}")
            self.status.setText(msg[0].upper() + msg[1:] + ".")
            return None
        ends = np.asarray(lines[-1])[[0, -1], -2:]
        pixels = [np.asarray(image.world_to_data(ruler.data_to_world(p)))[-2:] for p in ends]
        try:
            size = pixel_size_from_ruler(pixels[0], pixels[1], float(self.length.value()))
        except ValueError as exc:
            show_error(f"Set scale: {exc}")
            self.status.setText(str(exc))
            return None
        changed = apply_pixel_size(self.viewer, image, size, ruler)
        length_px = float(np.hypot(*(pixels[1] - pixels[0])))
        msg = (f"Pixel size {size * 1000:.2f} µm ({self.length.value():g} mm over {length_px:.0f} px), "
               f"set on {', '.join(repr(ly.name) for ly in changed)}")
        self.status.setText(msg)
        show_info(f"Set scale: {msg}")
        return size


def _search_level(image: Image) -> tuple[Any, tuple[float, float]]:
    """The pixels to search and how many full-resolution rows and columns one of their pixels spans:
    the image itself, or for a multiscale image its coarsest level still at least :data:`WORK_SIDE`
    pixels long (a pyramid's finest level can be far too large to read whole)."""
    if not image.multiscale:
        return image.data, (1.0, 1.0)
    planes = [plane_of(level.shape, image.rgb) for level in image.data]
    level = max((i for i, (h, w) in enumerate(planes) if max(h, w) >= WORK_SIDE), default=0)
    return image.data[level], (planes[0][0] / planes[level][0], planes[0][1] / planes[level][1])


def _find_ticks(pixels: Any, factors: tuple[float, float], *, cancel, progress) -> RulerTicks | None:
    """:func:`find_ruler` as a background job, in full-resolution pixels; Cancel stops it between
    candidates."""
    try:
        ticks = find_ruler(np.asarray(pixels), cancel=cancel)
    except RulerSearchCancelled as exc:
        raise JobCancelled(str(exc)) from exc
    return ticks if ticks is None or factors == (1.0, 1.0) else ticks.scaled(*factors)


def belongs_to(layer: Any, image: Image) -> bool:
    """Whether ``layer`` is drawn over ``image``: a result of it (linked in the metadata, labels or probability
    map) or the expert mask opened with it (``<image> ground truth`` of the same size)."""
    if layer is image or isinstance(layer, Shapes):
        return False
    return layer.metadata.get(SOURCE_KEY) == source_id(image) or ground_truth_of(layer, image)


def apply_pixel_size(viewer: Any, image: Image, size_mm: float, ruler: Shapes | None = None) -> list:
    """Give ``image``, the layers drawn over it (:func:`belongs_to`) and its ruler a square pixel size in mm."""
    layers = [image] + [ly for ly in viewer.layers if belongs_to(ly, image)]
    for ly in layers:
        ly.scale = (*tuple(ly.scale)[:-2], size_mm, size_mm)
        ly.units = (*tuple(ly.units)[:-2], "mm", "mm")
        ly.metadata["pixel_size_mm"] = (size_mm, size_mm)
    if ruler is not None:
        ruler.scale = (size_mm, size_mm)
        ruler.units = ("mm", "mm")
    viewer.reset_view()
    return layers
