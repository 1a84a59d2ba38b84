"""The "Segment lesions" dock widget: one click from an image layer to a Labels layer of lesions.

Thin: the work is :func:`napari_nevus_seg.segment` (with its probabilities when asked), run by a
:class:`~napari_nevus_seg._napari._job.BackgroundJob` (a napari progress bar, a Cancel button that stops
it between batches of planes or stages); the result goes to the layer it was computed for, even if the
user selected or renamed layers meanwhile. The widget's settings are a
:class:`~napari_nevus_seg.inference.options.SegmentOptions` (:meth:`SegmentWidget.options`), which the
case browser reads too. From the console::

    w = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Segment lesions")[1]
    w.run()          # returns the worker; w.labels_layer is the result layer once it has returned
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import napari
import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg import available_devices, labels_from_map, load_model, network_map, segment
from napari_nevus_seg._napari._controls import LayerCombo, ModelChoice, register_segment_settings
from napari_nevus_seg._napari._convention_choice import ConventionChoice, model_key
from napari_nevus_seg._napari._dock_scroll import scroll_contents
from napari_nevus_seg._napari._features import layer_features
from napari_nevus_seg._napari._job import BackgroundJob, CancelToken
from napari_nevus_seg._napari._layers import (
    KIND_KEY,
    add_or_update_image,
    add_or_update_labels,
    find_result_layer,
    layer_array,
    rgb_from_data,
    show_outlines,
)
from napari_nevus_seg._napari._reader_choice import is_default_reader, set_default_reader
from napari_nevus_seg._napari._shortcuts import bind_shortcut, shortcut_text
from napari_nevus_seg.inference.confidence import CONFIDENCE_COLUMN, REVIEW_BELOW
from napari_nevus_seg.inference.options import SegmentOptions

BATCH = 8  # planes of a stack per step (one network batch; Cancel acts between steps)


@dataclass
class SegmentTarget:
    """What a run was started for: the result goes here whatever happens in the viewer meanwhile."""

    image: Image
    labels_target: Labels | None
    prob_target: Image | None
    started: float = field(default_factory=time.perf_counter)
    from_map: bool = False         # outlined from the kept network map (no network run)


@dataclass
class NetworkMap:
    """The network's map of one image layer's array, kept so that a new threshold needs no network run."""

    data: Any                  # the layer's array it was computed from (compared by identity)
    key: tuple                 # (model, device, TTA): what the map depends on
    plane: np.ndarray          # the image as 8-bit RGB
    small: Any                 # the network's map (network_map)
    model: Any                 # the loaded model (its calibration gives the confidence)

    def fits(self, data: Any, options: SegmentOptions) -> bool:
        """True when this map is the network's answer for ``data`` under ``options``."""
        return data is self.data and self.key == map_key(options)


def map_key(options: SegmentOptions) -> tuple:
    """The settings the network's map depends on (threshold, smallest size, largest-only, the
    refinement and the zoomed second look are applied to the map afterwards), with a model file's modification time (a model saved
    again under the same name is another model)."""
    return (*model_key(options.model), options.device, options.tta, options.convention)


def _reporter(cancel: CancelToken | None, progress: Callable[[dict], None] | None) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, text: str) -> None:
        if progress is not None:
            progress({"step": done, "steps": total, "text": text})
        if cancel is not None:
            cancel.raise_if_set(f"cancelled ({text})")
    return report


def _loaded_model(options: SegmentOptions, cancel: CancelToken | None) -> Any:
    model = options.model
    model = load_model(model) if not hasattr(model, "net") else model
    if options.convention is not None:
        model = model.with_convention(options.convention)
    if cancel is not None:
        cancel.raise_if_set("cancelled (model loaded)")
    return model


