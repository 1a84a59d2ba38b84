"""The "Measure lesions" dock widget: per-lesion measurements of a Labels layer, stored in its ``features``.

Thin: the work is :func:`napari_nevus_seg.measure` run by a :class:`~napari_nevus_seg._napari._job.BackgroundJob`
(progress bar, a Cancel button that stops it before the next lesion). The table goes to the Labels layer that
was measured, even if the user selects other layers meanwhile, laid out as napari expects (one row per label
value, see :func:`napari_nevus_seg._napari._features.layer_features`), so napari's own "Features table widget" (Layers >
Metadata) shows it, sortable and copyable. The dock itself shows the key figures of the lesion selected in
the Labels layer (``selected_label``; the largest lesion when the selected label is none), see
:class:`~napari_nevus_seg._napari._lesion_figures.LesionFigures`; "Show full table" opens napari's table in
the bottom dock area, lesion rows only (:class:`~napari_nevus_seg._napari._features_view.LesionTable`), and
"Export CSV" writes one row per lesion, units in the column names. A lesion chooser centres the view on the
lesion chosen there or in the table. After the user edits the labels (paint, fill, erase, new data), the
measurements are refreshed (debounced). From the console::

    w = viewer.window.add_plugin_dock_widget("napari-nevus-seg", "Measure lesions")[1]
    w.run()                     # returns the worker; w.table is the result once it has returned
    w.export_csv("lesions.csv")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg._napari._colour_map import ColourMapButton, ColourMapJob
from napari_nevus_seg._napari._controls import LayerCombo, PixelSizeBox
from napari_nevus_seg._napari._dock_scroll import scroll_contents
from napari_nevus_seg._napari._features import arrays_to_measure, feature_row, layer_features, with_users_columns
from napari_nevus_seg._napari._features_view import LesionTable
from napari_nevus_seg._napari._job import BackgroundJob
from napari_nevus_seg._napari._layers import (
    SOURCE_KEY,
    fingerprint,
    is_lesion_labels,
    layer_array,
    source_id,
    source_image,
    viewer_camera,
)
from napari_nevus_seg._napari._lesion_figures import LesionFigures
from napari_nevus_seg._napari._measure_job import MeasureJob, measure_arrays
from napari_nevus_seg.measurements.colour import DEFAULT_MIN_SHARE

if TYPE_CHECKING:
    import napari.viewer

NO_IMAGE = "(none: shape only)"
TABLE_KEY = "nevus_seg_measurements"  # Labels layer metadata: the lesion-per-row table of the last run
REFRESH_DELAY_MS = 800


class MeasureWidget(QWidget):
    """Measure the lesions of a Labels layer (with its image for colours and border abruptness)."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.table = None             # the last table (pandas.DataFrame, one row per lesion)
        self.labels_layer: Labels | None = None   # the layer of the last table (watched for edits)
        self._last: MeasureJob | None = None
        self._rerun = False
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(REFRESH_DELAY_MS)
        self._debounce.timeout.connect(self.remeasure)

        self.labels_combo = LayerCombo(viewer, Labels)
        self.image_combo = LayerCombo(viewer, Image, extra=NO_IMAGE)
        self.pixel = PixelSizeBox(lambda: (self.labels_combo.layer(), self.image_layer()))
        self.pixel_label, self.set_pixel, self.px_row, self.px_col = (
            self.pixel.label, self.pixel.set_here, self.pixel.row, self.pixel.col)
        self.auto_refresh = QCheckBox("Re-measure after edits")
        self.auto_refresh.setChecked(True)
        self.follow = QCheckBox("Centre the view on the selected lesion")
        self.follow.setChecked(True)
        self.run_button = QPushButton("Measure")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.table_button = QPushButton("Show full table")
        self.table_button.setToolTip("Every measurement of every lesion (about 60 columns) in napari's Features "
                                     "table, docked at the bottom of the window")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("One row per lesion; column names carry the units")
        self.colour_map_button = ColourMapButton(self)
        self.lesion_combo = QComboBox()
        self.lesion_combo.setToolTip("Select a lesion and centre the view on it")
        self.figures = LesionFigures()
        self.lesion_table = LesionTable(viewer)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        for b in (self.table_button, self.export_button, self.lesion_combo):
            b.setEnabled(False)

        form = QFormLayout()
        form.addRow("Labels:", self.labels_combo)
        form.addRow("Image:", self.image_combo)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.pixel)
        lay.addWidget(self.auto_refresh)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        results = QHBoxLayout()
        for button in (self.table_button, self.export_button, self.colour_map_button):
            results.addWidget(button)
        lay.addLayout(results)
        lesion = QFormLayout()
        lesion.addRow("Lesion:", self.lesion_combo)
        lay.addLayout(lesion)
        lay.addWidget(self.follow)
        lay.addWidget(self.figures)
        lay.addStretch(1)
        scroll_contents(self)   # one scroll bar for the whole dock when it is squeezed

        self.task = BackgroundJob(self, "Measure lesions", run_button=self.run_button,
                                  cancel_button=self.cancel_button, status=self.status, on_result=self._on_result,
                                  on_cancelled=self._on_cancelled, on_finished=self._on_finished)
        self.run_button.clicked.connect(lambda: self.run())   # never clicked(bool) as `labels`
        self.table_button.clicked.connect(self.show_table)
        self.export_button.clicked.connect(self._on_export)
        self.lesion_combo.activated.connect(self._on_lesion_chosen)
        self.labels_combo.currentTextChanged.connect(self._on_labels_chosen)
        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._on_labels_chosen()
        self._follow_selection()
        self.pixel.update_label()

    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.task.worker

    # ------------------------------------------------------------------------------- layer choice
    def _on_labels_chosen(self, *_: Any) -> None:
        """Choose the image the labels were segmented from (linked in their metadata), when it is open."""
        self.image_combo.select_source_of(self.labels_combo.layer())
        self._on_image_chosen()

    def _on_image_chosen(self, *_: Any) -> None:
        self._follow_scale(self.labels_combo.layer(), self.image_layer())
        self.pixel.update_label()

    def _follow_scale(self, *layers: Any) -> None:
        """Hear of the ``layers``' scale and units changing (Set scale from a ruler, the console)."""
        for layer in filter(None, layers):
            for name in ("scale", "units"):
                if hasattr(layer.events, name):
                    getattr(layer.events, name).connect(self._on_scale)

    def _on_scale(self, event=None) -> None:
        """A chosen layer's pixel size changed: say so, and measure again (when re-measuring is on)."""
        self.pixel.update_label()
        if self._last is not None and self._rescaled_since(self._last) and self.auto_refresh.isChecked():
            self._debounce.start()

    def _follow_selection(self, *_: Any) -> None:
        active = self.viewer.layers.selection.active
        if is_lesion_labels(active):          # not the colour map the Measure panel itself adds
            self.labels_combo.select(active.name)
            self._on_labels_chosen()   # also when it was chosen already: back to the image it belongs to
        elif isinstance(active, Image):
            source = self._source_of_labels()
            if source is None or source == source_id(active):   # never an image other than the labels' own
                self.image_combo.setCurrentText(active.name)

    def _source_of_labels(self) -> str | None:
        labels = self.labels_combo.layer()
        return labels.metadata.get(SOURCE_KEY) if labels is not None else None

    def image_layer(self) -> Image | None:
        return self.image_combo.layer()

    def pixel_size(self, labels: Labels | None = None, image: Image | None = None) -> tuple[float, float] | None:
        """The pixel size used: the field when "Set pixel size here" is on, else the layers' scale and units."""
        return self.pixel.pixel_size(labels, image)

    # ----------------------------------------------------------------------------------- actions
    def run(self, labels: Labels | None = None, image: Image | None = None, pixel_size_mm: Any = "auto"):
        """Measure a Labels layer (default: the chosen one) in a worker thread; returns the worker or None."""
        if self.task.running:
            show_info("Measure lesions: a measurement is already running")
            return None
        labels = labels if labels is not None else self.labels_combo.layer()
        if labels is None:
            show_error("Measure lesions: choose a Labels layer (segment the image first, or draw the outline)")
            return None
        image = image if image is not None else self.image_layer()
        px = self.pixel_size(labels, image) if isinstance(pixel_size_mm, str) else pixel_size_mm
        try:
            lab, img = arrays_to_measure(labels, image, NO_IMAGE)
        except ValueError as exc:
            show_error(f"Measure lesions: {exc}")
            self.status.setText(str(exc))
            return None
        source, own = labels.metadata.get(SOURCE_KEY), source_image(self.viewer, labels)
        if image is not None and (source is not None and source != source_id(image) or own not in (None, image)):
            how = "was segmented from" if source is not None else "is the expert mask of"
            show_warning(f"Measure lesions: {labels.name!r} {how} {own.name if own is not None else 'another image'!r},"
                         f" but its colours are measured in {image.name!r} (the image chosen here)")
        job = MeasureJob(labels, image, px, fingerprint(np.asarray(layer_array(labels))))
        return self.task.start(measure_arrays, lab, img, px, target=job, desc=f"Measuring {labels.name!r}")

    def remeasure(self):
        """Measure the last measured layer again (after edits); queued if a run is going on."""
        last = self._last
        if last is None or last.labels not in self.viewer.layers:
            return None
        if self.task.running:
            self._rerun = True
            return None
        image = last.image if last.image is not None and last.image in self.viewer.layers else None
        if not last.edited() and not self._rescaled_since(last):
            return None  # a refresh event without a change of the labels or of their pixel size
        return self.run(last.labels, image)  # the pixel size as the widget gives it now

    def cancel(self) -> None:
        """Stop the running measurement before the next lesion; the layer's features are left as they were."""
        self.task.cancel()

    def show_table(self):
        """Open napari's Features table widget on the measured Labels layer (lesion rows only); returns it."""
        if self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            show_info("Measure lesions: measure a Labels layer first")
            return None
        try:
            return self.lesion_table.open(self.labels_layer)
        except Exception as exc:  # noqa: BLE001 - older napari without the builtin widget
            show_error(f"Measure lesions: napari's features table is not available ({exc}); use Export CSV")
            return None

    def export_csv(self, path) -> None:
        """Write the last table (one row per lesion, ``label`` first) to ``path``."""
        if self.table is None:
            raise ValueError("nothing measured yet")
        self.table.to_csv(path, index=False)

    def _on_export(self) -> None:
        if self.table is None:
            return
        name = f"{self.labels_layer.name if self.labels_layer is not None else 'lesions'}_measurements.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export measurements", name, "CSV files (*.csv)")
        if not path:
            return
        try:
            self.export_csv(path)
            show_info(f"Measure lesions: {len(self.table)} lesion(s) written to {path}")
            if self._last is not None and self._last.edited():
                show_warning(f"Measure lesions: {self._last.labels.name!r} was edited after it was measured: the "
                             "table written describes the outlines before those edits (press Measure first)")
            if self._last is not None and self._rescaled_since(self._last):
                show_warning(f"Measure lesions: the pixel size of {self._last.labels.name!r} changed after it was "
                             "measured: the table written has the lengths of the old pixel size (press Measure "
                             "first)")
        except OSError as exc:
            show_error(f"Measure lesions: could not write {path}: {exc}")

    # --------------------------------------------------------------------------- lesion selection
    def select_lesion(self, label: int, centre: bool = True) -> None:
        """Select lesion ``label`` in the measured layer and (optionally) centre the view on it."""
        layer = self.labels_layer
        if layer is None or self.table is None:
            return
        layer.selected_label = int(label)
        if centre:
            self._centre_on(int(label))

    def _centre_on(self, label: int) -> None:
        rows = self.table.index[self.table["label"] == label]
        if len(rows) == 0 or self.labels_layer is None:
            return
        r, c = self.table.loc[rows[0], ["centroid_row_px", "centroid_col_px"]]
        layer = self.labels_layer
        data_pos = [0.0] * (layer.ndim - 2) + [float(r), float(c)]
        world = layer.data_to_world(data_pos)
        viewer_camera(self.viewer).center = tuple(world[-2:])

    def _on_lesion_chosen(self, index: int) -> None:
        label = self.lesion_combo.itemData(index)
        if label is not None:
            self.select_lesion(int(label), centre=True)

    def _on_selected_label(self, event=None) -> None:
        """The user (or napari's features table) selected a label: show its figures, centre on it when not editing."""
        layer = self.labels_layer
        if layer is None or self.table is None:
            return
        label = self.show_figures()
        if label == int(layer.selected_label) and self.follow.isChecked() and str(layer.mode) in (
                "pan_zoom", "transform", "Mode.PAN_ZOOM", "Mode.TRANSFORM"):
            self._centre_on(label)

    def show_figures(self) -> int | None:
        """Show the key figures of the label selected in the measured layer, or of the largest lesion when the
        selected label is no measured lesion; returns the label shown (None when there is no lesion)."""
        layer, table = self.labels_layer, self.table
        if layer is None or table is None or not len(table):
            self.figures.empty("No lesion in this layer: draw or segment one, then press Measure.")
            return None
        selected = int(layer.selected_label)
        measured = table["label"].to_numpy()
        label = selected if selected in measured else int(measured[np.argmax(table["area_px2"].to_numpy())])
        row = feature_row(layer.features, label) or table.loc[table["label"] == label].iloc[0].to_dict()
        rule = table.attrs.get("colour_min_share", DEFAULT_MIN_SHARE)
        if label == selected:
            self.figures.show_lesion(f"Lesion {label}", row, min_share=rule)
        else:
            self.figures.show_lesion(f"Lesion {label} (the largest)", row, min_share=rule,
                                     note=f"Label {selected}, selected in {layer.name!r}, is no measured lesion.")
        i = self.lesion_combo.findData(label)
        if i >= 0:
            self.lesion_combo.setCurrentIndex(i)
        return label

    def _on_edit(self, event=None) -> None:
        if self.auto_refresh.isChecked():
            self._debounce.start()

    def _rescaled_since(self, job: MeasureJob) -> bool:
        """Whether the pixel size the widget would measure ``job``'s layers with now differs from the one used."""
        image = job.image if job.image is not None and job.image in self.viewer.layers else None
        return job.rescaled(self.pixel_size(job.labels, image))

    def _watch(self, layer: Labels) -> None:
        old = self.labels_layer
        if old is layer:
            return
        if old is not None:
            for ev, cb in ((old.events.paint, self._on_edit), (old.events.data, self._on_edit),
                           (old.events.set_data, self._on_edit), (old.events.selected_label, self._on_selected_label)):
                try:
                    ev.disconnect(cb)
                except (TypeError, ValueError, RuntimeError):
                    pass
        layer.events.paint.connect(self._on_edit)
        layer.events.data.connect(self._on_edit)
        layer.events.set_data.connect(self._on_edit)  # undo / redo refresh the layer without a paint event
        layer.events.selected_label.connect(self._on_selected_label)
        self._follow_scale(layer)
        self.labels_layer = layer

    # ----------------------------------------------------------------------------------- results
    def _on_result(self, job: MeasureJob | ColourMapJob, result) -> None:
        if isinstance(job, ColourMapJob):
            self.colour_map_button.on_map(job, result)
            return
        table, max_label = result
        layer = job.labels
        if layer not in self.viewer.layers:
            self.status.setText(f"{layer.name!r} was removed before its measurements were ready")
            return
        try:
            layer.features = with_users_columns(layer_features(table, max_label), layer.features)
            layer.metadata[TABLE_KEY] = table
        except Exception as exc:  # noqa: BLE001 - report, never crash napari
            show_error(f"Measure lesions: could not store the measurements in {layer.name!r}: {exc}")
            return
        self.table = table
        self._last = job
        self._watch(layer)
        if self.auto_refresh.isChecked() and job.edited():
            self._rerun = True   # painted while it was being measured: measure again once this run is over
        self.lesion_table.follow(layer)
        self.lesion_combo.clear()
        for lbl in table["label"]:
            self.lesion_combo.addItem(f"lesion {int(lbl)}", int(lbl))
        self.show_figures()
        self.table_button.setEnabled(True)
        for b in (self.export_button, self.lesion_combo):
            b.setEnabled(len(table) > 0)
        self.colour_map_button.setEnabled(len(table) > 0 and job.image is not None)   # shape only: no colours
        self.status.setText(job.done_text(table))

    def _on_cancelled(self, job: MeasureJob | ColourMapJob) -> str:
        what = "no colour map of" if isinstance(job, ColourMapJob) else "the features unchanged in"
        return f"Cancelled; {what} {job.labels.name!r}"

    def _on_finished(self, outcome: str) -> None:
        if self._rerun:
            self._rerun = False
            self._debounce.start()
