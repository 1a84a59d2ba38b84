"""Widget "Case browser": walk through a folder of dermoscopy images, segment, correct, add to the training set.

Any layout :func:`~napari_nevus_seg.io.datasets.discover_cases` knows (PH2, images/ + masks/, ISIC naming, a
plain folder of images). Each case opens as an image layer named after the case (with its pixel size
when the file records one); moving to another case replaces the layers of the previous one instead of
piling them up. "Segment" runs the public :func:`segment` in a
:class:`~napari_nevus_seg._napari._job.BackgroundJob` (with Cancel) and writes ``"<case> lesions"``; a
result that arrives after the user moved on is dropped, never written to another case. The settings are
the Segment widget's (:meth:`SegmentWidget.options`) while one is docked in the viewer, else the
defaults of :class:`~napari_nevus_seg.inference.options.SegmentOptions` with the model chosen here.

After a case is segmented the widget shows the number of lesions, the seconds it took and, when the case
has an expert mask (its ``"<case> ground truth"`` layer), the Dice and Jaccard of the result against it
(:func:`~napari_nevus_seg.inference.metrics.dice`); the figures of each case are kept for the session
(:class:`~napari_nevus_seg._napari._case_results.CaseRecord`), shown again on coming back to a case, and
averaged over the folder's cases segmented so far. "Cases to correct first" ranks the folder by the model's
confidence (:mod:`~napari_nevus_seg._napari._case_ranking`) and the browser then walks it in that order. "Save mask" writes the result layer as it is now (the
user's corrections included) to ``<case>_lesions.tif`` in ``<data set>_nevus-seg-masks`` beside the data
set, or in a folder chosen with "Folder..." (kept for the session); the data set's own files are never
replaced. Corrections that were painted but neither saved nor added to the training set are not thrown
away silently: the first Next/Previous only warns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg._napari._case_ranking import CaseRanking, RankingMixin, confidence_text
from napari_nevus_seg._napari._case_results import (
    CaseRecord,
    case_figures,
    default_mask_folder,
    opened_dataset_case,
    save_case_mask,
)
from napari_nevus_seg._napari._controls import Collapsible, ModelChoice, segment_settings
from napari_nevus_seg._napari._dock_scroll import scroll_contents
from napari_nevus_seg._napari._job import BackgroundJob
from napari_nevus_seg._napari._layers import add_or_update_labels, layer_array, pixel_size_mm_from_layer
from napari_nevus_seg._napari._reader import read_case
from napari_nevus_seg._napari._segment_widget import segment_layer_data
from napari_nevus_seg._napari._shared import TrainingSetPanel
from napari_nevus_seg._napari._shortcuts import bind_shortcut, shortcut_text
from napari_nevus_seg.inference.options import SegmentOptions
from napari_nevus_seg.io.datasets import Case, discover_cases
from napari_nevus_seg.io.text import plural


def timed_segment(*args: Any, **kwargs: Any) -> tuple[tuple, float]:
    """Worker body: :func:`segment_layer_data` and the seconds it took (model loading included)."""
    t0 = time.perf_counter()
    result = segment_layer_data(*args, **kwargs)
    return result, time.perf_counter() - t0


class CaseBrowserWidget(RankingMixin, QWidget):
    """Browse the cases of a folder one at a time: open, segment, correct, add to the training set."""

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        super().__init__()
        self.viewer = viewer
        self.cases: list[Case] = []
        self.index = -1
        self.image_layer = None
        self.labels_layer = None
        self._dirty = False          # the outline was painted since it was segmented or added
        self._warned = False
        self._added = False          # the current case's outline went to the training set
        self._saved = False          # ... or was saved as a mask file
        self.record = CaseRecord()   # figures of the cases segmented in this session
        self.mask_folder: Path | None = None   # chosen with "Folder..." (else beside the data set)
        self.confidence: dict[Path, float] = {}  # image path -> confidence, after "Rank by confidence"

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder of images or a data set (PH2, images/ + masks/, ...)")
        self.folder_edit.returnPressed.connect(lambda: self.open_folder(self.folder_edit.text()))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        self.prev_button = QPushButton("< Previous")
        self.prev_button.clicked.connect(self.previous)
        self.next_button = QPushButton("Next >")
        self.next_button.clicked.connect(self.next)
        self.position_label = QLabel("no folder open")
        self.model_combo = ModelChoice()
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(lambda: self.segment())
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.task = BackgroundJob(self, "Case browser", run_button=self.segment_button,
                                  cancel_button=self.cancel_button, status=self.status,
                                  on_result=self._on_result, on_cancelled=self._on_cancelled,
                                  on_finished=lambda _outcome: self._update_buttons())
        self.lesions_label, self.time_label, self.dice_label, self.mean_label = (QLabel() for _ in range(4))
        self.dice_label.setToolTip("Overlap of the automatic result with the expert's mask (ground truth): "
                                   "Dice 2·|A∩B|/(|A|+|B|), Jaccard |A∩B|/|A∪B|; 1 = identical")
        self.mean_label.setToolTip("Mean Dice over the cases of this folder segmented in this session that "
                                   "have an expert mask")
        self.save_button = QPushButton("Save mask")
        self.save_button.clicked.connect(lambda: self.save_mask())
        self.folder_button = QPushButton("Folder...")
        self.folder_button.setToolTip("Choose the folder the masks are saved to (kept for this session)")
        self.folder_button.clicked.connect(self._choose_mask_folder)
        self.training = TrainingSetPanel(self._current_pair_layers)
        self.training.added.connect(self._on_added)
        self.ranking = CaseRanking(self.rank)
        self.ranking.case_chosen.connect(self.go_to_case)
        self.ranking_section = Collapsible("Cases to correct first", self.ranking)
        self.model_combo.currentIndexChanged.connect(lambda *_: self.forget_ranking("another model was chosen"))
        for name, button in (("previous_case", self.prev_button), ("next_case", self.next_button),
                             ("segment", self.segment_button), ("add_pair", self.training.add_button)):
            bind_shortcut(self, viewer, name, button.click)   # as if the button were clicked (disabled: nothing)
            button.setToolTip(f"{button.toolTip()} ({shortcut_text(name)} in the viewer)".lstrip(" "))

        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.position_label, 1)
        nav.addWidget(self.next_button)
        form = QFormLayout()
        form.addRow("Model:", self.model_combo)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addLayout(nav)
        lay.addWidget(self.ranking_section)
        lay.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        figures = QGroupBox("Figures")
        rows = QFormLayout(figures)
        rows.addRow("Lesions:", self.lesions_label)
        rows.addRow("Time:", self.time_label)
        rows.addRow("Dice vs expert:", self.dice_label)
        rows.addRow("Mean Dice so far:", self.mean_label)
        lay.addWidget(figures)
        save = QHBoxLayout()
        save.addWidget(self.save_button, 1)
        save.addWidget(self.folder_button)
        lay.addLayout(save)
        lay.addWidget(self.training)
        lay.addStretch(1)
        scroll_contents(self)
        self._reader_layers: list = []   # a data-set case napari's reader opened, taken over (ground truth)
        self._adopt_opened_dataset()
        self._update_buttons()
        self._show_figures()

    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.task.worker

    def options(self) -> SegmentOptions:
        """How to segment: the docked Segment widget's settings, else the defaults with the model chosen here."""
        shared = segment_settings(self.viewer)
        return shared if shared is not None else SegmentOptions(model=self.model_combo.model_ref())

    def _adopt_opened_dataset(self) -> None:
        """Continue from a data-set folder that napari's reader opened (its first case is on screen):
        the folder, the case's layers, and the position in the folder are taken over."""
        found = opened_dataset_case(self.viewer)
        if found is not None:
            folder, self.cases, self.index, self.image_layer, self._reader_layers = found
            self.folder_edit.setText(str(folder))

    # ----------------------------------------------------------------------------------- folder
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images", self.folder_edit.text())
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> int:
        """List the cases of ``folder`` and open the first; returns the number of cases.

        Unsaved corrections of the current case are warned about first, as when moving to another case:
        the folder opens on the next attempt.
        """
        if self._stop_for_corrections():
            return 0
        self.folder_edit.setText(str(folder))
        try:
            cases = discover_cases(Path(folder).expanduser())
        except (FileNotFoundError, OSError) as exc:
            show_error(str(exc))
            return 0
        if not cases:
            show_warning(f"{folder}: no images found")
            return 0
        self.cases = cases
        self.index = -1
        self.forget_ranking()
        self.go(0, force=True)
        return len(cases)

    # ------------------------------------------------------------------------------- navigation
    def next(self) -> bool:
        return self.go(self.index + 1)

    def previous(self) -> bool:
        return self.go(self.index - 1)

    def go(self, index: int, force: bool = False) -> bool:
        """Open case ``index``; returns False when it did not move (end of list, unsaved corrections).

        An unreadable file is reported and shown as "(unreadable)", so the user can move past it.
        """
        if not self.cases or not 0 <= index < len(self.cases):
            return False
        if not force and self._stop_for_corrections():
            return False
        case = self.cases[index]
        self._remove_case_layers()
        self.index = index
        self._dirty = self._warned = self._added = self._saved = False
        try:   # as the reader opens a case: the image, and its expert mask as "<case> ground truth"
            layers = read_case(case.image, case.mask, case.name,
                               {"dataset": self.folder_edit.text(), "case": case.name})
        except ValueError as exc:          # a corrupt file: reported, and the user can move past it
            show_error(f"cannot open {case.name}: {exc}")
            self._update_buttons()
            self.position_label.setText(self.position_label.text() + " (unreadable)")
            return True
        for data, kwargs, kind in layers:
            layer = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
            if kind == "image":
                self.image_layer = layer
            else:
                self._reader_layers.append(layer)   # leaves with the case
        self._update_buttons()
        self._show_figures()
        return True

    def _stop_for_corrections(self) -> bool:
        """True (with a warning, once) when the current case has corrections not yet in the training set."""
        if self._warned:
            return False
        _, labels = self._current_pair_layers()
        if labels is None:
            return False
        if labels is self.labels_layer:
            unsaved = self._dirty
        else:   # an outline drawn without "Segment" (or by the Segment widget): unsaved unless added
            unsaved = not (self._added or self._saved) and bool(np.any(np.asarray(labels.data)))
        if unsaved:
            self._warned = True
            show_warning(f"{labels.name!r} has corrections that are not saved and not in the training set: press "
                         "'Save mask' or 'Add to training set' to keep them, or move on again to leave them out")
            return True
        return False

    def _remove_case_layers(self) -> None:
        for layer in (self.labels_layer, self.image_layer, *self._reader_layers):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image_layer = self.labels_layer = None
        self._reader_layers = []

    def _update_buttons(self) -> None:
        n = len(self.cases)
        self.prev_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(0 <= self.index < n - 1)
        self.segment_button.setEnabled(self.image_layer is not None and not self.task.running)
        self.ranking.rank_button.setEnabled(n > 0 and not self.task.running)
        if n and 0 <= self.index < n:
            case = self.cases[self.index]
            known = self.confidence.get(case.image)
            self.position_label.setText(f"case {self.index + 1}/{n}: {case.name}"
                                        + ("" if known is None else f" ({confidence_text(known)})"))
            self.ranking.select(case.name)

    # ---------------------------------------------------------------------------------- segment
    def segment(self):
        """Segment the current case in a background thread -> Labels layer "<case> lesions".

        Returns the worker, or None when nothing started (no case open, a run going on)."""
        if self.image_layer is None or self.task.running:
            return None
        target = self.image_layer
        options = self.options()
        source = "the Segment widget's settings" if segment_settings(self.viewer) is not None else "default settings"
        self.ranking.rank_button.setEnabled(False)
        return self.task.start(timed_segment, layer_array(target), bool(target.rgb), target.name, options,
                               target=target, desc=f"Segmenting {target.name!r} ({source})")

    def cancel(self) -> None:
        """Stop the running segmentation; no layer is changed."""
        self.task.cancel()

    def _on_segmented(self, target, result) -> None:
        (labels, *_), seconds = result
        if target is not self.image_layer or target not in self.viewer.layers:
            show_info(f"segmentation of {target.name!r} arrived after moving on: not shown")
            self.status.setText(f"{target.name!r} was left before its segmentation was ready")
            return
        layer = add_or_update_labels(self.viewer, f"{target.name} lesions", labels, like=target,
                                     target=self.labels_layer)
        if layer is not self.labels_layer:
            self.labels_layer = layer
            layer.events.paint.connect(self._on_paint)
        self._dirty = self._warned = self._saved = False
        truth = self._ground_truth()
        try:
            figures = case_figures(labels, seconds, None if truth is None else layer_array(truth))
        except ValueError as exc:   # a ground truth of another size (edited by the user): no score
            show_warning(f"no Dice for {target.name!r}: {exc}")
            figures = case_figures(labels, seconds)
        self.record.set(self.cases[self.index].image, figures)
        self._show_figures()
        self.status.setText(f"{plural(figures.lesions, 'lesion')} in {target.name!r}")

    def _ground_truth(self) -> Labels | None:
        """The expert mask opened with the current case (its "<case> ground truth" layer), if still open."""
        for layer in self._reader_layers:
            if isinstance(layer, Labels) and layer.metadata.get("ground_truth") and layer in self.viewer.layers:
                return layer
        return None

    def _show_figures(self) -> None:
        """The current case's recorded figures and the mean Dice of the folder's cases segmented so far."""
        case = self.cases[self.index] if 0 <= self.index < len(self.cases) else None
        figures = self.record.get(case.image) if case is not None else None
        self.lesions_label.setText("–" if case is None else "not segmented yet" if figures is None
                                   else str(figures.lesions))
        self.time_label.setText("–" if figures is None else f"{figures.seconds:.{2 if figures.seconds < 1 else 1}f} s")
        self.dice_label.setText("–" if figures is None else "no expert mask for this case" if figures.dice is None
                                else f"{figures.dice:.3f} (Jaccard {figures.jaccard:.3f})")
        mean, scored, segmented = self.record.mean_dice(c.image for c in self.cases)
        others = f", {segmented - scored} without expert mask" if segmented > scored else ""
        self.mean_label.setText(("–" if mean is None else f"{mean:.3f} over {plural(scored, 'case')}") + others)

    # -------------------------------------------------------------------------------- save mask
    def _choose_mask_folder(self) -> None:
        """Ask for the folder "Save mask" writes to from now on (this session)."""
        start = str(self.mask_folder or (default_mask_folder(self.folder_edit.text()) if self.cases else ""))
        folder = QFileDialog.getExistingDirectory(self, "Folder for the saved masks", start)
        if folder:
            self.mask_folder = Path(folder)
            self.status.setText(f"masks are saved to {folder}")

    def save_mask(self) -> Path | None:
        """Save the current case's result layer (corrections included) as ``<case>_lesions.tif``; returns the path.

        Into the folder chosen with "Folder...", else ``<data set>_nevus-seg-masks`` beside the data set.
        Refused with a message when there is no result yet or the place is among the data set's files.
        """
        _, labels = self._current_pair_layers()
        if not self.cases or self.index < 0 or labels is None:
            text = "no result to save: press 'Segment' (or draw an outline) first"
            show_warning(text)
            self.status.setText(f"Not saved: {text}")
            return None
        case = self.cases[self.index]
        folder = self.mask_folder or default_mask_folder(self.folder_edit.text())
        try:
            path = save_case_mask(layer_array(labels), case, folder, self.cases, pixel_size_mm_from_layer(labels))
        except (ValueError, OSError) as exc:   # e.g. no permission beside the data set: another folder helps
            hint = "" if isinstance(exc, ValueError) else " (choose another folder with 'Folder...')"
            show_error(f"mask of {case.name} not saved: {exc}{hint}")
            self.status.setText(f"Not saved: {exc}{hint}")
            return None
        self._saved, self._dirty, self._warned = True, False, False
        self.status.setText(f"Saved {labels.name!r} to {path}")
        return path

    def _current_pair_layers(self) -> tuple[Any, Any]:
        labels = self.labels_layer
        if (labels is None or labels not in self.viewer.layers) and self.image_layer is not None:
            name = f"{self.image_layer.name} lesions"       # an outline the user drew without "Segment"
            labels = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        return self.image_layer, labels

    def _on_paint(self, *_: Any) -> None:
        self._dirty = True
        self._warned = False

    def _on_added(self, _name: str) -> None:
        self._dirty = self._warned = False
        self._added = True
