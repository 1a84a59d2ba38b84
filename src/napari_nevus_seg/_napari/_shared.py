"""Pieces shared by the fine-tuning widget and the case browser (no logic of their own: they call the API).

- :class:`LayerCombo`: a combo box of the viewer's layers of one type, kept in sync with the layer list;
- :class:`TrainingSetPanel`: training folder, pair count and the "Add to training set" button, which
  writes the image and its corrected mask to a :class:`~napari_nevus_seg.training_store.TrainingStore` at once;
- :func:`pair_from_layers`: the (image, mask) arrays of an Image and a Labels layer, checked;
- :class:`ProgressBridge`: carries progress dicts from a worker thread to the GUI thread.
"""

from __future__ import annotations

import functools
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from napari_nevus_seg._napari._layers import KIND_KEY, SOURCE_KEY, image_data_rgb, layer_array, source_id, source_image
from napari_nevus_seg.io.text import plural
from napari_nevus_seg.training.finetune_report import FineTuneResult
from napari_nevus_seg.training.store import TrainingStore, default_store_dir


class WorkerCancel:
    """The cancel flag handed to a function worker's job (``is_set()`` is polled by the API's loops).

    It is set by the widget's Cancel button, or by napari asking the worker to quit: closing the viewer's
    window cancels every running task through ``worker.quit()``, which a plain function never sees.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.worker = None

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set() or bool(getattr(self.worker, "abort_requested", False))


def qt_deleted(widget: QObject) -> bool:
    """True once a widget's Qt object is gone (its dock or the viewer's window was closed)."""
    try:
        widget.objectName()
    except RuntimeError:   # "wrapped C/C++ object ... has been deleted"
        return True
    return False


def while_open(callback: Callable) -> Callable:
    """For a widget's worker callbacks: skipped once the widget is closed, so that a result or a
    cancellation arriving after the viewer's window closed gives no traceback (its labels are gone)."""

    @functools.wraps(callback)
    def run(self, *args, **kwargs):
        if qt_deleted(self):
            return None
        try:
            return callback(self, *args, **kwargs)
        except RuntimeError:
            if qt_deleted(self) or any(qt_deleted(w) for w in vars(self).values() if isinstance(w, QObject)):
                return None   # closed while the callback ran
            raise

    return run


class StopsWorkWhenRemoved:
    """Mixin for the dock widgets: removing the widget from the viewer cancels its running work.

    napari's ``remove_dock_widget`` only takes the widget out of its dock (``setParent(None)``): neither
    ``closeEvent`` nor ``destroyed`` comes, and a fine-tuning would go on training unseen.
    """

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.ParentChange and self.parent() is None and getattr(self, "worker", None):
            self.cancel()
        return super().event(e)


class ProgressBridge(QObject):
    """``bridge.emit(d)`` may be called from any thread; ``bridge.changed`` is delivered in the GUI thread."""

    changed = Signal(object)

    def emit(self, d: dict[str, Any]) -> None:
        self.changed.emit(dict(d))


