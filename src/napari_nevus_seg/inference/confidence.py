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
CONFIDENCE_COLUMN = "expected_dice"   # the column that holds it in a layer's features and in batch tables

# raw margin -> expected Dice; fitted on the ISIC 2017 validation images with model 1.5
# and 300 HAM10000 validation images (benchmarks/calibrate_confidence.py, results in
# benchmarks/results/confidence_model1.5.json); monotone, flat beyond both ends
DEFAULT_CALIBRATION: dict[str, list[float]] = {
    "raw": [0, 0.1844, 0.2772, 0.4072, 0.4321, 0.4392, 0.6259, 0.6293, 0.6959, 0.7632, 0.7752, 0.8788, 0.8824, 1],
    "dice": [0.179, 0.179, 0.6953, 0.7588, 0.7706, 0.821, 0.8583, 0.8603, 0.9014, 0.9035, 0.905, 0.9745, 0.9806,
             0.9806],
}


def _on_grid(proba: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map and the labels on one grid of at most :data:`GRID` px a side (nearest samples).

    ``proba`` may be the network's own small map (its grid is then used) or a full-size map.
    """
    ph, pw = proba.shape
    step = max(1, int(np.ceil(max(ph, pw) / GRID)))
    rows, cols = np.arange(step // 2, ph, step), np.arange(step // 2, pw, step)
    p = proba[np.ix_(rows, cols)]
    lr = ((rows + 0.5) * labels.shape[0] / ph).astype(int).clip(0, labels.shape[0] - 1)
    lc = ((cols + 0.5) * labels.shape[1] / pw).astype(int).clip(0, labels.shape[1] - 1)
    return p, labels[np.ix_(lr, lc)]


def raw_confidence(proba: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Mean network margin ``|2p - 1|`` around each lesion's outline: ``{label: score in [0, 1]}``.

    ``labels`` is (H, W); ``proba`` is the network's map for it, at full size
    (``segment(img, return_proba=True)``) or at the network's resolution. A lesion too small to show on
    the grid gets the margin of its own pixels (full-size map) or of the cell at its centre.
    """
    proba, labels = np.asarray(proba, np.float32), np.asarray(labels)
    if proba.ndim != 2 or labels.ndim != 2:
        raise ValueError(f"expected (H, W) probabilities and labels, got {proba.shape} and {labels.shape}")
    p, lab = _on_grid(np.nan_to_num(proba, nan=0.5), labels)
    margin = np.abs(2.0 * p - 1.0)
    out: dict[int, float] = {}
    ids = [int(i) for i in np.unique(labels) if i != 0]
    centres = ndi.center_of_mass(np.ones(labels.shape), labels, ids) if ids else []
    for i, centre in zip(ids, centres):
        mask = lab == i
        area = int(mask.sum())
        if area == 0 and proba.shape == labels.shape:   # smaller than one grid cell: its own pixels
            out[i] = float(np.mean(np.abs(2.0 * np.nan_to_num(proba[labels == i], nan=0.5) - 1.0)))
            continue
        if area == 0:      # smaller than one cell of the network's map: the cell at its centre
            r = min(int(centre[0] * p.shape[0] / labels.shape[0]), p.shape[0] - 1)
            c = min(int(centre[1] * p.shape[1] / labels.shape[1]), p.shape[1] - 1)
            out[i] = float(margin[r, c])
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
