"""Colour measures for :func:`napari_nevus_seg.measure`: the six dermoscopic colours, CIE Lab statistics,
and colour asymmetry. No Qt or napari here.

The colour rule (after Kasmi & Mokrani 2016, who score the C criterion from six reference colours and
count a colour when it covers at least 5 % of the lesion):

1. every lesion pixel is converted to CIE L*a*b* (D65, sRGB);
2. it is assigned to the nearest reference colour (Euclidean distance in L*a*b*, i.e. CIE76 ΔE*ab),
   provided that distance is at most ``max_distance`` (30 by default, about half the typical distance
   between two reference colours); farther pixels stay unassigned;
3. a colour is present when its pixels make up at least ``min_share`` (5 %) of the lesion;
4. the C count is the number of colours present (0-6; Stolz's C starts at 1, we report what we find).

Reference colours (RGB, 0-255): ``KASMI_2016`` holds the six values of Kasmi & Mokrani's automatic ABCD
implementation (IET Image Processing 10(6), 2016, doi:10.1049/iet-ipr.2015.0385), as reproduced in
open re-implementations. Pass ``reference_colours=`` to use your own (e.g. for another dermoscope).
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

COLOUR_NAMES = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")

KASMI_2016: dict[str, tuple[int, int, int]] = {
    "white": (197, 188, 217),
    "red": (118, 21, 17),
    "light_brown": (163, 82, 16),
    "dark_brown": (135, 44, 5),
    "blue_gray": (113, 108, 139),
    "black": (41, 31, 30),
}

DEFAULT_REFERENCES = KASMI_2016
DEFAULT_MAX_DISTANCE = 30.0
DEFAULT_MIN_SHARE = 0.05


def check_references(references: dict | None) -> dict[str, tuple[float, float, float]]:
    """Validate a mapping colour name -> RGB (0-255); ``None`` gives :data:`DEFAULT_REFERENCES`."""
    if references is None:
        return dict(DEFAULT_REFERENCES)
    if not isinstance(references, dict) or not references:
        raise ValueError("reference_colours must be a non-empty dict mapping a colour name to an (R, G, B) triple")
    unknown = set(references) - set(COLOUR_NAMES)
    if unknown:
        raise ValueError(f"unknown colour name(s) {sorted(unknown)}; use {list(COLOUR_NAMES)}")
    out = {}
    for name, rgb in references.items():
        arr = np.asarray(rgb, dtype=float)
        if arr.shape != (3,) or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"reference colour {name!r} must be three numbers in 0..255, got {rgb!r}")
        out[name] = tuple(arr)
    return out


def reference_lab(references: dict[str, tuple[float, float, float]]) -> tuple[list[str], np.ndarray]:
    """Names and CIE Lab values of the reference colours."""
    names = list(references)
    rgb = np.array([references[n] for n in names], dtype=float)[None] / 255.0
    return names, rgb2lab(rgb)[0]


def lab_pixels(rgb_crop: np.ndarray) -> np.ndarray:
    """CIE L*a*b* of an (H, W, 3) uint8 crop (float64)."""
    return rgb2lab(rgb_crop)


def colour_shares(lab: np.ndarray, references: dict, max_distance: float = DEFAULT_MAX_DISTANCE) -> dict[str, float]:
    """Share of the pixels (N, 3 Lab) assigned to each reference colour by the nearest-colour rule."""
    names, ref = reference_lab(references)
    shares = {n: 0.0 for n in COLOUR_NAMES}
    if len(lab) == 0:
        return shares
    dist = np.sqrt(((lab[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
    nearest = np.argmin(dist, axis=1)
    within = dist[np.arange(len(lab)), nearest] <= max_distance
    counts = np.bincount(nearest[within], minlength=len(names))
    for n, c in zip(names, counts):
        shares[n] = float(c) / len(lab)
    return shares


def lab_statistics(lab: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of L*, a*, b*, and the spread: mean ΔE*ab of the pixels to the mean colour."""
    if len(lab) == 0:
        return {k: float("nan") for k in ("L_mean", "a_mean", "b_mean", "L_std", "a_std", "b_std", "spread")}
    mean = lab.mean(axis=0)
    std = lab.std(axis=0)
    spread = float(np.sqrt(((lab - mean) ** 2).sum(-1)).mean())
    return {"L_mean": float(mean[0]), "a_mean": float(mean[1]), "b_mean": float(mean[2]),
            "L_std": float(std[0]), "a_std": float(std[1]), "b_std": float(std[2]), "spread": spread}


def halves_delta_e(lab: np.ndarray, left: np.ndarray) -> float:
    """CIEDE2000 colour difference between the mean colours of the two halves of a lesion."""
    if left.sum() == 0 or (~left).sum() == 0:
        return float("nan")
    a = lab[left].mean(axis=0)
    b = lab[~left].mean(axis=0)
    return float(deltaE_ciede2000(a[None], b[None])[0])
