"""The calibrated rules of :func:`napari_nevus_seg.measure`: the colour detector and the asymmetry score.

Both were fitted on the 80 annotated PH2 cases (expert outlines) by ``benchmarks/calibrate_colours.py``,
which also reports their cross-validated figures; their parameters ship as two small JSON files beside
this module (``colour_model.json``, ``asymmetry_model.json``), read and checked here. No Qt or napari here.

- **Colour detector.** For each dermoscopic colour, a logistic regression on the lesion's colour
  features (:data:`.colour.DETECTOR_FEATURES`: percentiles of L*, a*, b*, chroma and their spreads),
  fitted with presence and absence weighted equally. ``probability`` is that model's probability that
  the experts would call the colour present, as if half of all lesions had it; the colour is called
  present at ``probability >= 0.5`` provided some of the lesion's pixels are nearest its reference colour
  (share above ``evidence_share``, 0), or when it covers at least ``dominant_share`` (half) of the lesion
  by those shares. The model reads colour statistics, which in PH2 also say how varied a lesion is (a
  varied lesion is often a melanoma, with white, blue-gray or black): the two share conditions keep it
  from calling a colour no pixel has, and make sure that a lesion of one clear colour has it. A colour whose cross-validated balanced accuracy was too low (see
  the file) has status ``"not_assessed"``: it is never called and its columns stay empty.
- **Asymmetry score.** A proportional-odds model of the experts' 0/1/2 score on the lesion's shape,
  colour and structure asymmetry (:data:`.asymmetry.ASYMMETRY_FEATURES`) and its colour spreads; the
  score is the model's expected score (0-2, ``asymmetry_score_expected``) rounded to 0, 1 or 2.

A model file of one's own (same format, e.g. fitted on one's own dermoscope's annotated images with the
same script) is passed to ``measure(colour_model=..., asymmetry_model=...)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from napari_nevus_seg.measurements.asymmetry import ASYMMETRY_FEATURES
from napari_nevus_seg.measurements.colour import COLOUR_NAMES, DETECTOR_FEATURES

HERE = Path(__file__).resolve().parent
COLOUR_MODEL_PATH = HERE / "colour_model.json"
ASYMMETRY_MODEL_PATH = HERE / "asymmetry_model.json"
COLOUR_FORMAT = "napari-nevus-seg colour detector"
ASYMMETRY_FORMAT = "napari-nevus-seg asymmetry score"
#: the colour features of the asymmetry score that are not asymmetry features (appended to them)
ASYMMETRY_COLOUR_FEATURES = ("L_spread", "b_spread", "C_spread")


class ModelFileError(ValueError):
    """A calibrated-rule file that cannot be used (wrong format, features or numbers); says what is wrong."""


@dataclass(frozen=True)
class LinearRule:
    """``score = ((x - mean) / scale) . weights`` of standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    def score(self, x: np.ndarray) -> float:
        """The linear score of one feature vector (NaN when a feature is missing)."""
        return float(((np.asarray(x, float) - self.mean) / self.scale) @ self.weights)


@dataclass(frozen=True)
class ColourDetector:
    """Per-colour logistic rules; ``rules[name]`` is ``(rule, bias)`` or ``None`` (not assessed)."""

    rules: dict[str, tuple[LinearRule, float] | None]
    version: str
    source: str
    dominant_share: float | None = None
    evidence_share: float = 0.0

    def predict(self, features: np.ndarray) -> dict[str, float]:
        """Probability of each colour (NaN when not assessed or when a feature is missing)."""
        out = {}
        for name in COLOUR_NAMES:
            rule = self.rules.get(name)
            if rule is None or not np.all(np.isfinite(features)):
                out[name] = float("nan")
                continue
            z = rule[0].score(features) + rule[1]
            out[name] = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        return out

    def calls(self, probabilities: dict[str, float], shares: dict[str, float]) -> dict[str, bool | None]:
        """Whether each colour is present: ``probability >= 0.5`` with a share of the lesion (nearest
        reference colour) above ``evidence_share`` (some pixels of that colour), or a share of at least
        ``dominant_share``; ``None`` for a colour not assessed or without a probability (a missing feature)."""
        out: dict[str, bool | None] = {}
        for name in COLOUR_NAMES:
            p = probabilities.get(name, float("nan"))
            if self.rules.get(name) is None or not math.isfinite(p):
                out[name] = None
                continue
            share = shares.get(name, 0.0)
            dominant = self.dominant_share is not None and share >= self.dominant_share
            out[name] = bool((p >= 0.5 and share > self.evidence_share) or dominant)
        return out

    def assessed(self) -> list[str]:
        """The colours this detector calls (the others are not assessed)."""
        return [n for n in COLOUR_NAMES if self.rules.get(n) is not None]


