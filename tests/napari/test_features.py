"""A measurement table laid out as napari's Labels-layer features (one row per label value)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from measure_shapes import two_lesion_scene

from napari_nevus_seg import measure
from napari_nevus_seg._napari._features import (
    feature_row,
    layer_features,
    lesion_rows,
    row_labels,
    with_users_columns,
)
from napari_nevus_seg.measurements.table import column_names

_scene = two_lesion_scene


def test_empty_table_gives_the_background_row_only():
    t = measure(np.zeros((50, 60), np.uint8), np.zeros((50, 60, 3), np.uint8), 0.01)
    assert list(t.columns) == column_names("mm")
    assert layer_features(t).shape[0] == 1


def test_layer_features_rows_match_label_values():
    labels, img = _scene()
    t = measure(labels, img, 0.02)
    f = layer_features(t)
    assert len(f) == 8  # label values 0..7, the row position is the label value
    assert "index" not in f.columns and "label" not in f.columns  # napari shows the position as "Index" already
    assert row_labels(f).tolist() == list(range(8)) and lesion_rows(f).tolist() == [2, 7]
    assert f.loc[2, "area_px2"] == t.loc[0, "area_px2"] and f.loc[7, "area_px2"] == t.loc[1, "area_px2"]
    assert f.loc[[0, 1, 3, 4, 5, 6], "area_px2"].isna().all()
    assert f.loc[0, "perimeter_mm"] != f.loc[0, "perimeter_mm"]  # NaN
    assert str(f["colour_count"].dtype) == "Int64" and str(f["touches_image_edge"].dtype) == "boolean"
    assert len(layer_features(t, max_label=10)) == 11


def test_layer_features_for_very_sparse_label_values():
    labels = np.zeros((60, 60), np.int64)
    labels[5:20, 5:20] = 3
    labels[30:50, 30:50] = 2_000_000
    t = measure(labels, None)
    f = layer_features(t, int(labels.max()))
    assert f["index"].tolist() == [0, 3, 2_000_000]  # not two million empty rows: napari's index column says which
    assert lesion_rows(f).tolist() == [1, 2] and feature_row(f, 2_000_000)["area_px2"] == 400
    assert feature_row(f, 5) is None
    assert f.loc[2, "area_px2"] == 400 and pd.isna(f.loc[0, "area_px2"])




def test_huge_label_values_get_one_row_each():
    labels, img = _scene()
    ref = measure(labels, img, 0.02)
    big = 2**62
    t = measure(np.where(labels == 7, big, labels.astype(np.int64)), img, 0.02)
    f = layer_features(t, big)
    assert f["index"].tolist() == [0, 2, big] and f.loc[2, "area_px2"] == ref.loc[1, "area_px2"]


def test_feature_row_and_users_columns_follow_label_values():
    labels, img = _scene()
    t = measure(labels, img, 0.02)
    f = layer_features(t)
    row = feature_row(f, 7)
    assert row["area_px2"] == t.loc[1, "area_px2"] and row["max_feret_mm"] == t.loc[1, "max_feret_mm"]
    old = f.copy()
    old["diagnosis"] = [None] * 7 + ["naevus"]
    again = with_users_columns(layer_features(t, max_label=9), old)
    assert len(again) == 10 and again.loc[7, "diagnosis"] == "naevus" and pd.isna(again.loc[2, "diagnosis"])
    legacy = pd.DataFrame({"index": [0, 7], "diagnosis": [None, "naevus"]})   # features written with napari's index
    assert with_users_columns(f, legacy).loc[7, "diagnosis"] == "naevus"
