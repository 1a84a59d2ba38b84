"""napari reader: dermoscopy images, label files and data-set folders.

What opens as what:

- an image file (BMP, PNG, JPEG, TIFF; 8/16-bit, float; gray, RGB, RGBA, palette) -> an RGB image
  layer, converted by :func:`napari_nevus_seg.io.images.read_image`; when the file carries a pixel size
  (TIFF resolution tags) the layer gets ``scale`` in mm and ``units=("mm", "mm")``. When the image
  belongs to a data set whose expert mask is found by the naming conventions (PH2 ``_lesion``
  folder, ISIC ``_segmentation``, a sibling ``masks/`` folder), a ``"<name> ground truth"`` Labels
  layer is added with the same scale;
- a label file (saved by this plugin's writer, or named like a mask, or in a ``masks/`` folder) ->
  a Labels layer;
- a case folder (a PH2 ``IMDxxx`` folder) -> its image and its ground truth;
- a data-set folder (PH2, ISIC, ``images/`` + ``masks/``): only the **first case** is opened, so
  that a folder of thousands of images neither freezes napari nor fills memory. A notification
  says how many cases were found and points to the *Case browser* widget, which goes through
  them one at a time. The layers' metadata record the folder and the number of cases.

Files this reader claims but cannot decode raise :class:`~napari_nevus_seg.io.files.ImageReadError` with
a message naming the file and the problem; napari shows it (in its reader dialog or as an error
notification) and keeps the layers already open. Paths it does not handle get ``None``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable

from napari.utils.notifications import show_info, show_warning

from napari_nevus_seg._napari._layers import CASE_KEY, ground_truth_display
from napari_nevus_seg.io.datasets import IMAGE_SUFFIXES, discover_cases, mask_for_image
from napari_nevus_seg.io.files import ImageReadError
from napari_nevus_seg.io.images import read_image_with_info
from napari_nevus_seg.io.labels import file_pixel_size, is_labels_file, read_labels
from napari_nevus_seg.io.mask_files import read_mask

LayerData = tuple[Any, dict, str]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for ``path`` (a file, a folder or a list of files), or None if not ours."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_claims(Path(p)) for p in paths):
        return None
    return read_paths


def _claims(path: Path) -> bool:
    if path.is_dir():
        try:
            return bool(discover_cases(path))
        except OSError:
            return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_paths(path: str | list[str]) -> list[LayerData]:
    """Read one path or several into napari layer data tuples (see the module docstring)."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    layers: list[LayerData] = []
    for p in paths:
        p = Path(p)
        layers.extend(_read_folder(p) if p.is_dir() else _read_file(p))
    return layers


def _spatial(pixel_size_mm) -> dict:
    if pixel_size_mm is None:
        return {}
    return {"scale": tuple(float(v) for v in pixel_size_mm), "units": ("mm", "mm")}


def _ground_truth(mask_path: Path, name: str, shape: tuple[int, int], spatial: dict, meta: dict) -> list[LayerData]:
    """The expert mask as a Labels layer; a bad mask is reported and skipped, the image still opens."""
    try:
        mask = read_mask(mask_path)
    except ImageReadError as exc:
        show_warning(f"Ground truth not opened: {exc}")
        return []
    if mask.shape != shape:
        show_warning(f"Ground truth not opened: {mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels "
                     f"but its image is {shape[1]}x{shape[0]}")
        return []
    kwargs = {"name": f"{name} ground truth", "metadata": {**meta, "path": str(mask_path), "ground_truth": True},
              **spatial, **ground_truth_display()}
    return [(mask.astype("uint8"), kwargs, "labels")]


def read_case(image_path: Path, mask_path: Path | None, name: str, extra: dict | None = None) -> list[LayerData]:
    img, info = read_image_with_info(image_path)
    spatial = _spatial(info.pixel_size_mm)
    meta = {CASE_KEY: uuid.uuid4().hex, "path": str(image_path), "source_dtype": info.source_dtype,   # CASE_KEY:
            "source_mode": info.source_mode, "source_shape": info.source_shape,          # pairs image and mask
            "pixel_size_mm": info.pixel_size_mm, **(extra or {})}
    layers: list[LayerData] = [(img, {"name": name, "rgb": True, "metadata": meta, **spatial}, "image")]
    if mask_path is not None:
        layers += _ground_truth(mask_path, name, img.shape[:2], spatial, {k: meta[k] for k in [CASE_KEY, *(extra or {})]})
    return layers


def _read_file(path: Path) -> list[LayerData]:
    if is_labels_file(path):
        labels = read_labels(path)
        spatial = _spatial(file_pixel_size(path))
        return [(labels, {"name": path.stem, "metadata": {"path": str(path)}, **spatial}, "labels")]
    try:
        mask = mask_for_image(path)
    except OSError:
        mask = None
    return read_case(path, mask, path.stem)


def _read_folder(folder: Path) -> list[LayerData]:
    cases = discover_cases(folder)
    if not cases:
        raise ImageReadError(f"{folder}: no dermoscopy images found (PH2, ISIC or images/ + masks/ layouts)")
    first = cases[0]
    extra = {"dataset": str(folder), "case": first.name, "n_cases": len(cases)}
    layers = read_case(first.image, first.mask, first.name, extra)
    if len(cases) > 1:
        with_masks = sum(c.mask is not None for c in cases)
        show_info(f"Found {len(cases)} cases ({with_masks} with a ground-truth mask) in {os.fspath(folder)}; "
                  f"opened the first, {first.name}. Use Plugins > Nevus Segmentation > Case browser "
                  "to go through the others.")
    return layers
