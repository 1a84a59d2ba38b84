"""Whether napari opens dermoscopy image files with this plugin's reader without asking.

napari reads PNG, JPEG and TIFF itself too, so a dropped file makes it ask "Choose reader" unless a
preference is saved (napari's ``settings.plugins.extension2reader``, which its dialog's *Remember this
choice* and *Preferences > Plugins* also edit). :func:`set_default_reader` saves or removes that
preference for the file patterns of the plugin's reader (its manifest's ``filename_patterns``); a
pattern the user gave to another plugin is only replaced when they ask for it here.
"""

from __future__ import annotations

PLUGIN = "napari-nevus-seg"


def reader_patterns() -> list[str]:
    """The file patterns of the plugin's reader, from its manifest."""
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest(PLUGIN)
    return [p for reader in manifest.contributions.readers or [] for p in reader.filename_patterns]


def is_default_reader() -> bool:
    """True when napari opens every file type of the plugin's reader with it, without asking."""
    from napari.settings import get_settings

    prefs = get_settings().plugins.extension2reader
    return all(prefs.get(p) == PLUGIN for p in reader_patterns())


def set_default_reader(on: bool) -> None:
    """Make the plugin napari's reader for its file types (``on``), or remove that preference."""
    from napari.settings import get_settings

    settings = get_settings().plugins
    prefs = dict(settings.extension2reader)
    for pattern in reader_patterns():
        if on:
            prefs[pattern] = PLUGIN
        elif prefs.get(pattern) == PLUGIN:
            del prefs[pattern]
    settings.extension2reader = prefs   # assigned whole: napari saves it and its Preferences dialog follows
