"""Controls shared by the dock widgets, and the state one napari session's widgets share.

- :class:`LayerCombo`: a combo box of the viewer's layers of one type, kept in sync with the layer list;
- :class:`PixelSizeBox`: the pixel size in mm, from the layers' scale and units or typed in;
- :class:`ModelChoice`: the model dropdown ("Default", the model library, model files, "From file…");
- :class:`Collapsible`: a titled section that opens and closes (rarely used settings stay out of the way);
- :func:`session_sync`: the signals that keep the widgets of a session in step (training folder, pairs
  added, models saved or renamed);
- :func:`register_segment_settings` / :func:`segment_settings`: where the case browser finds the
  Segment widget's :class:`~napari_nevus_seg.inference.options.SegmentOptions`.

Nothing here loads torch or the training code: the Measure widget uses these controls too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_warning
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg._napari._job import qt_deleted
from napari_nevus_seg._napari._layers import COLOUR_MAP_KIND, KIND_KEY, pixel_size_mm_from_layer, source_image
from napari_nevus_seg.inference.options import SegmentOptions


class SessionSync(QObject):
    """Keeps the widgets of a session in step: a training folder chosen or a pair added in one panel shows
    in all; a change of the saved models (made in a model manager) shows in every model choice."""

    folder_changed = Signal(str)
    pair_added = Signal()
    models_changed = Signal(object)   # {old file: new file} of models renamed ({} for other changes)


_SYNC: SessionSync | None = None


def session_sync() -> SessionSync:
    """The session's :class:`SessionSync` (made on first use)."""
    global _SYNC
    if _SYNC is None:
        _SYNC = SessionSync()
    return _SYNC


# widget -> (viewer, options getter) of the open Segment widgets; the case browser reads their settings
_SEGMENT_SETTINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register_segment_settings(widget: QWidget, viewer: Any, options: Callable[[], SegmentOptions]) -> None:
    """Offer ``options()`` as the segmentation settings of ``viewer`` while ``widget`` is docked."""
    _SEGMENT_SETTINGS[widget] = (viewer, options)


def segment_settings(viewer: Any) -> SegmentOptions | None:
    """The settings of the Segment widget docked in ``viewer`` (the last one opened), or None without one.

    A widget counts while its Qt object lives and it sits in a dock (it has a parent).
    """
    found = None
    for widget, (v, options) in list(_SEGMENT_SETTINGS.items()):
        if v is viewer and not qt_deleted(widget) and widget.parent() is not None:
            found = options
    return found() if found is not None else None


class LayerCombo(QComboBox):
    """The names of the viewer's layers of ``kind``, kept in sync when layers are added, removed or renamed.

    The choice follows the layer, not its name: a renamed layer stays chosen under its new name.
    ``extra`` is an entry after the layers (e.g. "(no image)"), for which :meth:`layer` returns None.
    """

    def __init__(self, viewer, kind: type, parent: QWidget | None = None, extra: str | None = None):
        super().__init__(parent)
        self.viewer, self.kind, self.extra = viewer, kind, extra
        self._chosen = None                      # the layer chosen (an object, so that renames keep it)
        self._watched: weakref.WeakSet = weakref.WeakSet()   # layers whose name event is connected
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self.refresh)
        self.currentIndexChanged.connect(self._remember)
        self.refresh()

    def _layers(self) -> list:
        # the plugin's own result images (probability maps) are not images to segment, measure or train on,
        # nor its colour maps lesions to measure or correct
        return [ly for ly in self.viewer.layers
                if isinstance(ly, self.kind) and not (isinstance(ly, Image) and ly.metadata.get(KIND_KEY))
                and ly.metadata.get(KIND_KEY) != COLOUR_MAP_KIND]

    def _remember(self, *_: Any) -> None:
        name = self.currentText()
        self._chosen = next((ly for ly in self._layers() if ly.name == name), None)

    def refresh(self, *_: Any) -> None:
        layers = self._layers()
        chosen = self._chosen if any(ly is self._chosen for ly in layers) else None
        lost = self._chosen is not None and chosen is None   # the chosen layer was removed
        current = self.currentText()
        names = [ly.name for ly in layers] + ([self.extra] if self.extra else [])
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if chosen is not None:
            self.setCurrentText(chosen.name)
        elif current == self.extra and current or lost and self.extra:
            self.setCurrentText(self.extra)   # never another layer in place of a removed one, where "none" exists
        self.blockSignals(False)
        self._remember()
        for ly in layers:
            if ly not in self._watched:
                ly.events.name.connect(self.refresh)
                self._watched.add(ly)
        if self.currentText() != current:  # a rename, or the chosen layer was removed
            self.currentTextChanged.emit(self.currentText())

    def layer(self):
        """The chosen layer (None when there is none, or the ``extra`` entry is chosen)."""
        return self._chosen if any(ly is self._chosen for ly in self._layers()) else None

    def select(self, name: str) -> None:
        self.refresh()
        self.setCurrentText(name)

    def select_source_of(self, labels) -> None:
        """Choose the image ``labels`` were segmented from (the metadata link), when it is open."""
        image = source_image(self.viewer, labels)
        if image is not None:
            self.select(image.name)



