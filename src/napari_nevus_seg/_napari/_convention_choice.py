"""The outline-convention control of the Segment widget, shown only for a model that draws several.

A conditioned model (:attr:`~napari_nevus_seg.model.networks.LesionModel.conventions`) can draw its lesions'
outlines the way different archives' experts drew them (e.g. tight on the pigment edge, as in PH2, or a
little outside it, as in ISIC 2017 and HAM10000). The control lists them (with the model's descriptions as
tooltips, ``meta["convention_descriptions"]``), starts at the model's stored convention and tells the widget
what the refinement should be for the chosen one (``LesionModel.refines`` of that convention).
"""

from __future__ import annotations

import os
from typing import Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QComboBox, QLabel

from napari_nevus_seg.model.loading import as_model


class ConventionChoice(QObject):
    """A label "Outline convention:" and a combo box (a row of the widget's form); hidden for a model of one
    convention."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.model: Any = None
        self._shown: Any = ()                     # which model (file and time stamp) the row was made for
        self.label = QLabel("Outline convention:")
        self.combo = QComboBox()
        self.combo.setToolTip("This model can draw outlines the way different archives' experts drew them; "
                              "choose the one your own outlines follow")
        self.combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.setVisible(False)

    def setVisible(self, visible: bool) -> None:  # Qt's name, as on a widget
        self.label.setVisible(visible)
        self.combo.setVisible(visible)

    def isHidden(self) -> bool:  # Qt's name, as on a widget
        return self.combo.isHidden()

    def show_for(self, model_ref: Any) -> bool | None:
        """List the conventions of the model ``model_ref`` (a path, None for the default, or a model), choose its
        stored one, show the control if there are any; returns that convention's refinement setting (None when
        the model cannot be read: it is reported when used)."""
        self._shown = model_key(model_ref)
        try:
            self.model = as_model(model_ref)
        except Exception:  # noqa: BLE001 - an unreadable model is reported when it is used, not here
            self.model = None
        names = self.model.conventions if self.model is not None else ()
        about = self.model.meta.get("convention_descriptions") if self.model is not None else None
        self.combo.blockSignals(True)
        self.combo.clear()
        for i, name in enumerate(names):
            self.combo.addItem(name)
            if isinstance(about, dict) and isinstance(about.get(name), str):
                self.combo.setItemData(i, about[name], Qt.ItemDataRole.ToolTipRole)
        if names:
            self.combo.setCurrentText(self.model.convention_name)
        self.combo.blockSignals(False)
        self.setVisible(bool(names))
        return self.refines()

    def value(self) -> str | None:
        """The chosen convention, or None for a model of one convention."""
        return self.combo.currentText() if self.combo.count() else None

    def value_for(self, model_ref: Any) -> str | None:
        """:meth:`value` for the model ``model_ref``, the row made again first when that is not the model it
        was made for (another choice, or the same name saved again over another model file)."""
        if model_key(model_ref) != self._shown:
            self.show_for(model_ref)
        return self.value()

    def refines(self) -> bool | None:
        """Whether outlines in the chosen convention are refined by default (None: no model read)."""
        if self.model is None:
            return None
        convention = self.value()
        return (self.model.with_convention(convention) if convention else self.model).refines


def model_key(model_ref: Any) -> tuple:
    """What identifies the model ``model_ref`` names: a model file and its modification time (a model saved
    again under the same name is another model), or a loaded model (None: the default) by identity."""
    try:
        stamp = os.stat(model_ref).st_mtime_ns if isinstance(model_ref, (str, os.PathLike)) else id(model_ref)
    except OSError:
        stamp = None
    return (str(model_ref), stamp)
