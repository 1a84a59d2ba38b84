"""A small panel over :class:`~napari_nevus_seg.model.library.ModelLibrary`: list, rename, delete, export, import.

Each button asks for what it needs (a name, a file) and calls the method of the same name, which
scripts and tests may call directly. Errors appear as napari notifications.
"""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_nevus_seg._napari._controls import session_sync
from napari_nevus_seg._napari._shared import describe_model
from napari_nevus_seg.model.library import ModelLibrary


class ModelManagerPanel(QWidget):
    """The user's saved models; ``changed`` fires after every successful change."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.list_widget = QListWidget()
        self.list_widget.setMaximumHeight(120)
        buttons = QHBoxLayout()
        for text, slot in (("Rename...", self._ask_rename), ("Delete", self._ask_delete),
                           ("Export...", self._ask_export), ("Import...", self._ask_import)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Saved models (also listed in the Segment widget):"))
        lay.addWidget(self.list_widget)
        lay.addLayout(buttons)
        self.refresh()

    @property
    def library(self) -> ModelLibrary:
        return ModelLibrary()

    def refresh(self) -> None:
        self.list_widget.clear()
        for entry in self.library.list():
            self.list_widget.addItem(entry.name)
            self.list_widget.item(self.list_widget.count() - 1).setToolTip(describe_model(entry.meta))

    def names(self) -> list[str]:
        return [self.list_widget.item(i).text() for i in range(self.list_widget.count())]

    def selected(self) -> str | None:
        item = self.list_widget.currentItem()
        return item.text() if item is not None else None

    # ---------------------------------------------------------------------- actions (scriptable)
    def _do(self, what: str, fn, *args, renamed: dict[str, str] | None = None) -> bool:
        try:
            result = fn(*args)
        except (KeyError, ValueError, FileExistsError, OSError) as exc:
            show_error(f"{what} failed: {exc.args[0] if exc.args else exc}")
            return False
        self.refresh()
        self.changed.emit()
        session_sync().models_changed.emit(renamed or {})   # the Segment widget's model choice follows
        show_info(f"{what}: {result if isinstance(result, str) else 'done'}")
        return True

    def rename(self, old: str, new: str) -> bool:
        try:
            renamed = {str(self.library.path(old)): str(self.library.path(new))}
        except ValueError:   # an invalid name: the rename itself says so
            renamed = {}
        return self._do(f"rename {old!r} to {new!r}", self.library.rename, old, new, renamed=renamed)

    def delete(self, name: str) -> bool:
        return self._do(f"delete {name!r}", self.library.delete, name)

    def export(self, name: str, path: str | Path) -> bool:
        # the file dialog has asked before replacing an existing file
        return self._do(f"export {name!r}", lambda: str(self.library.export(name, path, overwrite=True)))

    def import_file(self, path: str | Path, name: str | None = None) -> bool:
        return self._do(f"import {Path(path).name}", self.library.import_file, path, name)

    # ------------------------------------------------------------------------- button prompts
    def _need_selection(self) -> str | None:
        name = self.selected()
        if name is None:
            show_info("select a model in the list first")
        return name

    def _ask_rename(self) -> None:
        old = self._need_selection()
        if old:
            new, ok = QInputDialog.getText(self, "Rename model", f"New name for {old!r}:", text=old)
            if ok and new.strip() and new.strip() != old:
                self.rename(old, new.strip())

    def _ask_delete(self) -> None:
        name = self._need_selection()
        if name and QMessageBox.question(self, "Delete model", f"Delete the saved model {name!r}?") \
                == QMessageBox.Yes:
            self.delete(name)

    def _ask_export(self) -> None:
        name = self._need_selection()
        if name:
            path, _ = QFileDialog.getSaveFileName(self, "Export model", f"{name}.pt", "Model files (*.pt)")
            if path:
                self.export(name, path)

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import model", "", "Model files (*.pt)")
        if path:
            self.import_file(path)
