"""Dock widgets that fit a short screen: their rows in a scroll area, the height of a dock column shared.

:func:`scroll_contents` moves a dock widget's rows into a vertical scroll area, so that several docks
stacked in one column of a laptop's window scroll instead of forcing the window taller than the screen
or drawing their rows over each other; when such a dock is shown, :func:`share_dock_column` gives the
docks of its column heights in proportion to what their rows need.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QStyle, QVBoxLayout, QWidget

from napari_nevus_seg._napari._job import qt_deleted


class _DockScroll(QScrollArea):
    """A vertical scroll area as wide as its rows need (their minimum width follows their text) and at least
    ``min_height`` pixels tall (or its rows' height, if less). When ``owner`` is first shown in a dock, the
    docks of its column share the height in proportion to what their rows need (:func:`share_dock_column`)."""

    def __init__(self, inner: QWidget, owner: QWidget, min_height: int):
        super().__init__()
        self.min_height, self.owner, self._placed = min_height, owner, False
        self.setWidget(inner)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner.installEventFilter(self)
        owner.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        inner = self.widget()
        bar = max(self.verticalScrollBar().sizeHint().width(),
                  self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self))
        return QSize(inner.minimumSizeHint().width() + bar + 2 * self.frameWidth() + 2,
                     min(self.min_height, inner.sizeHint().height()))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt name
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()    # a longer text in a row: the dock widens as it did without the area
        elif obj is self.owner and event.type() == QEvent.Type.ParentChange:
            self._placed = False                # put in a (new) dock: share once it is shown
        elif obj is self.owner and event.type() == QEvent.Type.Show and not self._placed:
            self._placed = True                 # once: a layout the user dragged stays when a dock is re-shown
            QTimer.singleShot(0, self._share)   # docked and shown: napari has placed it
        return super().eventFilter(obj, event)

    def _share(self) -> None:
        if not qt_deleted(self):
            share_dock_column(self.owner)


def share_dock_column(widget: QWidget) -> None:
    """Give the docks stacked in one column with ``widget``'s dock heights in proportion to what their rows
    need (napari gives the first dock all it asks for and squeezes the later ones to their minimum)."""
    dock = widget.parent()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parent()
    window = dock.parent() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return
    area = window.dockWidgetArea(dock)
    column = [d for d in window.findChildren(QDockWidget) if d.parent() is window and d.isVisible()
              and not d.isFloating() and window.dockWidgetArea(d) == area and not window.tabifiedDockWidgets(d)]
    if len(column) > 1:
        window.resizeDocks(column, [max(1, d.sizeHint().height()) for d in column], Qt.Orientation.Vertical)


def scroll_contents(widget: QWidget, min_height: int = 100) -> QScrollArea:
    """Move ``widget``'s layout, with its rows, into a frameless scroll area that fills the widget.

    Docks stacked in one column of a short window (Set scale, Segment and Measure on a laptop) are then
    squeezed to what fits and scroll vertically, instead of forcing the window taller than the screen or
    drawing their rows over each other. The area is never narrower than the rows, and never shorter than
    ``min_height`` pixels (or its rows' height), so that a squeezed dock still shows its first rows.
    """
    inner = QWidget()
    inner.setLayout(widget.layout())   # Qt reparents a layout set on another widget, with its widgets
    area = _DockScroll(inner, widget, min_height)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return area
