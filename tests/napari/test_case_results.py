"""The case browser's session record and mask saving, without a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nevus_seg._napari._case_results import (
    CaseRecord,
    case_figures,
    check_mask_target,
    default_mask_folder,
    save_case_mask,
)
from napari_nevus_seg.inference.metrics import dice, jaccard
from napari_nevus_seg.io.labels import file_pixel_size, labels_source, read_labels


def test_case_figures_count_lesions_and_score_with_the_core_metrics():
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 2:8] = 1
    labels[10:15, 20:28] = 3                                   # numbers need not be consecutive
    truth = np.zeros((20, 30), np.uint8)
    truth[3:9, 2:9] = 1
    f = case_figures(labels, 1.25, truth)
    assert (f.lesions, f.seconds) == (2, 1.25)
    assert f.dice == dice(labels, truth) and f.jaccard == jaccard(labels, truth) and 0 < f.dice < 1
    assert case_figures(labels, 0.5).dice is None                # no expert mask: no score
    assert case_figures(np.zeros((4, 4), int), 0.1, np.zeros((4, 4))).dice == 1.0   # both empty, as ISIC scores
    with pytest.raises(ValueError, match="shapes differ"):
        case_figures(labels, 1.0, truth[:-1])


def test_the_record_keeps_one_entry_per_case_and_averages_the_scored_ones(tmp_path):
    rec = CaseRecord()
    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    rec.set(a, case_figures(np.ones((2, 2), int), 1.0, np.ones((2, 2))))
    rec.set(b, case_figures(np.ones((2, 2), int), 1.0))        # no expert mask
    assert rec.mean_dice([a, b, c]) == (1.0, 1, 2)
    rec.set(tmp_path / "x" / ".." / "a.png", case_figures(np.ones((2, 2), int), 2.0, np.eye(2)))   # again: replaced
    assert rec.get(a).seconds == 2.0 and rec.mean_dice([a, b, c]) == (dice(np.ones((2, 2)), np.eye(2)), 1, 2)
    assert rec.mean_dice([c]) == (None, 0, 0) and rec.get(c) is None


def test_masks_are_saved_beside_the_data_set_never_among_its_files(make_dataset):
    root, cases = make_dataset("images_masks", n=2, shape=(40, 50))
    folder = default_mask_folder(root)
    assert folder == root.parent / f"{root.name}_nevus-seg-masks"
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    labels = np.zeros((40, 50), np.int32)
    labels[5:20, 5:20], labels[25:30, 30:45] = 1, 2
    path = save_case_mask(labels, cases[0], folder, cases, pixel_size_mm=(0.02, 0.02))
    assert path == folder / f"{cases[0].name}_lesions.tif"
    np.testing.assert_array_equal(read_labels(path), labels)
    assert file_pixel_size(path) == pytest.approx((0.02, 0.02)) and labels_source(path) == str(cases[0].image)
    for place in (cases[0].mask.parent, cases[0].image.parent):
        with pytest.raises(ValueError, match="holds the data set's images or expert masks"):
            save_case_mask(labels, cases[0], place, cases)
    with pytest.raises(ValueError, match="never overwritten"):
        check_mask_target(cases[1].mask, cases)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
