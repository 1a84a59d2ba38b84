"""The per-pixel colour-class map: the pixels behind each share, and only the colours the table counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_nevus_seg import measure, synthetic_lesion_image
from napari_nevus_seg.io.synthetic import DERMOSCOPIC_COLOURS
from napari_nevus_seg.measurements.colour import COLOUR_NAMES
from napari_nevus_seg.measurements.colour_map import (
    CLASS_NAMES,
    CLASS_OF_COLOUR,
    CLASS_RGB,
    NOT_COUNTED,
    UNASSIGNED,
    colour_class_map,
)

SKIN = (214, 166, 142)


def _two_lesions():
    """Lesion 3: left 60 % dark brown, right black; lesion 9: light brown with a green (no colour) stripe."""
    labels = np.zeros((160, 320), np.int32)
    yy, xx = np.mgrid[:160, :320]
    labels[(yy - 80) ** 2 + (xx - 80) ** 2 <= 60 ** 2] = 3
    labels[(yy - 80) ** 2 + (xx - 240) ** 2 <= 60 ** 2] = 9
    img = np.empty((160, 320, 3), float)
    img[:] = SKIN
    img[(labels == 3) & (xx < 95)] = DERMOSCOPIC_COLOURS["dark_brown"]
    img[(labels == 3) & (xx >= 95)] = DERMOSCOPIC_COLOURS["black"]
    img[labels == 9] = DERMOSCOPIC_COLOURS["light_brown"]
    img[(labels == 9) & (xx > 280)] = (40, 200, 40)
    return labels, np.clip(img + np.random.default_rng(0).normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def test_map_shows_the_colours_counted_where_their_pixels_are():
    labels, img = _two_lesions()
    table = measure(labels, img)
    classes = colour_class_map(labels, img, table)
    assert classes.dtype == np.uint8 and classes.shape == labels.shape
    assert (classes[labels == 0] == 0).all()
    xx = np.mgrid[:160, :320][1]
    left, right = (labels == 3) & (xx < 90), (labels == 3) & (xx > 100)
    assert np.mean(classes[left] == CLASS_OF_COLOUR["dark_brown"]) > 0.95
    assert np.mean(classes[right] == CLASS_OF_COLOUR["black"]) > 0.95
    assert np.mean(classes[(labels == 9) & (xx < 275)] == CLASS_OF_COLOUR["light_brown"]) > 0.95
    assert np.mean(classes[(labels == 9) & (xx > 285)] == UNASSIGNED) > 0.95
    rows = table.set_index("label")
    for value in (3, 9):   # every colour counted has pixels in the map, and no other colour has
        shown = {c for c in COLOUR_NAMES if (classes[labels == value] == CLASS_OF_COLOUR[c]).any()}
        counted = {c for c in COLOUR_NAMES if rows.loc[value, f"colour_{c}"] is not pd.NA
                   and bool(rows.loc[value, f"colour_{c}"])}
        assert shown == counted
    assert counted == {"light_brown"}


def test_all_pixels_mode_gives_the_shares():
    case = synthetic_lesion_image(seed=3, n_lesions=2, pixel_size_mm=0.02)
    table = measure(case.labels, case.image, 0.02)
    every = colour_class_map(case.labels, case.image, table, called_only=False)
    called = colour_class_map(case.labels, case.image, table)
    for _, row in table.iterrows():
        inside = case.labels == row["label"]
        for c in COLOUR_NAMES:
            assert np.mean(every[inside] == CLASS_OF_COLOUR[c]) == pytest.approx(row[f"share_{c}"], abs=1e-12)
        assert np.mean(every[inside] == UNASSIGNED) == pytest.approx(row["share_unassigned"], abs=1e-12)
        # called-only: the same pixels, those of colours not counted moved to NOT_COUNTED
        moved = (every[inside] != called[inside])
        assert (called[inside][moved] == NOT_COUNTED).all()
    # lesion 2 of this case has 39 % dark brown that the detector does not call (a known miss): shown as not counted
    lesion2 = case.labels == table["label"].iloc[1]
    assert not table["colour_dark_brown"].iloc[1]
    assert np.mean(called[lesion2] == NOT_COUNTED) > 0.3


def test_reference_rule_and_errors():
    labels, img = _two_lesions()
    table = measure(labels, img, colour_rule="reference")
    classes = colour_class_map(labels, img, table)
    assert set(np.unique(classes)) <= {0, CLASS_OF_COLOUR["dark_brown"], CLASS_OF_COLOUR["black"],
                                       CLASS_OF_COLOUR["light_brown"], NOT_COUNTED, UNASSIGNED}
    assert len(CLASS_NAMES) == len(CLASS_RGB) == 9
    with pytest.raises(ValueError, match="needs the image"):
        colour_class_map(labels, None, table)
    with pytest.raises(ValueError, match="no colours"):
        colour_class_map(labels, img, measure(labels, None))
    with pytest.raises(ValueError, match="WxH"):
        colour_class_map(labels[:, :300], img, table)