@dataclass(frozen=True)
class AsymmetryScorer:
    """Proportional-odds rule: ``P(A <= j) = sigmoid(cuts[j] - score)``."""

    rule: LinearRule
    cuts: np.ndarray
    version: str
    source: str

    def expected(self, features: np.ndarray) -> float:
        """The expected score (0-2) under the model (NaN when a feature is missing)."""
        if not np.all(np.isfinite(features)):
            return float("nan")
        s = self.rule.score(features)
        cum = np.concatenate([[0.0], 1.0 / (1.0 + np.exp(-np.clip(self.cuts - s, -700, 700))), [1.0]])
        return float(np.diff(cum) @ np.arange(len(self.cuts) + 1))


def asymmetry_inputs(colour_features: np.ndarray, asymmetry_features: np.ndarray) -> np.ndarray:
    """The asymmetry score's inputs: the :data:`.asymmetry.ASYMMETRY_FEATURES` followed by the colour
    features named in :data:`ASYMMETRY_COLOUR_FEATURES` (works on one lesion or on rows of lesions)."""
    idx = [DETECTOR_FEATURES.index(n) for n in ASYMMETRY_COLOUR_FEATURES]
    return np.concatenate([asymmetry_features, np.asarray(colour_features)[..., idx]], axis=-1)


def _numbers(d: dict, key: str, n: int, where: str, positive: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(d[key], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: '{key}' must be a list of {n} numbers ({exc})") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        raise ModelFileError(f"{where}: '{key}' must be {n} finite{' positive' if positive else ''} numbers, "
                             f"got {d[key]!r}")
    return arr


def _rule(d: dict, n: int, where: str) -> LinearRule:
    return LinearRule(_numbers(d, "mean", n, where), _numbers(d, "scale", n, where, positive=True),
                      _numbers(d, "weights", n, where))


def _read(path: Path, fmt: str, features: tuple[str, ...]) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != fmt or data.get("format_version") != 1:
        raise ModelFileError(f"{path}: not a {fmt!r} file of format version 1")
    if list(data.get("features", [])) != list(features):
        raise ModelFileError(f"{path}: made for the features {data.get('features')!r}, but this version computes "
                             f"{list(features)!r}")
    return data


def _check_colour(data: dict, path: Path) -> ColourDetector:
    colours = data.get("colours")
    if not isinstance(colours, dict) or set(colours) != set(COLOUR_NAMES):
        raise ModelFileError(f"{path}: 'colours' must give each of {list(COLOUR_NAMES)}")
    rules: dict[str, tuple[LinearRule, float] | None] = {}
    for name in COLOUR_NAMES:
        entry, where = colours[name], f"{path}: colour {name!r}"
        status = entry.get("status") if isinstance(entry, dict) else None
        if status == "not_assessed":
            rules[name] = None
        elif status == "calibrated":
            bias = entry.get("bias")
            if not isinstance(bias, (int, float)) or not math.isfinite(bias):
                raise ModelFileError(f"{where}: 'bias' must be a finite number")
            rules[name] = (_rule(entry, len(DETECTOR_FEATURES), where), float(bias))
        else:
            raise ModelFileError(f"{where}: 'status' must be 'calibrated' or 'not_assessed', got {status!r}")
    dominant = data.get("dominant_share")
    if dominant is not None and (not isinstance(dominant, (int, float)) or not 0 < dominant <= 1):
        raise ModelFileError(f"{path}: 'dominant_share' must be a number in (0, 1] or null, got {dominant!r}")
    evidence = data.get("evidence_share", 0.0)
    if not isinstance(evidence, (int, float)) or not 0 <= evidence < 1:
        raise ModelFileError(f"{path}: 'evidence_share' must be a number in [0, 1), got {evidence!r}")
    return ColourDetector(rules, str(data.get("model_version", "")), str(data.get("source", "")),
                          None if dominant is None else float(dominant), float(evidence))


def _check_asymmetry(data: dict, path: Path) -> AsymmetryScorer:
    n = len(ASYMMETRY_FEATURES) + len(ASYMMETRY_COLOUR_FEATURES)
    cuts = _numbers(data, "cuts", 2, str(path))
    if not cuts[0] < cuts[1]:
        raise ModelFileError(f"{path}: 'cuts' must increase, got {list(cuts)}")
    return AsymmetryScorer(_rule(data, n, str(path)), cuts, str(data.get("model_version", "")),
                           str(data.get("source", "")))


@lru_cache(maxsize=8)
def _load_colour(path: str, mtime: float) -> ColourDetector:
    p = Path(path)
    return _check_colour(_read(p, COLOUR_FORMAT, DETECTOR_FEATURES), p)


@lru_cache(maxsize=8)
def _load_asymmetry(path: str, mtime: float) -> AsymmetryScorer:
    p = Path(path)
    return _check_asymmetry(_read(p, ASYMMETRY_FORMAT, ASYMMETRY_FEATURES + ASYMMETRY_COLOUR_FEATURES), p)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc})") from None