def pair_from_layers(image: Image | None, labels: Labels | None) -> tuple[np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, mask (H, W) bool) from two layers, with a clear error when they do not fit."""
    if image is None:
        raise ValueError("choose an image layer")
    if labels is None:
        raise ValueError("choose a Labels layer holding the (corrected) lesion outline")
    source = labels.metadata.get(SOURCE_KEY)
    if source is not None and source != source_id(image):
        raise ValueError(f"Labels layer {labels.name!r} was segmented from another image than {image.name!r}: "
                         "choose the image it belongs to")
    img = image_data_rgb(image)
    lab = np.asarray(layer_array(labels))
    if img.ndim != 3 or lab.ndim != 2:
        raise ValueError(f"only single 2-D images can be added ({image.name!r}: {img.shape}, {labels.name!r}: "
                         f"{lab.shape}); split stacks into single images first")
    if lab.shape != img.shape[:2]:
        raise ValueError(f"Labels layer {labels.name!r} is {lab.shape[1]}x{lab.shape[0]} but image {image.name!r} "
                         f"is {img.shape[1]}x{img.shape[0]}: choose the labels that belong to this image")
    return img, lab != 0


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
        # the plugin's own result images (probability maps) are not images to segment, measure or train on
        return [ly for ly in self.viewer.layers
                if isinstance(ly, self.kind) and not (isinstance(ly, Image) and ly.metadata.get(KIND_KEY))]

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


def _describe(meta: dict[str, Any]) -> str:
    ft = meta.get("fine_tune")
    if isinstance(ft, dict) and ft.get("after_dice") is not None and ft.get("before_dice") is not None:
        try:
            report = FineTuneResult.from_report(ft)
        except Exception:  # noqa: BLE001 - a report in another shape: the figures alone
            return f"fine-tuned from {ft.get('base')}: Dice {ft['before_dice']} -> {ft['after_dice']}"
        # the basis the report names: held-out pairs, or the training pairs (too few to hold any out)
        return (f"fine-tuned from {report.base} on {plural(report.n_pairs or 0, 'pair')}, "
                f"{str(report.date or '')[:10]}; Dice {report.before_dice:.3f} -> {report.after_dice:.3f} "
                f"({report.change}) on {report.basis}")
    return str(meta.get("training_data", meta.get("error", "")))


class _TrainingSetSync(QObject):
    """Keeps the widgets of a session in step: a training folder chosen or a pair added in one panel shows
    in all; a change of the saved models (made in a model manager) shows in every model choice."""

    folder_changed = Signal(str)
    pair_added = Signal()
    models_changed = Signal(object)   # {old file: new file} of models renamed ({} for other changes)


_SYNC: _TrainingSetSync | None = None


def _sync() -> _TrainingSetSync:
    global _SYNC
    if _SYNC is None:
        _SYNC = _TrainingSetSync()
    return _SYNC


class TrainingSetPanel(QWidget):
    """Training folder chooser, pair count and "Add to training set".

    ``get_layers()`` returns the (image layer, labels layer) to add. Pairs are written at once. All
    panels (the fine-tuning widget's and the case browser's) follow a folder chosen in any of them.
    """

    added = Signal(str)   # name of the stored pair

    def __init__(self, get_layers: Callable[[], tuple[Any, Any]], parent: QWidget | None = None):
        super().__init__(parent)
        self._get_layers = get_layers
        self.folder_edit = QLineEdit(str(default_store_dir()))
        self.folder_edit.setToolTip("Folder of the training set: images/ and masks/ are written here at once")
        self.folder_edit.editingFinished.connect(lambda: self.set_folder(self.folder_edit.text()))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        self.add_button = QPushButton("Add to training set")
        self.add_button.setToolTip("Write the image and its corrected outline to the training folder now")
        self.add_button.clicked.connect(self._on_add)
        self.count_label = QLabel()
        row = QHBoxLayout()
        row.addWidget(QLabel("Training folder:"))
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        row2 = QHBoxLayout()
        row2.addWidget(self.add_button)
        row2.addWidget(self.count_label, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addLayout(row2)
        self.update_count()
        _sync().folder_changed.connect(self._follow_folder)
        _sync().pair_added.connect(self._follow_add)

    @property
    def store(self) -> TrainingStore:
        return TrainingStore(Path(self.folder_edit.text().strip() or default_store_dir()).expanduser())

    def set_folder(self, folder: str | Path) -> None:
        """Use ``folder`` for the training set (here and in the other open panels)."""
        self.folder_edit.setText(str(folder))
        self.update_count()
        _sync().folder_changed.emit(str(folder))

    def _follow_folder(self, folder: str) -> None:
        try:
            if self.folder_edit.text() != folder:
                self.folder_edit.setText(folder)
                self.update_count()
        except RuntimeError:   # this panel's Qt objects were deleted (its widget was closed)
            pass

    def _follow_add(self) -> None:
        try:
            self.update_count()
        except RuntimeError:
            pass

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training folder", self.folder_edit.text())
        if folder:
            self.set_folder(folder)

    def update_count(self) -> None:
        n = len(self.store)
        self.count_label.setText(f"{n} pair{'s' if n != 1 else ''} in the training set")

    def _on_add(self) -> None:
        try:
            self.add_current()
        except (ValueError, OSError) as exc:
            show_error(f"not added to the training set: {exc}")

    def add_current(self) -> str:
        """Add the current (image, labels) pair; returns the stored name. Errors go to a notification."""
        image, labels = self._get_layers()
        img, mask = pair_from_layers(image, labels)
        with warnings.catch_warnings(record=True) as caught:   # e.g. an empty mask: shown, not lost in a log
            warnings.simplefilter("always")
            pair = self.store.add(img, mask, image.name)
        for w in caught:
            show_warning(str(w.message))
        _sync().pair_added.emit()
        show_info(f"added {pair.name!r} to the training set ({plural(len(self.store), 'pair')} in "
                  f"{self.store.folder})")
        self.added.emit(pair.name)
        return pair.name
