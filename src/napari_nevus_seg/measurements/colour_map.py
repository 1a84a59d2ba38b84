"""Which pixels were called which dermoscopic colour: a per-pixel colour-class map of measured lesions.

:func:`colour_class_map` labels every pixel of the measured lesions with the colour its ``share_*`` column
counted it in (the nearest reference colour within the maximum distance, exactly the assignment behind
the shares, with the references and distance recorded in the table's ``attrs``). With ``called_only``
(the default) a pixel keeps its colour only where that colour was called present in its lesion
(``colour_<name>``), so the map agrees with the table's C: every colour shown is counted, and pixels of
a colour not called (or not assessed, such as red with the calibrated detector) are shown as
:data:`NOT_COUNTED`. The calibrated detector only calls a colour some pixels are nearest to, so every
colour it calls has pixels in the map. No Qt or napari here.

    table = measure(labels, image)
    classes = colour_class_map(labels, image, table)       # uint8: 0 outside lesions, 1..6, 7, 8
    names = CLASS_NAMES[classes[r, c]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from napari_nevus_seg.measurements.colour import COLOUR_NAMES, DEFAULT_MAX_DISTANCE, lab_pixels, nearest_reference

#: class values of the map: 0 outside lesions, 1..6 the colours of :data:`.colour.COLOUR_NAMES` in order
CLASS_OF_COLOUR = {name: i + 1 for i, name in enumerate(COLOUR_NAMES)}
NOT_COUNTED = 7     # nearest a colour that is not counted in this lesion (not called, or not assessed)
UNASSIGNED = 8      # near none of the reference colours (the share_unassigned pixels)
CLASS_NAMES = ("outside lesions", *(n.replace("_", " ").replace("blue gray", "blue-gray") for n in COLOUR_NAMES),
               "colour not counted", "near no reference colour")
#: display colours (RGB 0-255) for each class value, as the dermoscopic colours look; "not counted" grey,
#: "near no reference colour" magenta (the napari layer leaves it undrawn)
CLASS_RGB = ((0, 0, 0), (245, 245, 245), (210, 40, 40), (190, 130, 60), (105, 55, 25), (90, 130, 170),
             (15, 15, 15), (150, 150, 150), (255, 0, 255))


def colour_class_map(labels: Any, image: Any, table: pd.DataFrame, called_only: bool = True) -> np.ndarray:
    """The per-pixel colour classes of the lesions measured in ``table`` (``measure(labels, image)``'s result).

    Parameters
    ----------
    labels : (H, W) array
        The labels that were measured (lesions not in ``table`` are left 0).
    image : (H, W, 3) array
        The image they were measured in (any type :func:`~napari_nevus_seg.measure` takes).
    table : pandas.DataFrame
        The measurement table; its ``attrs`` give the reference colours and maximum distance, its
        ``colour_<name>`` columns the colours called in each lesion.
    called_only : bool
        Show a pixel's colour only where that colour was called present in its lesion (else
        :data:`NOT_COUNTED`); ``False`` shows the nearest-reference assignment of every pixel.

    Returns
    -------
    (H, W) uint8 array
        0 outside the measured lesions, ``CLASS_OF_COLOUR[name]`` (1-6), :data:`NOT_COUNTED` (7) or
        :data:`UNASSIGNED` (8); :data:`CLASS_NAMES` and :data:`CLASS_RGB` name and colour the values.
    """
    from napari_nevus_seg.io.intensity import to_rgb_uint8
    from napari_nevus_seg.io.labels import as_label_array

    lab_img = as_label_array(labels)
    if image is None:
        raise ValueError("a colour map needs the image the lesions were measured in")
    rgb = to_rgb_uint8(image, source="image", min_side=1)
    if rgb.shape[:2] != lab_img.shape:
        raise ValueError(f"labels are {lab_img.shape[1]}x{lab_img.shape[0]} (WxH) but the image is "
                         f"{rgb.shape[1]}x{rgb.shape[0]}")
    if not table.attrs.get("colour_image", True) or "reference_colours" not in table.attrs:
        raise ValueError("the table has no colours (measured without a colour image)")
    references = table.attrs["reference_colours"]
    max_distance = float(table.attrs.get("colour_max_distance", DEFAULT_MAX_DISTANCE))
    out = np.zeros(lab_img.shape, np.uint8)
    inside = np.isin(lab_img, table["label"].to_numpy()) & (lab_img != 0)
    if not inside.any():
        return out
    nearest = nearest_reference(lab_pixels(rgb[inside][None])[0], references, max_distance)
    names = list(references)
    # index -1 (near no reference) takes the last entry: UNASSIGNED
    classes = np.array([CLASS_OF_COLOUR[n] for n in names] + [UNASSIGNED], np.uint8)[nearest]
    if called_only:
        called = _called(table)                                      # (lesions, 6) bool
        row = pd.Index(table["label"].to_numpy()).get_indexer(lab_img[inside])   # the lesion's table row
        colour = classes.astype(np.int64) - 1                         # 0..5 for a colour
        is_colour = (colour >= 0) & (colour < len(COLOUR_NAMES))
        keep = np.zeros(len(classes), bool)
        keep[is_colour] = called[row[is_colour], colour[is_colour]]
        classes = np.where(is_colour & ~keep, NOT_COUNTED, classes).astype(np.uint8)
    out[inside] = classes
    return out


def _called(table: pd.DataFrame) -> np.ndarray:
    """(lesions, 6) whether each colour was called present (missing values: not called)."""
    cols = [table[f"colour_{c}"].astype("boolean").fillna(False).to_numpy(bool) for c in COLOUR_NAMES]
    return np.stack(cols, axis=1)