def load_colour_detector(path: str | Path | None = None) -> ColourDetector:
    """The colour detector of ``path`` (default: the one shipped, fitted on 80 PH2 cases), checked.

    Raises :class:`ModelFileError` (a ``ValueError``) saying what is wrong with a file that cannot be used.
    Loaded files are cached (a file changed on disk is read again).
    """
    p = Path(COLOUR_MODEL_PATH if path is None else path).resolve()
    return _load_colour(str(p), _mtime(p))


def load_asymmetry_scorer(path: str | Path | None = None) -> AsymmetryScorer:
    """The asymmetry score's model of ``path`` (default: the one shipped), checked like
    :func:`load_colour_detector`."""
    p = Path(ASYMMETRY_MODEL_PATH if path is None else path).resolve()
    return _load_asymmetry(str(p), _mtime(p))


def colour_detector_json(fits: dict[str, Any], meta: dict[str, Any]) -> dict:
    """The JSON content of a colour detector: ``fits[name]`` is a :class:`.calibration.LinearFit` or
    ``None`` (not assessed, ``meta["reasons"][name]`` says why); ``meta`` adds version, source and figures."""
    colours = {}
    for name in COLOUR_NAMES:
        fit = fits.get(name)
        entry: dict[str, Any] = {"status": "not_assessed" if fit is None else "calibrated"}
        if fit is None:
            entry["reason"] = meta.get("reasons", {}).get(name, "")
        else:
            entry.update({"mean": _rounded(fit.mean), "scale": _rounded(fit.scale), "weights": _rounded(fit.weights),
                          "bias": float(round(float(fit.bias[0]), 6)), "penalty": fit.lam})
        entry["cv"] = meta.get("cv", {}).get(name, {})
        colours[name] = entry
    head = {k: v for k, v in meta.items() if k not in ("reasons", "cv")}
    return {"format": COLOUR_FORMAT, "format_version": 1, **head, "features": list(DETECTOR_FEATURES),
            "colours": colours}


def asymmetry_json(fit: Any, meta: dict[str, Any]) -> dict:
    """The JSON content of an asymmetry scorer from a proportional-odds :class:`.calibration.LinearFit`."""
    return {"format": ASYMMETRY_FORMAT, "format_version": 1, **meta,
            "features": list(ASYMMETRY_FEATURES + ASYMMETRY_COLOUR_FEATURES),
            "mean": _rounded(fit.mean), "scale": _rounded(fit.scale), "weights": _rounded(fit.weights),
            "cuts": _rounded(fit.bias), "penalty": fit.lam}


def _rounded(values: np.ndarray) -> list[float]:
    return [float(round(float(v), 6)) for v in values]
