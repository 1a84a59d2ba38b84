"""Keyboard shortcuts of the dock widgets, bound in the viewer for as long as the widget is open.

napari gives keys to the canvas: a shortcut works when the image (not a text field of a dock) has the
keyboard focus, as napari's own layer shortcuts do. Every key here is free in napari's default keymap
(checked by the tests). A panel opened later takes a key over (Shift+S of the Segment panel and of the
case browser, Shift+T of the case browser and of the fine-tuning panel); closing it gives the key back
to the panel that had it, if that one is still open.
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

    previous = viewer.keymap.get(key)      # another open panel's binding: given back when this one closes
    viewer.bind_key(key, handler, overwrite=True)

    def release(*_: Any) -> None:
        if viewer.keymap.get(key) is handler:
            viewer.bind_key(key, None)
            if previous is not None and getattr(previous, "alive", lambda: True)():
                viewer.bind_key(key, previous)

    handler.alive = lambda: not qt_deleted(widget)   # type: ignore[attr-defined]
    handler.owner = widget                            # type: ignore[attr-defined]

    widget.destroyed.connect(release)
