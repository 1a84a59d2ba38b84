"""Segmentation scores, computed as the ISIC challenge computes them.

Per image: masks binarised (non-zero / True is lesion), confusion counts, then
Jaccard = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN) (both 1.0 when both masks are empty),
and thresholded Jaccard = Jaccard if Jaccard >= 0.65 else 0. Averages are over images.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

THRESHOLDED_JACCARD_CUTOFF = 0.65


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(TP, FP, FN) of two masks of the same shape."""
    pred = np.asarray(pred) != 0
    truth = np.asarray(truth) != 0
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, truth {truth.shape}")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return tp, fp, fn


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    tp, fp, fn = confusion(pred, truth)
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    tp, fp, fn = confusion(pred, truth)
    denom = tp + fp + fn
    return 1.0 if denom == 0 else tp / denom


def thresholded_jaccard(pred: np.ndarray, truth: np.ndarray, cutoff: float = THRESHOLDED_JACCARD_CUTOFF) -> float:
    j = jaccard(pred, truth)
    return j if j >= cutoff else 0.0


def score_pairs(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean Dice, Jaccard and thresholded Jaccard over (prediction, truth) pairs, and their count."""
    d, j, tj = [], [], []
    for pred, truth in pairs:
        d.append(dice(pred, truth))
        jj = jaccard(pred, truth)
        j.append(jj)
        tj.append(jj if jj >= THRESHOLDED_JACCARD_CUTOFF else 0.0)
    if not d:
        return {"dice": float("nan"), "jaccard": float("nan"), "thresholded_jaccard": float("nan"), "n": 0}
    return {"dice": float(np.mean(d)), "jaccard": float(np.mean(j)),
            "thresholded_jaccard": float(np.mean(tj)), "n": len(d)}
