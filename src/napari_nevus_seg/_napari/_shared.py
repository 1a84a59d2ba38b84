"""Pieces shared by the fine-tuning widget, the model manager and the case browser (they call the API).

- :class:`TrainingSetPanel`: training folder, pair count and the "Add to training set" button, which
  writes the image and its corrected mask to a :class:`~napari_nevus_seg.training.store.TrainingStore` at once;
- :func:`pair_from_layers`: the (image, mask) arrays of an Image and a Labels layer, checked;
- :func:`describe_model`: a saved model's metadata in one line.

The training code is imported when it is used, not with this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from napari_nevus_seg._napari._controls import session_sync
from napari_nevus_seg._napari._layers import SOURCE_KEY, image_data_rgb, layer_array, source_id
from napari_nevus_seg.io.text import plural
from napari_nevus_seg.io.warning_capture import recorded_warnings

if TYPE_CHECKING:
    from napari_nevus_seg.training.store import TrainingStore



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


def describe_model(meta: dict[str, Any]) -> str:
    """One line about a saved model from its metadata: how it was fine-tuned (base, pairs, date, Dice before
    and after, on which pairs), else the data it was trained on."""
    ft = meta.get("fine_tune")
    if isinstance(ft, dict) and ft.get("after_dice") is not None and ft.get("before_dice") is not None:
        try:
            from napari_nevus_seg.training.finetune_report import FineTuneResult

            report = FineTuneResult.from_report(ft)
        except Exception:  # noqa: BLE001 - a report in another shape: the figures alone
            return f"fine-tuned from {ft.get('base')}: Dice {ft['before_dice']} -> {ft['after_dice']}"
        # the basis the report names: held-out pairs, or the training pairs (too few to hold any out)
        return (f"fine-tuned from {report.base} on {plural(report.n_pairs or 0, 'pair')}, "
                f"{str(report.date or '')[:10]}; Dice {report.before_dice:.3f} -> {report.after_dice:.3f} "
                f"({report.change}) on {report.basis}")
    return str(meta.get("training_data", meta.get("error", "")))


class TrainingSetPanel(QWidget):
    """Training folder chooser, pair count and "Add to training set".

    ``get_layers()`` returns the (image layer, labels layer) to add. Pairs are written at once. All
    panels (the fine-tuning widget's and the case browser's) follow a folder chosen in any of them.
    """

    added = Signal(str)   # name of the stored pair

    def __init__(self, get_layers: Callable[[], tuple[Any, Any]], parent: QWidget | None = None):
        super().__init__(parent)
        self._get_layers = get_layers
        from napari_nevus_seg.training.store import default_store_dir

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
        session_sync().folder_changed.connect(self._follow_folder)
        session_sync().pair_added.connect(self._follow_add)

    @property
    def store(self) -> TrainingStore:
        """The training set in the chosen folder."""
        from napari_nevus_seg.training.store import TrainingStore, default_store_dir

        return TrainingStore(Path(self.folder_edit.text().strip() or default_store_dir()).expanduser())

    def set_folder(self, folder: str | Path) -> None:
        """Use ``folder`` for the training set (here and in the other open panels)."""
        self.folder_edit.setText(str(folder))
        self.update_count()
        session_sync().folder_changed.emit(str(folder))

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
        with recorded_warnings() as caught:   # e.g. an empty mask: shown, not lost in a log
            pair = self.store.add(img, mask, image.name)
        for w in caught:
            show_warning(str(w.message))
        session_sync().pair_added.emit()
        show_info(f"added {pair.name!r} to the training set ({plural(len(self.store), 'pair')} in "
                  f"{self.store.folder})")
        self.added.emit(pair.name)
        return pair.name
