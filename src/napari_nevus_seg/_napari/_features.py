"""A measurement table laid out as a napari Labels layer's ``features``.

napari matches feature rows to label values by position and its features-table widget selects a label
by row; :func:`layer_features` arranges a :func:`~napari_nevus_seg.measure` table that way,
:func:`with_users_columns` carries a user's own columns over when the layer is measured again, and
:func:`feature_row` / :func:`lesion_rows` read one label's row and find the rows that hold lesions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_nevus_seg._napari._layers import layer_array
from napari_nevus_seg.measurements.table import user_columns


def layer_features(table: pd.DataFrame, max_label: int | None = None) -> pd.DataFrame:
    """Arrange a :func:`measure` table the way a napari Labels layer's ``features`` expects it.

    napari matches feature rows to label values by position (row 0 is the background label), and its
    features-table widget selects ``selected_label = row``; so the result has one row per label value
    ``0 .. max_label``, empty (NA) rows for the background and for unused values, and no label column:
    the row position is the label value (napari's features table shows it as "Index"; a column ``index``
    as well would only repeat it). When the label values are very sparse (``max_label`` above
    ``max(10 * lesions, 10000)``), only the background and the lesions get a row, and napari's ``index``
    column gives each row's label value: napari's status bar finds them through it, but its features
    table then selects by row position. :func:`lesion_rows` tells the lesions' rows from the empty ones.
    """
    if max_label is None:
        max_label = int(table["label"].max()) if len(table) else 0
    max_label = max(int(max_label), int(table["label"].max()) if len(table) else 0)
    t = table.copy()
    for c in t.columns:  # integer / bool columns become nullable so that empty rows can hold NA
        if c != "label" and pd.api.types.is_bool_dtype(t[c].dtype):
            t[c] = t[c].astype("boolean")
        elif c != "label" and pd.api.types.is_integer_dtype(t[c].dtype):
            t[c] = t[c].astype("Int64")
    sparse = max_label + 1 > max(10 * len(t), 10_000)
    values = np.concatenate([[0], t["label"].to_numpy()]) if sparse else np.arange(max_label + 1)
    dense = t.set_index("label").reindex(pd.Index(values)).reset_index(drop=True)
    if sparse:
        dense.insert(0, "index", values)
    return dense


def row_labels(features) -> np.ndarray:
    """The label value of each row of a Labels layer's ``features``: its ``index`` column, else the position."""
    if "index" in getattr(features, "columns", ()):
        return np.asarray(features["index"], dtype=np.int64)
    return np.arange(len(features), dtype=np.int64)


def lesion_rows(features, measured: str = "area_px2") -> np.ndarray:
    """Positions of the rows of ``features`` that hold a measured lesion (``measured`` is not NA): the rows
    a person wants to see, without the background and the unused label values."""
    if measured not in getattr(features, "columns", ()):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(features[measured].notna().to_numpy())


def feature_row(features, label: int) -> dict | None:
    """The features of label value ``label`` as a dict (column -> value), or None when it has no row."""
    hits = np.flatnonzero(row_labels(features) == int(label))
    return None if len(hits) == 0 else features.iloc[int(hits[0])].to_dict()


def with_users_columns(features, old):
    """``features`` plus the columns of ``old`` (the layer's features before) that are not measurements:
    a user's own per-lesion annotations (a diagnosis, a note) survive re-measuring, matched by label value."""
    keep = [c for c in user_columns(getattr(old, "columns", [])) if c not in features.columns]
    if not keep or not len(old):
        return features
    by_label = old[keep].set_axis(row_labels(old), axis=0)
    by_label = by_label[~by_label.index.duplicated()]
    extra = by_label.reindex(row_labels(features)).reset_index(drop=True)
    return pd.concat([features.reset_index(drop=True), extra], axis=1)


def arrays_to_measure(labels, image, no_image: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The (H, W) labels (a copy: the user may keep painting) and the image array of a Labels and an Image
    layer, checked: one 2-D plane each, of one size. ``no_image`` names the "no image" choice in messages.
    Raises ``ValueError`` saying what to do instead."""
    shape = tuple(layer_array(labels).shape)
    if len(shape) != 2 and np.prod(shape[:-2]) != 1:
        raise ValueError(f"Labels layer {labels.name!r} is a stack of {int(np.prod(shape[:-2]))} planes "
                         f"{shape}: measurements (and the layer's features) are per 2-D image. Measure "
                         "the planes in a script, measure(labels[i], image[i]), or with "
                         "'nevus-seg segment --measure' on the image files")
    lab = np.array(layer_array(labels), copy=True).reshape(shape[-2:])  # the user may keep painting
    img = None
    if image is not None:
        img = np.asarray(layer_array(image))
        plane = img.shape[-3:-1] if image.rgb else img.shape[-2:]
        if plane != lab.shape:
            raise ValueError(f"Labels layer {labels.name!r} is {lab.shape[1]}x{lab.shape[0]} but image "
                             f"{image.name!r} is {plane[1]}x{plane[0]}: choose the image they belong "
                             f"to, or '{no_image}'")
        if img.ndim != (3 if image.rgb else 2):
            raise ValueError(f"image {image.name!r} is a stack {img.shape}: choose the single image the "
                             f"labels belong to, or '{no_image}'")
    return lab, img
