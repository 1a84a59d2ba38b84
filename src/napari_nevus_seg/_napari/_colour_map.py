"""The Measure widget's "Show colour map" button: which pixels were counted as which dermoscopic colour.

The map is :func:`napari_nevus_seg.measurements.colour_map.colour_class_map` of the last measurement (the
labels and image that were measured, and their table): a Labels layer over the lesions, one colour per
dermoscopic colour class as it looks (white, red, light brown, dark brown, blue-gray, black), half-transparent
grey for pixels of a colour not counted in their lesion; pixels near no reference colour are not drawn (the
image shows through; on PH2 they can be half of a lesion). Its
``features`` name the classes, so napari's status bar says which class the pointer is on. The layer is
made for the measured Labels layer and replaced by the next map of it; the measured layer stays selected.
The button computes the map in the Measure widget's background job (Cancel stops waiting for it). From the
console (computed in the calling thread)::

    layer = show_colour_map(viewer, labels_layer, image_layer, table)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QPushButton

from napari_nevus_seg._napari._features import arrays_to_measure
from napari_nevus_seg._napari._layers import COLOUR_MAP_KIND, add_or_update_labels
from napari_nevus_seg.measurements.colour import COLOUR_NAMES
from napari_nevus_seg.measurements.colour_map import (
    CLASS_NAMES,
    CLASS_OF_COLOUR,
    CLASS_RGB,
    NOT_COUNTED,
    UNASSIGNED,
    colour_class_map,
)

if TYPE_CHECKING:
    import napari.viewer

KIND = COLOUR_MAP_KIND


#: opacity of each class value in the layer (the colours opaque, "not counted" half, "near none" not drawn)
CLASS_ALPHA = {NOT_COUNTED: 0.5, UNASSIGNED: 0.0}


def class_colormap() -> DirectLabelColormap:
    """Each class value in its display colour (:data:`~napari_nevus_seg.measurements.colour_map.CLASS_RGB`)
    with :data:`CLASS_ALPHA`; background transparent."""
    colours = {None: "transparent", 0: "transparent"}
    colours.update({v: tuple(c / 255.0 for c in rgb) + (CLASS_ALPHA.get(v, 1.0),)
                    for v, rgb in enumerate(CLASS_RGB) if v})
    return DirectLabelColormap(color_dict=colours)


@dataclass(frozen=True)
class ColourMapJob:
    """What a "Show colour map" run is for: the measured layers and their table (handed back with the map)."""

    labels: Labels
    image: Image
    table: pd.DataFrame


def colour_map_job(lab: np.ndarray, img: np.ndarray, table: pd.DataFrame, *, cancel=None, progress=None) -> np.ndarray:
    """Worker body: :func:`colour_class_map` (seconds for a lesion of millions of pixels)."""
    return colour_class_map(lab, img, table)


def show_colour_map(viewer: napari.viewer.Viewer, labels: Labels, image: Image, table: pd.DataFrame) -> Labels:
    """Add (or update) the colour-class map of ``labels`` measured in ``image`` (``table``: that measurement)
    as a Labels layer named "<labels> colours", and keep ``labels`` selected; returns the map layer.
    (Computed here, in the calling thread; the Measure widget computes it in its background job.)

    Raises ``ValueError`` when the table has no colours or the layers do not fit (the message says why).
    """
    lab, img = arrays_to_measure(labels, image, "an image")
    return add_colour_map(viewer, labels, colour_class_map(lab, img, table))


def add_colour_map(viewer: napari.viewer.Viewer, labels: Labels, classes: np.ndarray) -> Labels:
    """Add (or update) the map ``classes`` of ``labels`` as the layer "<labels> colours"; ``labels`` stays selected."""
    active = viewer.layers.selection.active
    layer = add_or_update_labels(viewer, f"{labels.name} colours", classes, like=labels, kind=KIND, outlines=False)
    layer.colormap = class_colormap()
    layer.opacity = 0.8
    layer.features = pd.DataFrame({"index": np.arange(len(CLASS_NAMES)), "colour class": list(CLASS_NAMES)})
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active   # the measured layer stays the one the widget follows
    return layer


def summary(table: pd.DataFrame) -> str:
    """The colours counted in any lesion of ``table`` and what the map's other two classes mean."""
    counted = [CLASS_NAMES[CLASS_OF_COLOUR[c]] for c in COLOUR_NAMES
               if table[f"colour_{c}"].astype("boolean").fillna(False).any()]
    return (f"colours counted: {', '.join(counted) if counted else 'none'}; grey: pixels of a colour not counted in "
            "their lesion; not drawn: pixels near no reference colour")


class ColourMapButton(QPushButton):
    """"Show colour map" for the last measurement of a :class:`~._measure_widget.MeasureWidget`."""

    def __init__(self, widget):
        super().__init__("Show colour map")
        self.widget = widget
        self.setToolTip("A layer showing which pixels were counted as which colour (white, red, light brown, dark "
                        "brown, blue-gray, black); grey: a colour not counted in that lesion; not drawn: no "
                        "reference colour near")
        self.setEnabled(False)
        self.clicked.connect(lambda: self.show_map())   # never clicked(bool) as an argument

    def show_map(self):
        """Compute the map of the widget's last measurement in the widget's background job; returns the worker,
        or None (with a message) when there is nothing to map or a run is going on. :meth:`on_map` shows it."""
        w = self.widget
        last = w._last
        if w.table is None or last is None or last.labels not in w.viewer.layers:
            show_info("Measure lesions: measure a Labels layer first")
            return None
        if last.image is None or last.image not in w.viewer.layers:
            show_info("Measure lesions: the colour map needs the image the lesions were measured in; choose it "
                      "and press Measure")
            return None
        if last.edited():
            show_warning(f"Measure lesions: {last.labels.name!r} was edited after it was measured; the map shows "
                         "the colours of the table, press Measure to bring it up to date")
        try:
            lab, img = arrays_to_measure(last.labels, last.image, "an image")
        except ValueError as exc:
            show_info(f"Measure lesions: {exc}")
            return None
        return w.task.start(colour_map_job, lab, img, w.table, target=ColourMapJob(last.labels, last.image, w.table),
                            desc=f"Colour map of {last.labels.name!r}")

    def on_map(self, job: ColourMapJob, classes: np.ndarray) -> Labels | None:
        """Show a finished map (the GUI thread); None when its layer was removed meanwhile."""
        w = self.widget
        if job.labels not in w.viewer.layers:
            w.status.setText(f"{job.labels.name!r} was removed before its colour map was ready")
            return None
        layer = add_colour_map(w.viewer, job.labels, classes)
        w.status.setText(f"Colour map {layer.name!r}: {summary(job.table)}")
        return layer
