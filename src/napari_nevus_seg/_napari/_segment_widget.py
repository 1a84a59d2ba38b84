"""The "Segment lesions" dock widget: one click from an image layer to a Labels layer of lesions.

Thin: the work is :func:`napari_nevus_seg.segment` (with its probabilities when asked) run in a
napari thread worker (a napari progress bar, a Cancel button that stops it between planes or stages);
the result goes to the layer it was computed for, even if the user selected or renamed layers meanwhile.
From the console::

    w = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Segment lesions")[1]
    w.run()          # returns the worker; w.labels_layer is the result layer once it has returned
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import napari
import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg import available_devices, load_model, segment
from napari_nevus_seg._napari._layers import (
    KIND_KEY,
    add_or_update_image,
    add_or_update_labels,
    find_result_layer,
    layer_array,
    rgb_from_data,
)
from napari_nevus_seg._napari._shared import LayerCombo, StopsWorkWhenRemoved, _sync, qt_deleted, while_open

BATCH = 8  # planes of a stack per step (one network batch; Cancel acts between steps)


@dataclass
class SegmentJob:
    """What a run was started for: the result goes to these layers whatever happens in the viewer meanwhile."""

    image: Image
    labels_target: Labels | None
    prob_target: Image | None
    params: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


class SegmentError(Exception):
    """A RuntimeError of the worker (out of GPU memory, an unavailable device, ...) passed on as a plain error.

    superqt's generator workers take a RuntimeError for "the worker was deleted" and end without emitting
    ``errored`` or ``finished``: the widget would wait for ever.
    """


def segment_layer_data(*args: Any, **kwargs: Any):
    """Generator run in the worker thread: yields ``(done, total, message)``, returns ``(labels, prob, note)``.

    ``labels`` is (H, W) int32 for an image and (N, H, W) for a stack; ``prob`` is float32 or None.
    Arguments as :func:`_segment_steps`; a RuntimeError comes out as :class:`SegmentError`.
    """
    try:
        return (yield from _segment_steps(*args, **kwargs))
    except RuntimeError as exc:
        raise SegmentError(str(exc) or type(exc).__name__) from exc


def _segment_steps(data: Any, rgb: bool, name: str, model_ref: str | None, device: str, threshold: float,
                   tta: bool, min_size: int | None, largest_only: bool, with_prob: bool, refine: bool = True):
    yield 0, 1, "reading image"
    shape = tuple(getattr(data, "shape", np.shape(data)))
    note = "" if (rgb and shape[-1:] == (3,) and getattr(data, "dtype", None) == np.uint8) else \
        f"{name!r} was converted to 8-bit RGB for segmentation"
    single = len(shape) == (3 if rgb else 2)
    if len(shape) > (4 if rgb else 3):
        raise ValueError(f"image {name!r} has shape {shape}: segment a 2-D image, or a stack of them along "
                         "one axis (split the other axes into layers first)")
    if single:
        image = rgb_from_data(data, rgb, name)
        n, plane_shape = 1, image.shape[:2]
    else:   # a stack is read a batch of planes at a time: a large (e.g. lazy, dask) stack is never copied whole
        n = shape[0]
        plane_shape = tuple(shape[1:3] if rgb else shape[1:])
        if n:
            rgb_from_data(data[:1], rgb, name)   # shape and size checked before the model loads
    yield 0, n, "loading model"
    model = load_model(model_ref)
    labels = np.zeros((n, *plane_shape), np.int32)
    prob = np.zeros((n, *plane_shape), np.float32) if with_prob else None
    for i in range(0, n, BATCH):
        chunk = image[None] if single else rgb_from_data(data[i:i + BATCH], rgb, name)
        result = segment(chunk, model=model, device=device, threshold=threshold, tta=tta, min_size=min_size,
                         largest_only=largest_only, refine=refine, return_proba=with_prob)
        if with_prob:   # one pass of the network gives both
            labels[i:i + len(chunk)], prob[i:i + len(chunk)] = result
        else:
            labels[i:i + len(chunk)] = result
        yield i + len(chunk), n, f"segmented {i + len(chunk)}/{n}" if n > 1 else "segmented"
    if single:
        labels, prob = labels[0], None if prob is None else prob[0]
    return labels, prob, note


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
        _sync().models_changed.connect(self._on_models_changed)

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


class SegmentWidget(StopsWorkWhenRemoved, QWidget):
    """Segment lesions of an image layer into the Labels layer ``<image> lesions``."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.worker = None
        self.job: SegmentJob | None = None
        self.labels_layer: Labels | None = None
        self.prob_layer: Image | None = None
        self._pbar = None

        self.image_combo = LayerCombo(viewer, Image)
        self.model_combo = ModelChoice()
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", *available_devices()])
        self.device_combo.setToolTip("auto: CUDA GPU, then Apple MPS, then CPU")
        self.threshold = QDoubleSpinBox(minimum=0.05, maximum=0.95, singleStep=0.05, value=0.5)
        self.threshold.setToolTip("Lesion where the network's probability is above this value")
        self.min_size = QSpinBox(minimum=0, maximum=10_000_000, singleStep=50, value=0)
        self.min_size.setSpecialValueText("auto (0.1 % of the image)")
        self.min_size.setSuffix(" px")
        self.tta = QCheckBox("Test-time augmentation (flips; 4x slower, smoother)")
        self.largest_only = QCheckBox("Largest lesion only")
        self.refine = QCheckBox("Refine outline to the visible pigment edge")
        self.refine.setChecked(True)
        self.refine.setToolTip("Re-decide a band around the network's outline from the image's own lesion and "
                               "skin colours (tight, PH2-like outlines); off: the network's looser outline")
        self.with_prob = QCheckBox("Also add the probability map")
        self.with_prob.setToolTip("The network's own per-pixel lesion probability (before any outline refinement)")
        self.run_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image:", self.image_combo)
        form.addRow("Model:", self.model_combo)
        form.addRow("Device:", self.device_combo)
        form.addRow("Threshold:", self.threshold)
        form.addRow("Min lesion size:", self.min_size)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.refine, self.tta, self.largest_only, self.with_prob):
            lay.addWidget(w)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._follow_selection()

    # ----------------------------------------------------------------------------------- actions
    def _follow_selection(self, *_: Any) -> None:
        active = self.viewer.layers.selection.active
        # a running job keeps its own layer; a probability map this widget added is not followed
        if isinstance(active, Image) and KIND_KEY not in active.metadata:
            self.image_combo.select(active.name)

    def params(self) -> dict[str, Any]:
        return {"model_ref": self.model_combo.model_ref(), "device": self.device_combo.currentText(),
                "threshold": float(self.threshold.value()), "tta": self.tta.isChecked(),
                "min_size": int(self.min_size.value()) or None, "largest_only": self.largest_only.isChecked(),
                "with_prob": self.with_prob.isChecked(), "refine": self.refine.isChecked()}

    def run(self):
        """Segment the chosen image layer in a worker thread; returns the worker (None if nothing started)."""
        if self.worker is not None:
            show_info("a segmentation is already running")
            return None
        layer = self.image_combo.layer()
        if layer is None:
            show_error("Segment lesions: open or choose an image layer first")
            return None
        params = self.params()
        self.job = SegmentJob(layer, find_result_layer(self.viewer, layer, "lesions"),
                              find_result_layer(self.viewer, layer, "probability", Image), params)
        self.worker = create_worker(segment_layer_data, layer_array(layer), bool(layer.rgb), layer.name,
                                    _ignore_errors=True, _start_thread=False, **params)
        self._pbar = progress(total=1, desc=f"Segmenting {layer.name}")
        self.worker.yielded.connect(self._on_yielded)
        self.worker.returned.connect(partial(self._on_returned, self.job))
        self.worker.errored.connect(partial(self._on_errored, self.job))
        self.worker.aborted.connect(partial(self._on_aborted, self.job))
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Segmenting {layer.name!r}…")
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop the running segmentation (at the next plane or stage); no layer is changed."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("Cancelling…")

    # ----------------------------------------------------------------------------------- results
    @while_open
    def _on_yielded(self, msg) -> None:
        done, total, text = msg
        pbar = self._pbar  # napari may process events while it redraws: keep a local reference
        if pbar is not None:
            pbar.total = total
            pbar.n = done
            pbar.set_description(f"Segmenting {self.job.image.name}: {text}" if self.job else text)

    @while_open
    def _on_returned(self, job: SegmentJob, result) -> None:
        labels, prob, note = result
        image = job.image
        try:
            self.labels_layer = add_or_update_labels(self.viewer, f"{image.name} lesions", labels, like=image,
                                                     target=job.labels_target)
            if prob is not None:
                self.prob_layer = add_or_update_image(
                    self.viewer, f"{image.name} lesion probability", prob, like=image, target=job.prob_target,
                    colormap="magma", contrast_limits=(0.0, 1.0), blending="additive", opacity=0.6)
        except Exception as exc:  # noqa: BLE001 - report, never crash napari
            show_error(f"Segment lesions: could not add the result layer: {exc}")
            return
        counts = [int(labels[i].max()) for i in range(len(labels))] if labels.ndim == 3 else [int(labels.max())]
        found = f"{sum(counts)} lesion(s) in {len(counts)} planes" if labels.ndim == 3 else f"{counts[0]} lesion(s)"
        msg = f"{found} in {image.name!r} ({time.perf_counter() - job.started:.1f} s)"
        if image not in self.viewer.layers:
            msg += "; its image layer was removed meanwhile"
        self.status.setText(msg + (f"; {note}" if note else ""))
        show_info(f"Segment lesions: {msg}")

    @while_open
    def _on_errored(self, job: SegmentJob, exc: Exception) -> None:
        self.status.setText(f"Failed: {exc}")
        show_error(f"Segment lesions failed for {job.image.name!r}: {exc}")

    @while_open
    def _on_aborted(self, job: SegmentJob) -> None:
        self.status.setText(f"Cancelled; {job.image.name!r} unchanged")
        show_info(f"Segment lesions: cancelled ({job.image.name!r} unchanged)")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        if qt_deleted(self):   # closed with the viewer
            return
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
