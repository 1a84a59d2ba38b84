"""Per-lesion confidence: the raw margin score on known maps, its calibration, and segment()'s output."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_nevus_seg import build_model, segment, synthetic_lesion_image
from napari_nevus_seg.inference.confidence import DEFAULT_CALIBRATION, expected_dice, lesion_confidence, raw_confidence


def _disc(shape=(300, 400), centre=(150, 200), radius=60) -> np.ndarray:
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return ((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2).astype(np.int32)


def test_a_crisp_map_scores_one_and_an_undecided_map_zero():
    lab = _disc()
    assert raw_confidence(lab.astype(np.float32), lab)[1] == pytest.approx(1.0)
    assert raw_confidence(np.full(lab.shape, 0.5, np.float32), lab)[1] == pytest.approx(0.0)


def test_a_blurrier_edge_scores_lower():
    lab = _disc()
    scores = [raw_confidence(ndi.gaussian_filter(lab.astype(np.float32), s), lab)[1] for s in (1, 4, 12)]
    assert scores[0] > scores[1] > scores[2]


def test_the_network_sized_map_and_the_full_map_agree_for_a_smooth_edge():
    lab = _disc((576, 768), (288, 384), 150)
    full = ndi.gaussian_filter(lab.astype(np.float32), 6)
    small = full[1::3, 1::4][:192, :192]
    assert raw_confidence(small, lab)[1] == pytest.approx(raw_confidence(full, lab)[1], abs=0.05)


def test_each_lesion_gets_its_own_score_and_tiny_ones_are_scored_too():
    big = np.kron(_disc(), np.ones((5, 5), np.int32))
    big[61:63, 61:63] = 2                         # 2 x 2 px between the samples of the 8 px grid of a 2000 px map
    proba = np.where(big == 1, 0.99, np.where(big == 2, 0.6, 0.01)).astype(np.float32)
    raw = raw_confidence(proba, big)
    assert set(raw) == {1, 2}
    assert raw[1] > 0.9 and raw[2] == pytest.approx(0.2, abs=0.01)


def test_calibration_is_monotone_and_a_models_own_table_wins():
    xs = np.linspace(0, 1, 21)
    ys = [expected_dice(x) for x in xs]
    assert all(b >= a for a, b in zip(ys, ys[1:]))
    assert ys[0] == DEFAULT_CALIBRATION["dice"][0] and ys[-1] == DEFAULT_CALIBRATION["dice"][-1]
    model = build_model(width=2, depth=1, meta={"confidence_calibration": {"raw": [0, 1], "dice": [0.5, 0.5]}})
    lab = _disc()
    assert lesion_confidence(lab.astype(np.float32), lab, model) == {1: 0.5}


def test_segment_returns_a_confidence_per_lesion():
    case = synthetic_lesion_image(seed=3, n_lesions=3)
    labels, conf = segment(case.image, return_confidence=True)
    assert sorted(conf) == list(range(1, labels.max() + 1))
    assert all(0.0 <= v <= 1.0 for v in conf.values())
    labels2, proba, conf2 = segment(case.image, return_proba=True, return_confidence=True)
    assert np.array_equal(labels, labels2) and conf2 == conf and proba.shape == labels.shape
    stack_labels, stack_conf = segment(np.stack([case.image, case.image]), return_confidence=True)
    assert isinstance(stack_conf, list) and len(stack_conf) == 2   # a batch of two: equal up to float rounding
    assert all(sorted(c) == sorted(conf) and c == pytest.approx(conf, rel=1e-6) for c in stack_conf)
