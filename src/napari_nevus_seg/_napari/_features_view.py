"""napari's own "Features table widget", opened on a measured Labels layer and showing only its lesions.

napari wants a Labels layer's features laid out one row per label value, the background's included
(its features table selects ``selected_label = row``); a person wants one row per lesion. So the layer
keeps napari's layout (see :mod:`._features`), and the open table hides the rows that hold no lesion (the
background, unused label values) with a filter on its sorting proxy, on the "Index" column, which is the
row position (and so the label value). Row selection still maps through that proxy to the right label.
The full table is about 60 columns wide: it opens in the bottom dock area, the width of the window,
unless the user has put it elsewhere before (napari remembers where).
"""

from __future__ import annotations

from typing import Any

from napari.layers import Labels
from qtpy.QtCore import QRegularExpression, Qt

from napari_nevus_seg._napari._features import lesion_rows

TABLE_WIDGET = ("napari", "Features table widget")
TABLE_HEIGHT = 260   # px of the bottom dock: a header and about eight rows


def rows_pattern(rows) -> QRegularExpression:
    """A pattern matching exactly the row numbers ``rows`` (none when empty)."""
    body = "|".join(str(int(r)) for r in rows) or "(?!)"
    return QRegularExpression(f"^(?:{body})$")


class LesionTable:
    """Opens napari's features table for a Labels layer and keeps it to that layer's lesion rows."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.widget = None            # napari's FeaturesTable, once opened
        self.layer: Labels | None = None
        viewer.layers.selection.events.changed.connect(self.refilter)

    def open(self, layer: Labels):
        """Select ``layer`` and open (or raise) napari's features table on it; returns the table widget."""
        from napari.settings import get_settings

        self.layer = layer
        self.viewer.layers.selection.active = layer
        placed = set(get_settings().application.plugin_widget_positions)   # napari records a dock's place
        dock, widget = self.viewer.window.add_plugin_dock_widget(*TABLE_WIDGET)
        if widget is not self.widget:
            self.widget = widget
            if dock.name not in placed:   # first opened: wide, at the bottom; else where the user put it
                self._dock_at_the_bottom(dock)
            layer.events.features.connect(self.refilter)
        dock.show()
        dock.raise_()
        self.refilter()
        return widget

    def follow(self, layer: Labels) -> None:
        """The measured layer is now ``layer`` (the rows shown follow its features)."""
        if self.layer is not None and self.layer is not layer:
            try:
                self.layer.events.features.disconnect(self.refilter)
            except (TypeError, ValueError, RuntimeError):
                pass
        if self.widget is not None and self.layer is not layer:
            layer.events.features.connect(self.refilter)
        self.layer = layer
        self.refilter()

    @staticmethod
    def _dock_at_the_bottom(dock) -> None:
        main = dock.parentWidget()
        if not hasattr(main, "addDockWidget"):
            return
        main.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        main.resizeDocks([dock], [TABLE_HEIGHT], Qt.Orientation.Vertical)

    def refilter(self, *_: Any) -> None:
        """Show only the lesion rows while the measured layer alone is selected, every row otherwise."""
        if self.widget is None:
            return
        try:
            proxy = self.widget.table.model()
            selected = list(self.viewer.layers.selection)
            if self.layer is not None and len(selected) == 1 and selected[0] is self.layer:
                proxy.setFilterKeyColumn(0)   # "Index": the row position, i.e. the label value
                proxy.setFilterRegularExpression(rows_pattern(lesion_rows(self.layer.features)))
            else:
                proxy.setFilterRegularExpression(QRegularExpression(""))
        except RuntimeError:      # the table was closed (its Qt object deleted)
            self.widget = None
        except AttributeError:    # another napari's table: leave it as it is
            pass
