"""The fine-tune widget's before/after panel: one held-out pair outlined by the base and the tuned model.

The picture (:meth:`~napari_nevus_seg.training.before_after.BeforeAfter.picture`: base model's outline on
the left, the tuned model's on the right, the user's on both) is shown in the dock, scaled to its width,
with a caption naming the pair and its two Dice; "Open in viewer" adds it as an image layer at full size
for a closer look.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_nevus_seg.training.before_after import BeforeAfter

THUMB_WIDTH = 340      # px: the picture's width in the dock


def rgb_pixmap(rgb: np.ndarray, width: int) -> QPixmap:
    """An (H, W, 3) uint8 picture as a QPixmap scaled to ``width`` px (aspect kept)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()   # copy: owns its pixels
    return QPixmap.fromImage(image).scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)


class ExamplePanel(QWidget):
    """Shows a :class:`BeforeAfter` (hidden until there is one)."""

    def __init__(self, viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.example: BeforeAfter | None = None
        self.picture = QLabel()
        self.picture.setToolTip("A pair set aside for checking (not trained on; with fewer than 4 pairs, a "
                                "training pair) outlined by the starting model (left) and the tuned model "
                                "(right); your corrected outline in magenta on both")
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.open_button = QPushButton("Open in viewer")
        self.open_button.setToolTip("Add the before/after picture as an image layer, at full size")
        self.open_button.clicked.connect(lambda: self.open_in_viewer())
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.picture)
        row = QHBoxLayout()
        row.addWidget(self.caption, 1)
        row.addWidget(self.open_button)
        lay.addLayout(row)
        self.show_example(None)

    def show_example(self, example: BeforeAfter | None) -> None:
        """Show ``example`` (None: hide the panel)."""
        self.example = example
        self.setVisible(example is not None)
        if example is None:
            self.picture.clear()
            self.caption.setText("")
            return
        self.picture.setPixmap(rgb_pixmap(example.picture(), THUMB_WIDTH))
        self.caption.setText(example.caption())

    def open_in_viewer(self):
        """Add the picture as an RGB image layer named after the pair; returns the layer (None without one)."""
        if self.example is None:
            return None
        return self.viewer.add_image(self.example.picture(side=max(self.example.image.shape[:2])), rgb=True,
                                     name=f"{self.example.name}: before | after")
