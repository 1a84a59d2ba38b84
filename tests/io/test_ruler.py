"""The pixel size from a line drawn along a ruler: known answers and clear refusals."""

from __future__ import annotations

import math

import pytest

from napari_nevus_seg import pixel_size_from_ruler


def test_known_answers():
    assert pixel_size_from_ruler((10, 20), (10, 220), 5) == pytest.approx(0.025)          # 5 mm over 200 px
    assert pixel_size_from_ruler((0, 0), (30, 40), 1.0) == pytest.approx(1 / 50)          # a slanted line
    assert pixel_size_from_ruler([5.5, 7.25], [105.5, 7.25], 2) == pytest.approx(0.02)    # fractions, lists
    # anisotropic pixels (rows twice as tall): a vertical line of 50 rows spans 100 column-widths
    assert pixel_size_from_ruler((0, 0), (50, 0), 1.0, pixel_aspect=(2.0, 1.0)) == pytest.approx(0.01)


@pytest.mark.parametrize("start, end, length, message", [
    ((0, 0), (0, 1), 1.0, "at least a few pixels"),
    ((0, 0), (0, 0), 1.0, "at least a few pixels"),
    ((0,), (0, 100), 1.0, "ruler start"),
    ((0, 0), (0, math.nan), 1.0, "ruler end"),
    ((0, 0), "10,10", 1.0, "ruler end"),
    ((0, 0), (0, 100), 0, "positive number of mm"),
    ((0, 0), (0, 100), -2, "positive number of mm"),
    ((0, 0), (0, 100), math.inf, "positive number of mm"),
    ((0, 0), (0, 100), True, "positive number of mm"),
    ((0, 0), (0, 100), 1e9, "from 1e-06 to 1000"),           # a kilometre per pixel: refused by the range
])
def test_bad_rulers_are_refused(start, end, length, message):
    with pytest.raises(ValueError, match=message):
        pixel_size_from_ruler(start, end, length)