class ModelChoice(QComboBox):
    """"Default", the saved models of the model library, model files chosen before, and "From file…"."""

    DEFAULT = "Default"
    FROM_FILE = "From file…"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._files: list[str] = []
        self._last = 0
        self.refresh()
        self.activated.connect(self._on_activated)
        session_sync().models_changed.connect(self._on_models_changed)

    def _on_models_changed(self, renamed: dict[str, str]) -> None:
        """A model saved, renamed or deleted in a model manager: the list follows (a renamed choice too).
        A list not on screen (its widget removed, or not shown yet) refreshes when it is opened."""
        try:
            if not self.isVisible():
                return
            current = self.model_ref() if self.count() else None
            self.refresh(renamed.get(current) if current is not None else None)
        except RuntimeError:   # this list was closed with its widget
            pass

    def refresh(self, follow: str | None = None) -> None:
        """List the models again; ``follow``: the new file of the chosen model (renamed)."""
        current = follow or (self.model_ref() if self.count() else None)
        self.blockSignals(True)
        self.clear()
        self.addItem(self.DEFAULT, None)
        for entry in _library_entries():
            self.addItem(entry.name, str(entry.path))
            self.setItemData(self.count() - 1, str(entry.meta.get("training_data", entry.path)), 3)  # tooltip
        for f in self._files:
            self.addItem(Path(f).name, f)
            self.setItemData(self.count() - 1, f, 3)
        self.addItem(self.FROM_FILE, self.FROM_FILE)
        idx = self.findData(current) if current is not None else 0
        if idx < 0:   # renamed or deleted meanwhile (another window, the command line): said, not replaced
            self.insertItem(self.count() - 1, f"(missing) {Path(current).stem}", current)
            self.setItemData(self.count() - 2, f"{current} no longer exists: choose another model", 3)
            idx = self.count() - 2
            show_warning(f"the model {Path(current).stem!r} chosen for segmentation is gone ({current}); "
                         "choose another one")
        self.setCurrentIndex(idx)
        self._last = self.currentIndex()
        self.blockSignals(False)

    def showPopup(self) -> None:  # noqa: N802 - Qt name
        self.refresh()  # models saved since (e.g. by fine-tuning) appear
        super().showPopup()

    def add_file(self, path: str | Path) -> None:
        """Offer a model file and select it (the file is checked when the segmentation runs)."""
        path = str(Path(path).expanduser())
        if path not in self._files:
            self._files.append(path)
        self.refresh()
        self.setCurrentIndex(self.findData(path))
        self._last = self.currentIndex()

    def model_ref(self) -> str | None:
        """None for the default model, else a model file path, as :func:`load_model` takes it."""
        ref = self.currentData()
        return None if ref in (None, self.FROM_FILE) else str(ref)

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != self.FROM_FILE:
            self._last = index
            return
        path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Model files (*.pt *.pth);;All files (*)")
        if path:
            self.add_file(path)
        else:
            self.setCurrentIndex(self._last)


