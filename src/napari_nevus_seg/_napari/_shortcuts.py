"""Keyboard shortcuts of the dock widgets, bound in the viewer for as long as the widget is open.

napari gives keys to the canvas: a shortcut works when the image (not a text field of a dock) has the
keyboard focus, as napari's own layer shortcuts do. Every key here is free in napari's default keymap
(checked by the tests); a second widget of the same kind takes the key over, and closing a widget
frees its key only if it still holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.utils.key_bindings import coerce_keybinding
from qtpy.QtWidgets import QWidget

from napari_nevus_seg._napari._job import qt_deleted

SHORTCUTS: dict[str, tuple[str, str]] = {
    "segment": ("Shift-S", "Shift+S"),          # (napari's key name, as the user reads it)
    "next_case": ("Shift-N", "Shift+N"),
    "previous_case": ("Shift-B", "Shift+B"),
    "add_pair": ("Shift-T", "Shift+T"),
}


def shortcut_text(name: str) -> str:
    """How the shortcut of ``name`` is written for the user: "Shift+S"."""
    return SHORTCUTS[name][1]


def bind_shortcut(widget: QWidget, viewer: Any, name: str, action: Callable[[], Any]) -> None:
    """Bind the shortcut of ``name`` in ``viewer`` to ``action()`` while ``widget`` lives."""
    key = coerce_keybinding(SHORTCUTS[name][0])

    def handler(_viewer: Any = None) -> None:
        if not qt_deleted(widget):
            action()

    viewer.bind_key(key, handler, overwrite=True)

    def release(*_: Any) -> None:
        if viewer.keymap.get(key) is handler:
            viewer.bind_key(key, None)

    widget.destroyed.connect(release)
