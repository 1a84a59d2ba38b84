"""Colour measures for :func:`napari_nevus_seg.measure`: the six dermoscopic colours, CIE Lab statistics,
and colour asymmetry. No Qt or napari here.

The colour rule (after Kasmi & Mokrani 2016, who score the C criterion of the ABCD rule from six
reference colours and count a colour when it covers at least 5 % of the lesion):

1. every lesion pixel is converted to CIE L*a*b* (sRGB, D65);
2. it is assigned to the nearest reference colour (Euclidean distance in L*a*b*, i.e. CIE76 ΔE*ab),
   provided that distance is at most ``max_distance`` (40 by default: only pixels unlike every
   dermoscopic colour, such as green or yellow artefacts, stay unassigned);
3. a colour is present when its pixels make up at least ``min_share`` (5 %) of the lesion;
4. the C count is the number of colours present (0-6; Stolz's C starts at 1, we report what we find).

The shares (``share_<colour>`` columns) are fractions of the lesion's pixels, and the pixels farther than
``max_distance`` from every reference are counted in ``share_unassigned``: the seven shares of a lesion
add up to 1. The unassigned share is not small on real images: on 20 PH2 cases (expert outlines) its median
was 5 %, a quarter of the lesions had more than 17 % and the largest 55 % (pinkish, greyish or skin-coloured
parts, reflections); it grows when a dermoscope's colour balance differs from the reference colours.

Reference colours (``REFERENCE_SETS``, RGB 0-255):

- ``"normalised_rgb"`` (default): white (1, 1, 1), red (0.8, 0.2, 0.2), light brown (0.6, 0.4, 0),
  dark brown (0.2, 0, 0), blue-gray (0.2, 0.6, 0.6), black (0, 0, 0) in normalised RGB, the reference
  colours given for Kasmi & Mokrani's automatic ABCD rule in this project's brief (also used to paint
  the synthetic images);
- ``"kasmi_table"``: white (197, 188, 217), red (118, 21, 17), light brown (163, 82, 16), dark brown
  (135, 44, 5), blue-gray (113, 108, 139), black (41, 31, 30), the values that several open
  re-implementations attribute to Kasmi & Mokrani 2016.

We could not check either set against the paper's table (IET Image Processing 10(6):448-455, 2016,
doi:10.1049/iet-ipr.2015.0385). Pass ``reference_colours=`` (a set name or a dict) to use your own,
e.g. colours sampled from your dermoscope's images.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from napari_nevus_seg.io.cielab import lab_u8

COLOUR_NAMES = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
#: the share of the lesion's pixels near none of the reference colours (column ``share_unassigned``)
UNASSIGNED = "unassigned"

REFERENCE_SETS: dict[str, dict[str, tuple[float, float, float]]] = {
    "normalised_rgb": {
        "white": (255.0, 255.0, 255.0),
        "red": (204.0, 51.0, 51.0),
        "light_brown": (153.0, 102.0, 0.0),
        "dark_brown": (51.0, 0.0, 0.0),
        "blue_gray": (51.0, 153.0, 153.0),
        "black": (0.0, 0.0, 0.0),
    },
    "kasmi_table": {
        "white": (197.0, 188.0, 217.0),
        "red": (118.0, 21.0, 17.0),
        "light_brown": (163.0, 82.0, 16.0),
        "dark_brown": (135.0, 44.0, 5.0),
        "blue_gray": (113.0, 108.0, 139.0),
        "black": (41.0, 31.0, 30.0),
    },
}

DEFAULT_REFERENCES = "normalised_rgb"
DEFAULT_MAX_DISTANCE = 40.0
DEFAULT_MIN_SHARE = 0.05


def check_references(references: dict | str | None) -> dict[str, tuple[float, float, float]]:
    """Validate reference colours: a set name of :data:`REFERENCE_SETS`, a mapping colour name -> RGB
    (0-255, any subset of the six names), or ``None`` for the default set."""
    if references is None:
        references = DEFAULT_REFERENCES
    if isinstance(references, str):
        if references not in REFERENCE_SETS:
            raise ValueError(f"unknown reference colour set {references!r}; use one of {sorted(REFERENCE_SETS)} "
                             "or a dict colour name -> (R, G, B)")
        return dict(REFERENCE_SETS[references])
    if not isinstance(references, dict) or not references:
        raise ValueError("reference_colours must be a set name or a non-empty dict mapping a colour name to (R, G, B)")
    unknown = set(references) - set(COLOUR_NAMES)
    if unknown:
        raise ValueError(f"unknown colour name(s) {sorted(unknown)}; use {list(COLOUR_NAMES)}")
    out = {}
    for name, rgb in references.items():
        arr = np.asarray(rgb, dtype=float)
        if arr.shape != (3,) or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"reference colour {name!r} must be three numbers in 0..255, got {rgb!r}")
        out[name] = tuple(float(v) for v in arr)
    return out


def reference_lab(references: dict[str, tuple[float, float, float]]) -> tuple[list[str], np.ndarray]:
    """Names and CIE Lab values of the reference colours."""
    names = list(references)
    rgb = np.array([references[n] for n in names], dtype=float)[None] / 255.0
    return names, rgb2lab(rgb)[0]


def lab_pixels(rgb_crop: np.ndarray) -> np.ndarray:
    """CIE L*a*b* of an (H, W, 3) uint8 crop (float64, for exact means and spreads; scikit-image's
    ``rgb2lab`` within 1e-4)."""
    return lab_u8(rgb_crop).astype(np.float64)


def colour_shares(lab: np.ndarray, references: dict, max_distance: float = DEFAULT_MAX_DISTANCE) -> dict[str, float]:
    """Share of the pixels (N, 3 Lab) assigned to each reference colour by the nearest-colour rule, and the
    share assigned to none (key :data:`UNASSIGNED`: farther than ``max_distance`` from every reference).

    Each pixel is counted once, so the shares of the six colours and the unassigned share add up to 1
    (all 0 for no pixels). Colours missing from ``references`` get 0.
    """
    names = list(references)
    shares = {n: 0.0 for n in (*COLOUR_NAMES, UNASSIGNED)}
    if len(lab) == 0:
        return shares
    nearest = nearest_reference(lab, references, max_distance)
    counts = np.bincount(nearest[nearest >= 0], minlength=len(names))
    for n, c in zip(names, counts):
        shares[n] = float(c) / len(lab)
    shares[UNASSIGNED] = float(len(lab) - counts.sum()) / len(lab)
    return shares


def nearest_reference(lab: np.ndarray, references: dict, max_distance: float = DEFAULT_MAX_DISTANCE) -> np.ndarray:
    """For each pixel (N, 3 Lab), the index (in ``references``' order) of the nearest reference colour by
    CIE76 ΔE*ab, or -1 when that is farther than ``max_distance`` (the assignment behind :func:`colour_shares`)."""
    _, ref = reference_lab(references)
    out = np.empty(len(lab), dtype=np.int64)
    for start in range(0, len(lab), 100_000):  # bounded memory on large lesions
        block = lab[start:start + 100_000]
        dist = np.sqrt(((block[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
        nearest = np.argmin(dist, axis=1)
        within = dist[np.arange(len(block)), nearest] <= max_distance
        out[start:start + len(block)] = np.where(within, nearest, -1)
    return out


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


#: the per-lesion colour features of the calibrated detector (:mod:`.calibrated`), in order: the 5th,
#: 50th and 95th percentiles of L*, a*, b* and chroma C*ab over the lesion's pixels, and the spreads
#: (95th minus 5th percentile) of L*, b* and C*ab, which say how varied the lesion is
DETECTOR_FEATURES = tuple(f"{v}_p{p}" for v in ("L", "a", "b", "C") for p in (5, 50, 95)) + (
    "L_spread", "b_spread", "C_spread")


def detector_features(lab: np.ndarray) -> np.ndarray:
    """The :data:`DETECTOR_FEATURES` of a lesion's pixels ``lab`` (N, 3 CIE L*a*b*), as a float array.

    Percentiles are linear-interpolated (numpy's default); NaN for no pixels.
    """
    if len(lab) == 0:
        return np.full(len(DETECTOR_FEATURES), np.nan)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    values = np.stack([lab[:, 0], lab[:, 1], lab[:, 2], chroma], axis=1)
    pct = np.percentile(values, [5, 50, 95], axis=0)            # (3 percentiles, 4 channels)
    spreads = pct[2, [0, 2, 3]] - pct[0, [0, 2, 3]]
    return np.concatenate([pct.T.ravel(), spreads]).astype(float)