def segment_layer_data(data: Any, rgb: bool, name: str, options: SegmentOptions, with_prob: bool = False, *,
                       cancel: CancelToken | None = None, progress: Callable[[dict], None] | None = None):
    """Segment an image layer's data (run in the worker thread); returns ``(labels, prob, note, confidence)``
    (``confidence``: one ``{label: expected Dice}`` per plane).

    ``data`` is the layer's array (``rgb`` as the layer says): one image, or a stack along the first
    axis, read ``BATCH`` planes at a time so that a large lazy (dask) stack is never copied whole.
    ``labels`` is (H, W) int32 for an image and (N, H, W) for a stack; ``prob`` is float32 or None;
    ``note`` says when the image was converted to 8-bit RGB. ``cancel`` is checked before the model
    loads and between batches (:class:`~napari_nevus_seg._napari._job.JobCancelled`); ``progress``
    receives ``{"step", "steps", "text"}``.
    """
    report = _reporter(cancel, progress)
    report(0, 1, "reading image")
    shape = tuple(getattr(data, "shape", np.shape(data)))
    note = "" if (rgb and shape[-1:] == (3,) and getattr(data, "dtype", None) == np.uint8) else \
        f"{name!r} was converted to 8-bit RGB for segmentation"
    if len(shape) > (4 if rgb else 3):
        raise ValueError(f"image {name!r} has shape {shape}: segment a 2-D image, or a stack of them along "
                         "one axis (split the other axes into layers first)")
    if len(shape) == (3 if rgb else 2):
        labels, prob, confidence, _ = _segment_one(data, rgb, name, options, with_prob, report, cancel)
        return labels, prob, note, [confidence]
    n = shape[0]
    plane_shape = tuple(shape[1:3] if rgb else shape[1:])
    if n:
        rgb_from_data(data[:1], rgb, name)   # shape and size checked before the model loads
    report(0, n, "loading model")
    kwargs = options.segment_kwargs()
    kwargs["model"] = _loaded_model(options, cancel)
    labels = np.zeros((n, *plane_shape), np.int32)
    prob = np.zeros((n, *plane_shape), np.float32) if with_prob else None
    confidence: list[dict[int, float]] = []
    for i in range(0, n, BATCH):
        chunk = rgb_from_data(data[i:i + BATCH], rgb, name)
        result = segment(chunk, return_proba=with_prob, return_confidence=True, **kwargs)
        if with_prob:   # one pass of the network gives all three
            labels[i:i + len(chunk)], prob[i:i + len(chunk)], conf = result
        else:
            labels[i:i + len(chunk)], conf = result
        confidence += conf
        report(i + len(chunk), n, f"segmented {i + len(chunk)}/{n}")
    return labels, prob, note, confidence


def segment_image_data(data: Any, rgb: bool, name: str, options: SegmentOptions, with_prob: bool = False, *,
                       cancel: CancelToken | None = None, progress: Callable[[dict], None] | None = None):
    """:func:`segment_layer_data` for one 2-D image, also returning the network's map for later thresholds:
    ``(labels, prob, note, [confidence], NetworkMap)``."""
    report = _reporter(cancel, progress)
    report(0, 1, "reading image")
    labels, prob, confidence, netmap = _segment_one(data, rgb, name, options, with_prob, report, cancel)
    shape = tuple(getattr(data, "shape", np.shape(data)))
    note = "" if (rgb and shape[-1:] == (3,) and getattr(data, "dtype", None) == np.uint8) else \
        f"{name!r} was converted to 8-bit RGB for segmentation"
    return labels, prob, note, [confidence], netmap


def _segment_one(data, rgb, name, options, with_prob, report, cancel):
    """One image through the network, then its map to labels: (labels, prob or None, confidence, NetworkMap)."""
    image = rgb_from_data(data, rgb, name)
    report(0, 1, "loading model")
    model = _loaded_model(options, cancel)
    plane, small = network_map(image, model=model, device=options.device, tta=options.tta)
    report(0, 1, "outlining")
    netmap = NetworkMap(data, map_key(options), plane, small, model)
    labels, prob, confidence = labels_from_network_map(netmap, options, with_prob)
    report(1, 1, "segmented")
    return labels, prob, confidence, netmap


def labels_from_network_map(netmap: NetworkMap, options: SegmentOptions, with_prob: bool = False):
    """Labels (int32), the probability map (or None) and the confidence from a kept map, without the network."""
    result = labels_from_map(netmap.plane, netmap.small, netmap.model, threshold=options.threshold,
                             min_size=options.min_size, largest_only=options.largest_only, refine=options.refine,
                             return_proba=with_prob, return_confidence=True, zoom_small=options.zoom_small,
                             device=options.device, tta=options.tta)
    labels, prob, confidence = result if with_prob else (result[0], None, result[1])
    return labels.astype(np.int32, copy=False), prob, confidence


def relabel_from_map(netmap: NetworkMap, options: SegmentOptions, with_prob: bool = False, *,
                     cancel: CancelToken | None = None, progress: Callable[[dict], None] | None = None):
    """A new threshold (smallest size, largest only, refinement) on a kept map: the result of
    :func:`segment_image_data` without the network (run in the worker thread)."""
    report = _reporter(cancel, progress)
    report(0, 1, "outlining from the last probability map")
    labels, prob, confidence = labels_from_network_map(netmap, options, with_prob)
    report(1, 1, "outlined")
    return labels, prob, "", [confidence], netmap


