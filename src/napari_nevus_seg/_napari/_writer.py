"""napari writer for Labels layers: ``.png`` binary mask (0/255) or ``.tif`` instance labels.

- ``.tif`` / ``.tiff``: every lesion keeps its number (uint16, uint32 past 65535 labels); when the
  layer's units are lengths (mm, µm, ...) its scale is stored in mm as TIFF resolution tags, so the
  file reopens with the same pixel size.
- ``.png``: an 8-bit 0/255 mask, the ISIC convention. A layer with several numbered lesions is
  merged into one mask and a warning says so (save as ``.tif`` to keep the numbers).
- no extension: ``.tif`` is added.

The file is written atomically by :func:`napari_nevus_seg.io.labels.write_labels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_warning

from napari_nevus_seg._napari._layers import pixel_size_mm
from napari_nevus_seg.io.labels import LABEL_SUFFIXES
from napari_nevus_seg.io.labels import write_labels as _write_labels


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: save ``data`` (a Labels layer's array) to ``path``; return [path]."""
    target = Path(path)
    if target.suffix == "":
        target = target.with_suffix(".tif")
    if target.suffix.lower() not in LABEL_SUFFIXES:
        raise ValueError(f"{target}: lesion labels can be saved as .png (binary mask) or .tif (numbered lesions)")
    arr = np.asarray(data)
    while arr.ndim > 2 and arr.shape[0] == 1:   # a one-plane stack is one image
        arr = arr[0]
    if arr.ndim != 2:
        # napari reads a ValueError from a writer as "not a valid writer" and drops its message: say it here
        show_error(f"{target.name}: this Labels layer is a stack {arr.shape}; napari-nevus-seg saves one 2-D "
                   "image per file. Save it as .tif with napari's own writer (File > Save Selected Layers, "
                   "choose 'napari builtins'), or save the planes one by one")
        return []
    binary = None
    if target.suffix.lower() == ".png":
        n = np.unique(arr[arr > 0]).size if arr.size else 0
        if n > 1:
            show_warning(f"{target.name}: {n} numbered lesions merged into one 0/255 mask; "
                         "save as .tif to keep each lesion's number")
        binary = True
    written = _write_labels(arr, target, binary=binary, pixel_size_mm=pixel_size_mm(meta.get("scale"), meta.get("units")))
    return [str(written)]
