"""Widget "Fine-tune on corrections": collect corrected outlines, fine-tune, compare, keep or discard.

Workflow: segment an image (Segment widget or case browser), correct the Labels layer with napari's
brush, eraser and fill, press "Add to training set" (written to disk at once), repeat, press
"Fine-tune". Training runs in a :class:`~napari_nevus_seg._napari._job.BackgroundJob` with a napari
progress bar; Cancel stops it within a few seconds and changes nothing. "Corrected outline" defaults to
the segmentation result (the Labels layer the Segment widget or the case browser made) and follows the
Labels layer selected in the layer list; a ground-truth layer is named as such in the status. The
settings of :func:`fine_tune` other than the starting model sit in a closed "Advanced settings" section
and the model manager in "Manage saved models" (:class:`~napari_nevus_seg._napari._controls.Collapsible`),
so that the dock fits a 1000 px screen; they are named in plain words, with tooltips ("Adapt to your
images", a percentage, is ``blend``; "Train the outlining part only" is ``freeze_encoder``). The Dice of
the base and the tuned model are shown, on held-out pairs
(on the training pairs, optimistic, when there are too few to hold any out), with the pair that changed
most outlined by both models side by side (:mod:`~napari_nevus_seg._napari._before_after`); "Keep"
saves the tuned model in the model library under a name (then selectable in the Segment widget),
"Discard" drops it. Everything here is a call to the public API (:func:`fine_tune`,
:class:`TrainingStore`, :class:`ModelLibrary`).
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg._napari._before_after import ExamplePanel
from napari_nevus_seg._napari._controls import Collapsible, LayerCombo, ModelChoice, segment_settings, session_sync
from napari_nevus_seg._napari._dock_scroll import scroll_contents
from napari_nevus_seg._napari._job import BackgroundJob
from napari_nevus_seg._napari._layers import KIND_KEY, is_lesion_labels, is_lesion_result
from napari_nevus_seg._napari._model_manager import ModelManagerPanel
from napari_nevus_seg._napari._shared import TrainingSetPanel
from napari_nevus_seg._napari._shortcuts import bind_shortcut, shortcut_text
from napari_nevus_seg.io.text import plural
from napari_nevus_seg.model.devices import available_devices
from napari_nevus_seg.model.library import ModelLibrary
from napari_nevus_seg.model.loading import load_model
from napari_nevus_seg.training.before_after import before_after_example
from napari_nevus_seg.training.finetune import DEFAULTS, FineTuneResult, fine_tune
from napari_nevus_seg.training.store import TrainingStore


def fine_tune_job(folder: str, base_ref: str | None, options: dict[str, Any], *, convention: str | None = None,
                  cancel=None, progress=None):
    """Worker body: fine-tune the model ``base_ref`` on the training folder; returns the tuned model and its
    :class:`~napari_nevus_seg.training.before_after.BeforeAfter` example (the scored pair that changed most).

    The pairs are read from disk when fine-tuning uses them (as ``nevus-seg train --init`` does), never the
    whole set at once; a bad pair is named by its files. ``convention``: for a model of several outline
    conventions, the one the corrected outlines follow (the tuned model draws it). Raises ``ValueError`` for
    an empty training set and :class:`~napari_nevus_seg.training.loop.TrainingCancelled` once ``cancel`` is set."""
    images, masks, names = TrainingStore(folder).lazy()
    if not len(images):
        raise ValueError(f"the training set in {folder} is empty: add corrected outlines first")
    base = load_model(base_ref)
    base = base.with_convention(convention) if convention is not None and base.conventions else base
    tuned = fine_tune(images, masks, base=base, progress=progress, cancel=cancel, names=names, **options)
    if progress is not None:
        progress({"stage": "example", "step": 0, "steps": 1})
    try:   # the picture is a view of the result: never lose the tuned model over it
        example = before_after_example(images, masks, tuned, base, device=tuned.meta["fine_tune"]["device"])
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"no before/after picture: {exc}", RuntimeWarning, stacklevel=1)
        example = None
    return tuned, example


def is_ground_truth(layer: Any) -> bool:
    """Whether a Labels layer is an expert's mask opened with its image (the reader's "<case> ground truth")."""
    meta = layer.metadata if isinstance(getattr(layer, "metadata", None), dict) else {}
    return KIND_KEY not in meta and (meta.get("ground_truth") is True or layer.name.endswith(" ground truth"))


def _eta(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min left" if seconds >= 90 else f"{seconds:.0f} s left"


class FineTuneWidget(QWidget):
    """Collect corrected outlines, fine-tune the segmentation model on them, keep or discard the result."""

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        super().__init__()
        self.viewer = viewer
        self.pending = None              # the tuned model waiting for Keep / Discard
        self._earlier = None             # a result not kept when another run started: back if that run ends without one
        self.last_status: str = ""       # "ok", "cancelled" or "error" of the last run
        self._base_name = "default"

        self.image_combo = LayerCombo(viewer, Image)
        self.labels_combo = LayerCombo(viewer, Labels)
        self.training = TrainingSetPanel(lambda: (self.image_combo.layer(), self.labels_combo.layer()))
        bind_shortcut(self, viewer, "add_pair", self.training.add_button.click)
        self.training.add_button.setToolTip(f"{self.training.add_button.toolTip()} "
                                            f"({shortcut_text('add_pair')} in the viewer)")
        # corrected labels chosen: the image they were segmented from is chosen with them
        self.labels_combo.currentTextChanged.connect(lambda *_: self.image_combo.select_source_of(
            self.labels_combo.layer()))
        self.base_combo = ModelChoice()
        self.base_combo.setToolTip("The model to start from: the default model, or one you fine-tuned and kept "
                                   "before. It is never changed; fine-tuning makes a copy")
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", *available_devices()])
        self.device_combo.setToolTip("Where the training runs. auto: the graphics card (GPU) when there is one, "
                                     "else the processor (CPU, slower)")
        self.epochs_spin = QSpinBox(minimum=1, maximum=500, value=DEFAULTS["epochs"])
        self.epochs_spin.setToolTip("How many rounds of training. With 4 or more pairs, the round whose model "
                                    "outlined the pairs set aside for checking best is kept")
        self.steps_spin = QSpinBox(minimum=1, maximum=1000, value=DEFAULTS["steps_per_epoch"])
        self.steps_spin.setToolTip(f"Training steps in each round; each step learns from {DEFAULTS['batch_size']} "
                                   "randomly flipped, turned, zoomed and re-coloured copies of your pairs")
        self.lr_spin = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1e-2, singleStep=1e-4, value=DEFAULTS["lr"])
        self.lr_spin.setToolTip("How large a change each training step makes (the learning rate). Larger learns "
                                "faster but can undo what the model knew; the default suits a few images")
        # the share of the fine-tuning update kept (fine_tune's ``blend``), shown as a percentage
        self.adapt_spin = QSpinBox(minimum=5, maximum=100, singleStep=5, value=round(DEFAULTS["blend"] * 100))
        self.adapt_spin.setSuffix(" %")
        self.adapt_spin.setToolTip(
            "How far the saved model moves from the starting model towards the one trained on your corrections. "
            "100 %: the model trained on your corrections alone: best on images like yours, but it may outline "
            "images from other dermoscopes or other skin less well. Lower values keep more of the starting "
            f"model's behaviour on other images and still take part of the gain on yours. Default "
            f"{DEFAULTS['blend']:.0%} (measured on HAM10000: 20 corrected basal cell carcinomas gained 6 Dice "
            "points on other ones, other images lost at most a point on average)")
        self.replay_spin = QSpinBox(minimum=0, maximum=400, value=DEFAULTS["replay"])
        self.replay_spin.setToolTip("Built-in practice images mixed into training: synthetic images the starting "
                                    "model learnt from. They remind it of lesions it already outlines well while "
                                    "it learns yours (less forgetting); 0: your pairs only")
        self.freeze_encoder = QCheckBox("Train the outlining part only")
        self.freeze_encoder.setToolTip("The network has a part that recognises patterns in the image (the encoder) "
                                       "and a part that draws the outline from them (the decoder). Ticked: only the "
                                       "outlining part learns, the pattern part stays as it was: a smaller change, "
                                       "for very few pairs")
        self.freeze_encoder.setChecked(DEFAULTS["freeze_encoder"])
        self.run_button = QPushButton("Fine-tune")
        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.task = BackgroundJob(self, "Fine-tuning", run_button=self.run_button, cancel_button=self.cancel_button,
                                  status=self.status_label, on_result=self._on_result,
                                  on_cancelled=self._on_cancelled, on_progress=self._on_progress,
                                  on_finished=self._on_finished)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setToolTip("Dice (overlap with your corrected outline, 1 = identical) of the starting "
                                     "model and of the tuned model, on held-out pairs: pairs set aside and not "
                                     "trained on. With fewer than 4 pairs none is set aside and the scores are "
                                     "taken on the training pairs (optimistic)")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name for the tuned model")
        self.keep_button = QPushButton("Keep")
        self.keep_button.clicked.connect(lambda: self.keep())
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        self.example = ExamplePanel(viewer)
        self.models = ModelManagerPanel()
        self.models.changed.connect(self.base_combo.refresh)
        self._layout()
        self._set_pending(None)
        self.labels_combo.currentTextChanged.connect(self._check_labels)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        viewer.layers.events.inserted.connect(self._on_inserted)
        self._choose_result_layer()

    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.task.worker

    # ------------------------------------------------------------------------ corrected labels
    def _choose_result_layer(self) -> None:
        """Choose the selected Labels layer, unless it is a ground truth: then the last segmentation result
        (a Labels layer this plugin made), when there is one."""
        active = self.viewer.layers.selection.active
        results = [ly for ly in self.viewer.layers if is_lesion_result(ly)]
        if is_lesion_labels(active) and not (is_ground_truth(active) and results):
            self.labels_combo.select(active.name)
        elif results:
            self.labels_combo.select(results[-1].name)
        self._check_labels()

    def _follow_selection(self, *_: Any) -> None:
        """The Labels layer the user selects in the layer list is the one to add."""
        active = self.viewer.layers.selection.active
        if is_lesion_labels(active):
            self.labels_combo.select(active.name)

    def _on_inserted(self, event) -> None:
        """A new segmentation result is chosen; a new ground truth never replaces the choice."""
        layer = getattr(event, "value", None)
        if is_lesion_result(layer):
            self.labels_combo.select(layer.name)
        elif isinstance(layer, Labels) and is_ground_truth(layer):
            self._choose_result_layer()
        self._check_labels()

    def _check_labels(self, *_: Any) -> None:
        labels = self.labels_combo.layer()
        if labels is not None and is_ground_truth(labels):
            results = any(is_lesion_result(ly) for ly in self.viewer.layers)
            todo = "choose the result layer" if results else "segment the image first, then correct the result"
            self.status_label.setText(f"{labels.name!r} is a ground-truth layer (the expert's mask opened with "
                                      f"the image), not your corrected segmentation: {todo}")
        elif self.status_label.text().startswith("'") and "ground-truth layer" in self.status_label.text():
            self.status_label.setText("")

    def _layout(self) -> None:
        data = QFormLayout()
        data.addRow("Image:", self.image_combo)
        data.addRow("Corrected outline:", self.labels_combo)
        self.labels_combo.setToolTip("The Labels layer with your corrected lesion outline (the segmentation "
                                     "result you painted on), not the expert's ground truth")
        box1 = QGroupBox("1. Training set")
        v1 = QVBoxLayout(box1)
        v1.addLayout(data)
        v1.addWidget(self.training)
        box2 = QGroupBox("2. Fine-tune")
        v2 = QVBoxLayout(box2)
        start = QFormLayout()
        start.addRow("Start from:", self.base_combo)
        v2.addLayout(start)
        settings = QWidget()
        f2 = QFormLayout(settings)
        f2.setContentsMargins(12, 0, 0, 0)
        f2.addRow("Run on:", self.device_combo)
        f2.addRow("Training rounds:", self.epochs_spin)
        f2.addRow("Steps per round:", self.steps_spin)
        f2.addRow("Learning rate:", self.lr_spin)
        f2.addRow("Adapt to your images:", self.adapt_spin)
        f2.addRow("Practice images:", self.replay_spin)
        f2.addRow(self.freeze_encoder)
        for field in (self.device_combo, self.epochs_spin, self.steps_spin, self.lr_spin, self.adapt_spin,
                      self.replay_spin):
            f2.labelForField(field).setToolTip(field.toolTip())
        self.advanced = Collapsible("Advanced settings", settings)
        v2.addWidget(self.advanced)
        run = QHBoxLayout()
        run.addWidget(self.run_button)
        run.addWidget(self.cancel_button)
        v2.addLayout(run)
        v2.addWidget(self.status_label)
        box3 = QGroupBox("3. Result")
        v3 = QVBoxLayout(box3)
        v3.addWidget(self.result_label)
        v3.addWidget(self.example)
        keep = QHBoxLayout()
        keep.addWidget(self.name_edit, 1)
        keep.addWidget(self.keep_button)
        keep.addWidget(self.discard_button)
        v3.addLayout(keep)
        self.saved_models = Collapsible("Manage saved models", self.models)
        v3.addWidget(self.saved_models)
        lay = QVBoxLayout(self)
        lay.setSpacing(4)
        for w in (box1, box2, box3):
            w.layout().setSpacing(4)
            lay.addWidget(w)
        lay.addStretch(1)
        scroll_contents(self)

    # -------------------------------------------------------------------------------- running
    def options(self) -> dict[str, Any]:
        return {"device": self.device_combo.currentText(), "epochs": self.epochs_spin.value(),
                "steps_per_epoch": self.steps_spin.value(), "lr": self.lr_spin.value(),
                "blend": self.adapt_spin.value() / 100, "replay": self.replay_spin.value(),
                "freeze_encoder": self.freeze_encoder.isChecked()}

    def start(self):
        """Start fine-tuning on the training folder in a background thread; returns the worker or None."""
        if self.task.running:
            return None
        n = len(self.training.store)
        if n == 0:
            show_error("the training set is empty: correct an outline and press 'Add to training set' first")
            return None
        base_ref = self.base_combo.model_ref()
        if self.pending is not None:
            # Keep/Discard are off while the run goes on (they would act on a result that is about to go)
            self._earlier = (self.pending, self.result_label.text(), self.name_edit.text(), self.keep_button.text(),
                             self.example.example)
            show_warning("the tuned model shown was not kept: the new run's result replaces it (Cancel the run "
                         "to get it back and keep it)")
            self._set_pending(None)
        self.example.show_example(None)
        self._base_name = self.base_combo.currentText() if base_ref is not None else "default"
        self.result_label.setText("" if self._earlier is None else
                                  "the result not kept is replaced when this run ends (back if it is cancelled)")
        seg = segment_settings(self.viewer)   # the outlines follow the convention they were segmented in
        convention = seg.convention if seg is not None and seg.model == base_ref else None
        worker = self.task.start(fine_tune_job, str(self.training.store.folder), base_ref, self.options(),
                                 convention=convention, desc="Fine-tuning")
        self.status_label.setText(f"fine-tuning {self._base_name}"
                                  + (f" (outline convention {convention})" if convention else "")
                                  + f" on {plural(n, 'pair')} ...")
        return worker

    def cancel(self) -> None:
        """Ask the running fine-tuning to stop (within a few seconds); the model in use is unchanged."""
        self.task.cancel()

    def _on_progress(self, d: dict[str, Any], pbar) -> None:
        """Fine-tuning's progress dicts: steps and loss of training, held-out Dice, scoring stages."""
        stage = d.get("stage")
        if stage == "train":
            if pbar.total != d["steps"]:
                pbar.total = d["steps"]
            pbar.n = d["step"]
            text = f"step {d['step']}/{d['steps']} (training error {d['loss']:.3f}), {_eta(d.get('eta_s'))}"
            pbar.set_description(f"Fine-tuning: training error {d['loss']:.3f}, {_eta(d.get('eta_s'))}")
            self.status_label.setText(text)
        elif stage == "val" and d.get("val_dice") is not None:
            self.status_label.setText(f"round {d['epoch']}: Dice {d['val_dice']:.3f} on the held-out pairs")
        elif stage in ("score_before", "score_after"):
            which = "base" if stage == "score_before" else "tuned"
            pbar.set_description(f"Fine-tuning: scoring the {which} model")
        elif stage == "example":
            pbar.set_description("Fine-tuning: outlining an example before and after")
        pbar.refresh()

    def _on_cancelled(self, _target: Any) -> str:
        return f"cancelled: the model in use is still {self._base_name!r}"

    def _on_result(self, _target: Any, result) -> None:
        model, example = result
        self._earlier = None        # replaced, as the warning at the start said
        self._set_pending(model)
        self.example.show_example(example)
        self.status_label.setText(f"done in {model.meta['fine_tune']['seconds']:.0f} s")

    def _on_finished(self, outcome: str) -> None:
        """After the run: the result not kept before is back when this one gave none."""
        self.last_status = outcome
        if self._earlier is not None:
            model, result_text, name, keep_text, example = self._earlier
            self._earlier = None
            self.pending = model
            self.keep_button.setEnabled(True)
            self.discard_button.setEnabled(True)
            self.result_label.setText(result_text)
            self.name_edit.setText(name)
            self.keep_button.setText(keep_text)
            self.example.show_example(example)

    # ------------------------------------------------------------------------------ keep/discard
    def _set_pending(self, model) -> None:
        self.pending = model
        self.keep_button.setEnabled(model is not None)
        self.discard_button.setEnabled(model is not None)
        if model is None:
            return
        report = FineTuneResult.of(model)
        self.result_label.setText(f"{self._base_name} -> tuned: {report.summary()}")
        self.keep_button.setText("Keep anyway" if report.worse else "Keep")
        if report.worse:   # on the pairs the report names: held-out ones, or the training pairs
            show_warning(f"the tuned model scored worse than the base model ({report.change}) on "
                         f"{report.basis}: consider 'Discard'")
        self.name_edit.setText(f"{self._base_name}-tuned-{datetime.now():%Y%m%d-%H%M}")

    def keep(self, name: str | None = None) -> str | None:
        """Save the tuned model in the model library; returns its name (None on error)."""
        if self.pending is None:
            return None
        name = (name or self.name_edit.text()).strip()
        try:
            path = ModelLibrary().save(self.pending, name)
        except (ValueError, FileExistsError, OSError) as exc:
            show_error(f"not saved: {exc}")
            return None
        self._set_pending(None)
        self.result_label.setText(self.result_label.text() + f"\nsaved as {name!r}")
        self.models.refresh()
        self.base_combo.refresh()
        session_sync().models_changed.emit({})   # the Segment widget's and the case browser's lists follow at once
        show_info(f"saved the tuned model as {name!r} ({path}); choose it in the Segment widget")
        return name

    def discard(self) -> None:
        """Drop the tuned model; the model in use stays what it was."""
        if self.pending is not None:
            self._set_pending(None)
            self.example.show_example(None)
            self.result_label.setText(self.result_label.text() + "\ndiscarded")