def _library_entries() -> list:
    try:
        from napari_nevus_seg.model.library import ModelLibrary

        return ModelLibrary().list()
    except Exception:  # noqa: BLE001 - an unreadable library must not break the widget
        return []


class PixelSizeBox(QWidget):
    """The pixel size used for measuring: the layers' scale and units, or one typed in here.

    ``get_layers()`` returns the (labels, image) layers whose scale and units count, the labels first.
    """

    def __init__(self, get_layers: Callable[[], tuple[Any, Any]], parent: QWidget | None = None):
        super().__init__(parent)
        self._get_layers = get_layers
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.set_here = QCheckBox("Set pixel size here (mm)")
        self.set_here.setToolTip("Use this pixel size (e.g. from the dermoscope's calibration) instead of the "
                                 "layer's scale and units")
        self.row = QDoubleSpinBox(decimals=5, minimum=0.00001, maximum=100.0, singleStep=0.001, value=0.01)
        self.col = QDoubleSpinBox(decimals=5, minimum=0.00001, maximum=100.0, singleStep=0.001, value=0.01)
        boxes = QHBoxLayout()
        for box, axis in ((self.row, "row (height)"), (self.col, "column (width)")):
            box.setSuffix(" mm")
            box.setToolTip(f"Size of a pixel along the {axis} in mm")
            box.setEnabled(False)
        boxes.addWidget(self.row)
        boxes.addWidget(QLabel("×"))
        boxes.addWidget(self.col)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label)
        lay.addWidget(self.set_here)
        lay.addLayout(boxes)
        self.set_here.toggled.connect(self._on_set_here)
        self.row.valueChanged.connect(self.update_label)   # the label says what is typed, as it is typed
        self.col.valueChanged.connect(self.update_label)

    def from_layers(self, labels: Any = None, image: Any = None) -> tuple[float, float] | None:
        """(row, column) mm from the scale and units of ``labels``, else ``image`` (default: the chosen layers)."""
        chosen = self._get_layers()
        for layer in (labels if labels is not None else chosen[0], image if image is not None else chosen[1]):
            px = pixel_size_mm_from_layer(layer) if layer is not None else None
            if px is not None:
                return px
        return None

    def pixel_size(self, labels: Any = None, image: Any = None) -> tuple[float, float] | None:
        """The fields' (row, column) mm when "Set pixel size here" is on, else :meth:`from_layers`."""
        if self.set_here.isChecked():
            return (float(self.row.value()), float(self.col.value()))
        return self.from_layers(labels, image)

    def _on_set_here(self, on: bool) -> None:
        if on:  # start from what the layers say
            px = self.from_layers()
            if px is not None:
                self.row.setValue(px[0])
                self.col.setValue(px[1])
        self.row.setEnabled(on)
        self.col.setEnabled(on)
        self.update_label()

    def update_label(self, *_: Any) -> None:
        """Say which pixel size is used, and where it comes from."""
        px = self.pixel_size()
        if px is None:
            text = "Pixel size unknown: lengths in pixels (set the layer's scale and units, or set it here)"
        else:
            src = "set here" if self.set_here.isChecked() else "from the layer's scale and units"
            text = f"Pixel size {px[0] * 1000:.4g} × {px[1] * 1000:.4g} µm ({src})"
        self.label.setText(text)


class Collapsible(QWidget):
    """A section with a title that opens and closes: ``toggle`` (an arrow and the title) shows or hides ``content``.

    Closed, it takes one line: a dock of settings fits a small screen, and the settings are one click away.
    """

    def __init__(self, title: str, content: QWidget, expanded: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.content = content
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self.set_expanded)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.toggle)
        lay.addWidget(content)
        self.set_expanded(expanded)

    def set_expanded(self, on: bool) -> None:
        """Open (``True``) or close the section."""
        if self.toggle.isChecked() != on:
            self.toggle.setChecked(on)       # comes back here through ``toggled``
            return
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)

    def expanded(self) -> bool:
        """Whether the section is open."""
        return self.toggle.isChecked()
