"""The key figures of one lesion, as the "Measure lesions" dock shows them: a titled box of name / value rows.

Thin: the figures and their wording come from :func:`napari_nevus_seg.measurements.summary.key_figures`; this
module lays them out so that they stay readable in a dock about 350 px wide (values wrap, names carry a
tooltip that says what the figure is) and lets a person select and copy the text. The box is never
shorter than its rows: a dock squeezed by others (napari's table docked below it, a short screen) scrolls
(the dock's scroll area, :mod:`._dock_scroll`) instead of drawing the rows over each other.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLabel, QWidget

from napari_nevus_seg.measurements.colour import DEFAULT_MIN_SHARE
from napari_nevus_seg.measurements.summary import FIGURE_HELP, key_figures


class LesionFigures(QGroupBox):
    """A box titled with the lesion shown, one row per key figure; :meth:`shown` reads back what is on screen."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Selected lesion", parent)
        self.form = QFormLayout(self)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.form.setVerticalSpacing(4)
        self.empty("Press Measure to see the figures of a lesion here.")

    def _clear(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)

    def empty(self, message: str) -> None:
        """Show ``message`` instead of figures (nothing measured, no lesion)."""
        self._clear()
        self.setTitle("Selected lesion")
        note = QLabel(message)
        note.setWordWrap(True)
        self.form.addRow(note)
        self._keep_readable()

    def show_lesion(self, title: str, row: dict, note: str = "", min_share: float = DEFAULT_MIN_SHARE) -> None:
        """Show the key figures of ``row`` (a measurement table or features row) under ``title``, after ``note``;
        ``min_share``: the colour rule's minimum share it was measured with."""
        self._clear()
        self.setTitle(title)
        if note:
            hint = QLabel(note)
            hint.setWordWrap(True)
            self.form.addRow(hint)
        for name, text in key_figures(row, min_share):
            key = QLabel(name + ":")
            key.setToolTip(FIGURE_HELP.get(name, ""))
            value = QLabel(text)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setToolTip(FIGURE_HELP.get(name, ""))
            self.form.addRow(key, value)
        self._keep_readable()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._keep_readable()

    def _keep_readable(self) -> None:
        """Never shorter than the wrapped rows need at the present width: a dock squeezed by another one
        (napari's table docked below) used to draw the rows over each other."""
        need = self.heightForWidth(max(self.width(), 1))
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)

    def shown(self) -> dict[str, str]:
        """What the box shows now: name -> value text, read from the labels on screen (the title under "")."""
        out = {"": self.title()}
        for i in range(self.form.rowCount()):
            span = self.form.itemAt(i, QFormLayout.ItemRole.SpanningRole)
            if span is not None:
                out["message"] = span.widget().text()   # a note above the figures, or no figures
                continue
            key = self.form.itemAt(i, QFormLayout.ItemRole.LabelRole)
            value = self.form.itemAt(i, QFormLayout.ItemRole.FieldRole)
            if key is not None and value is not None:
                out[key.widget().text().rstrip(":")] = value.widget().text()
        return out