class SegmentWidget(QWidget):
    """Segment lesions of an image layer into the Labels layer ``<image> lesions``."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.labels_layer: Labels | None = None
        self.prob_layer: Image | None = None
        self._netmap: NetworkMap | None = None   # the last single image's network map (a new threshold reuses it)
        viewer.layers.events.removed.connect(self._forget_closed_image)

        self.image_combo = LayerCombo(viewer, Image)
        self.model_combo = ModelChoice()
        self.convention = ConventionChoice()
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
                               "skin colours (tight, PH2-like outlines); off: the network's looser outline. "
                               "Set from the chosen model (a model fine-tuned on your outlines says which of "
                               "the two matched them better); you may change it")
        self.zoom_small = QCheckBox("Look again at small lesions, zoomed")
        self.zoom_small.setChecked(True)
        self.zoom_small.setToolTip("A lesion under 5 % of the frame is segmented again on a crop around it, where "
                                   "the network sees it at several times the resolution, and that outline is kept")
        self.fill = QCheckBox("Fill lesions (outlines otherwise)")
        self.fill.setToolTip("Outlines keep the pigment visible, to judge them against the image; fill to see "
                             "which label each lesion has")
        self.default_reader = QCheckBox("Open image files with this plugin (with expert masks)")
        self.default_reader.setToolTip("napari opens PNG, JPEG, BMP and TIFF files with this plugin's reader "
                                       "without asking which reader to use, and adds the expert mask found "
                                       "beside an image (PH2, ISIC). Saved in napari's preferences "
                                       "(Preferences > Plugins); untick to let napari ask again")
        self.default_reader.setChecked(is_default_reader())
        self.default_reader.toggled.connect(set_default_reader)
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
        form.addRow(self.convention.label, self.convention.combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for w in (self.refine, self.zoom_small, self.tta, self.largest_only, self.with_prob, self.fill):
            lay.addWidget(w)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.default_reader)
        lay.addStretch(1)
        scroll_contents(self)

        self.task = BackgroundJob(self, "Segment lesions", run_button=self.run_button,
                                  cancel_button=self.cancel_button, status=self.status, on_result=self._on_result,
                                  on_cancelled=lambda target: f"Cancelled; {target.image.name!r} unchanged")
        self.model_combo.currentIndexChanged.connect(lambda *_: self._follow(self.convention.show_for(
            self.model_combo.model_ref())))
        self.convention.changed.connect(lambda: self._follow(self.convention.refines()))
        self.run_button.clicked.connect(lambda: self.run())
        self.run_button.setToolTip(f"Segment the chosen image ({shortcut_text('segment')} in the viewer)")
        bind_shortcut(self, viewer, "segment", self.run)
        self.fill.toggled.connect(self._show_fill)
        register_segment_settings(self, viewer, self.options)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._follow_selection()

    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.task.worker

    # ----------------------------------------------------------------------------------- actions
    def _follow_selection(self, *_: Any) -> None:
        active = self.viewer.layers.selection.active
        # a running job keeps its own layer; a probability map this widget added is not followed
        if isinstance(active, Image) and KIND_KEY not in active.metadata:
            self.image_combo.select(active.name)

    def _follow(self, refines: bool | None) -> None:
        """Tick the refinement box as the chosen model (and outline convention) says: a fine-tuned model
        records its users' convention, a conditioned model one per convention; None: the model was unreadable."""
        if refines is not None:
            self.refine.setChecked(refines)

    def options(self) -> SegmentOptions:
        """The segmentation settings chosen in the widget."""
        return SegmentOptions(model=self.model_combo.model_ref(), device=self.device_combo.currentText(),
                              threshold=float(self.threshold.value()), tta=self.tta.isChecked(),
                              min_size=int(self.min_size.value()) or None,
                              largest_only=self.largest_only.isChecked(), refine=self.refine.isChecked(),
                              zoom_small=self.zoom_small.isChecked(),
                              convention=self.convention.value_for(self.model_combo.model_ref()))

    def run(self):
        """Segment the chosen image layer in a worker thread; returns the worker (None if nothing started)."""
        if self.task.running:
            show_info("Segment lesions: a segmentation is already running")
            return None
        layer = self.image_combo.layer()
        if layer is None:
            show_error("Segment lesions: open or choose an image layer first")
            return None
        target = SegmentTarget(layer, find_result_layer(self.viewer, layer, "lesions"),
                               find_result_layer(self.viewer, layer, "probability", Image))
        data, options, with_prob = layer_array(layer), self.options(), self.with_prob.isChecked()
        if self._netmap is not None and self._netmap.fits(data, options):
            target.from_map = True   # only the threshold, size or refinement changed: no network run
            return self.task.start(relabel_from_map, self._netmap, options, with_prob, target=target,
                                   desc=f"Outlining {layer.name!r} from its probability map")
        single = np.ndim(data) == (3 if layer.rgb else 2)
        job = segment_image_data if single else segment_layer_data
        return self.task.start(job, data, bool(layer.rgb), layer.name, options, with_prob, target=target,
                               desc=f"Segmenting {layer.name!r}")

    def _show_fill(self, fill: bool) -> None:
        """The Fill checkbox: the last result layer drawn filled or as outlines."""
        if self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            show_outlines(self.labels_layer, outlines=not fill)

    def cancel(self) -> None:
        """Stop the running segmentation (at the next batch of planes or stage); no layer is changed."""
        self.task.cancel()

    # ----------------------------------------------------------------------------------- results
    def _forget_closed_image(self, event) -> None:
        """Drop the kept network map when its image layer is closed: it holds the image's pixels."""
        if self._netmap is not None and isinstance(event.value, Image) and \
                layer_array(event.value) is self._netmap.data:      # (level 0 of a pyramid)
            self._netmap = None

    def _on_result(self, target: SegmentTarget, result) -> None:
        labels, prob, note, confidence = result[:4]
        image = target.image
        if image not in self.viewer.layers:   # closed during the run: no outlines without their image (its map goes)
            self.status.setText(f"{image.name!r} was closed during the run: no result added")
            show_info(f"Segment lesions: {self.status.text()}")
            return
        self._netmap = result[4] if len(result) > 4 else None
        try:
            self.labels_layer = add_or_update_labels(self.viewer, f"{image.name} lesions", labels, like=image,
                                                     target=target.labels_target, outlines=not self.fill.isChecked())
            if prob is not None:
                self.prob_layer = add_or_update_image(
                    self.viewer, f"{image.name} lesion probability", prob, like=image, target=target.prob_target,
                    colormap="magma", contrast_limits=(0.0, 1.0), blending="additive", opacity=0.6)
        except Exception as exc:  # noqa: BLE001 - report, never crash napari
            show_error(f"Segment lesions: could not add the result layer: {exc}")
            return
        counts = [int(labels[i].max()) for i in range(len(labels))] if labels.ndim == 3 else [int(labels.max())]
        found = f"{sum(counts)} lesion(s) in {len(counts)} planes" if labels.ndim == 3 else f"{counts[0]} lesion(s)"
        how = ", from the last probability map: no network run" if target.from_map else ""
        msg = f"{found} in {image.name!r} ({time.perf_counter() - target.started:.1f} s{how})"
        if labels.ndim == 2:
            self.labels_layer.features = confidence_features(confidence[0], int(labels.max()))
        doubtful = low_confidence(confidence, labels.ndim == 3)
        if doubtful:
            msg += f"; check {doubtful}"
            show_warning(f"Segment lesions: check {doubtful}: the network was unsure of these outlines")
        self.status.setText(msg + (f"; {note}" if note else ""))
        show_info(f"Segment lesions: {msg}")


def confidence_features(confidence: dict[int, float], max_label: int):
    """The layer's features for fresh results: each lesion's expected Dice (column ``expected_dice``)."""
    import pandas as pd

    table = pd.DataFrame({"label": list(confidence), CONFIDENCE_COLUMN: [round(v, 3) for v in confidence.values()]})
    return layer_features(table.astype({"label": "int64"}), max_label)


def low_confidence(confidence: list[dict[int, float]], stack: bool) -> str:
    """'lesion 2 (expected Dice 0.71)' for the lesions whose expected Dice is below REVIEW_BELOW, or ''."""
    items = [(p, label, v) for p, conf in enumerate(confidence) for label, v in conf.items() if v < REVIEW_BELOW]
    where = (lambda p, label: f"lesion {label} of plane {p}") if stack else (lambda p, label: f"lesion {label}")
    return ", ".join(f"{where(p, label)} (expected Dice {v:.2f})" for p, label, v in items[:5]) + (
        f" and {len(items) - 5} more" if len(items) > 5 else "")
