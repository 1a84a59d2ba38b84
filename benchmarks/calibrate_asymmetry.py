"""Calibrate the 0/1/2 asymmetry score of ``measure()`` on the 80 annotated PH2 cases, with cross-validated figures.

The cases and their measurement are those of ``calibrate_colours.py`` (expert masks of ``ph2-adapt`` and
``ph2-calib``). Inputs (``measurements.calibrated.asymmetry_inputs``): the shape asymmetry about the
outline's two best axes, the colour asymmetry (CIEDE2000 of the halves' mean colours and total-variation
distance of their L*/b* histograms, larger and smaller over the two axes), the structure asymmetry
(difference of the halves' fine texture, larger and smaller), and the lesion's colour spreads (L*, b*,
chroma: a lesion of several colours is rarely symmetric in colour).

Protocol (every figure reported is out-of-fold):

- a proportional-odds (ordinal logistic) model of the experts' 0/1/2 score with an L2 penalty chosen
  from ``PENALTIES`` by 5-fold cross-validation (ordinal log loss) *inside each training fold*; the score
  is the model's expected score rounded (0, 1 or 2); nothing else is chosen (no thresholds are tuned);
- 5-fold cross-validation stratified by the experts' score, repeated ``--repeats`` times (seeds 0..);
  Spearman correlation of the score and of the expected score with the experts', exact agreement, the
  confusion matrix summed over repeats, each as mean [min-max] over repeats;
- the same protocol on the asymmetry features alone (without the colour spreads), reported for
  comparison, and the fixed shape-only rule of earlier versions (nothing fitted) on the same cases.

Then the model is fitted on all 80 cases and, with ``--write``, saved to
``src/napari_nevus_seg/measurements/asymmetry_model.json``; figures go to
``benchmarks/results/asymmetry_calibration.json``. Run::

    python benchmarks/calibrate_asymmetry.py [--data ../shared/data] [--repeats 10] [--write]
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from calibrate_colours import SUBSETS, calibration_args, load_cases, summarise

from napari_nevus_seg.measurements import calibrated as mcal
from napari_nevus_seg.measurements import calibration as cal
from napari_nevus_seg.measurements.asymmetry import ASYMMETRY_FEATURES

PENALTIES = (0.01, 0.03, 0.1, 0.3, 1.0)
MODEL_VERSION = "ph2-80-1"


def fit_score(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> cal.LinearFit:
    """Choose the penalty by 5-fold CV on (X, y) (ordinal log loss), then fit on all of it."""
    lam = cal.choose_penalty(X, y, PENALTIES, cal.fit_ordinal, cal.ordinal_log_loss, 5, rng)
    return cal.fit_ordinal(X, y, lam)


def expected_score(fit: cal.LinearFit, X: np.ndarray) -> np.ndarray:
    return cal.ordinal_probabilities(fit, X) @ np.arange(3)


def cross_validate(X: np.ndarray, y: np.ndarray, repeats: int, X_test: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold expected scores, (repeats, n); each fold fitted on ``X`` and scored on ``X_test`` (the same
    cases measured on other outlines) when given."""
    Xt = X if X_test is None else X_test

    def predict(train, test, rng):
        return expected_score(fit_score(X[train], y[train], rng), Xt[test])

    return cal.repeated_cv(y, predict, repeats=repeats, k=5, seed=0)


def figures(expected: np.ndarray, y: np.ndarray) -> dict:
    score = np.rint(expected).astype(int)
    conf = np.zeros((3, 3), int)
    for r in range(len(score)):
        for e, o in zip(y, score[r]):
            conf[e, o] += 1
    return {"spearman_score": summarise([cal.spearman(s, y) for s in score]),
            "spearman_expected": summarise([cal.spearman(e, y) for e in expected]),
            "exact": summarise([float(np.mean(s == y)) for s in score]),
            "within_one": summarise([float(np.mean(np.abs(s - y) <= 1)) for s in score]),
            "confusion_summed_over_repeats": conf.tolist()}


def print_figures(title: str, f: dict) -> None:
    def cell(d):
        return f"{d['mean']:.3f} [{d['min']:.3f}-{d['max']:.3f}]"

    print(f"{title}\n  Spearman, score 0/1/2    {cell(f['spearman_score'])}\n"
          f"  Spearman, expected score {cell(f['spearman_expected'])}\n  exact agreement          {cell(f['exact'])}\n"
          f"  confusion, summed over repeats (rows experts 0/1/2, columns ours 0/1/2): {f['confusion_summed_over_repeats']}")


def main(argv: list[str] | None = None) -> int:
    args = calibration_args(argv, __doc__.split("\n")[0], "asymmetry_calibration.json")
    if args is None:
        return 2
    t0 = time.time()
    cases = load_cases(args.data)
    y = cases["asymmetry"]
    X = mcal.asymmetry_inputs(cases["colour_x"], cases["asym_x"])
    if not np.all(np.isfinite(X)):
        raise RuntimeError("a case has a missing asymmetry feature")
    Xt, net = None, cases
    if args.outlines == "network":
        net = load_cases(args.data, "network")
        Xt = mcal.asymmetry_inputs(net["colour_x"], net["asym_x"])
        print(f"scored on the network's outlines ({len(net['no_network_lesion'])} cases without one)")
    n = len(y)
    print(f"{n} cases measured in {time.time() - t0:.0f} s; experts' asymmetry 0/1/2: {np.bincount(y, minlength=3).tolist()}")
    print(f"\n{args.repeats} x repeated 5-fold CV stratified by the experts' score, penalty chosen inside each "
          "training fold; mean [min-max] over repeats")
    shipped = figures(cross_validate(X, y, args.repeats, Xt), y)
    print_figures("Shape, colour and structure asymmetry + colour spreads (shipped)", shipped)
    k = len(ASYMMETRY_FEATURES)
    only = figures(cross_validate(X[:, :k], y, args.repeats, None if Xt is None else Xt[:, :k]), y)
    print_figures("Asymmetry features only (without the colour spreads)", only)
    old = net["old_asymmetry"]
    fixed = {"spearman_score": round(cal.spearman(old, y), 3), "exact": round(float(np.mean(old == y)), 3)}
    print(f"Fixed shape-only rule (two axes, 10 %): Spearman {fixed['spearman_score']:.3f}, exact {fixed['exact']:.3f}")
    fit = fit_score(X, y, np.random.default_rng(0))
    results = {"cases": n, "subsets": list(SUBSETS), "repeats": args.repeats, "folds": 5, "penalties": list(PENALTIES),
               "experts_counts": np.bincount(y, minlength=3).tolist(), "shipped": shipped,
               "asymmetry_features_only": only, "fixed_shape_rule": fixed, "model_version": MODEL_VERSION,
               "outlines": args.outlines}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nfigures written to {args.results}")
    if args.write:
        meta = {"model_version": MODEL_VERSION, "created": date.today().isoformat(),
                "source": f"benchmarks/calibrate_asymmetry.py: proportional-odds regression on the {n} annotated PH2 "
                          "cases of ph2-adapt and ph2-calib (expert masks); cv: repeated stratified 5-fold "
                          "cross-validation, nested penalty",
                "score": "the expected score rounded to 0, 1 or 2",
                "cv": {"spearman_score": shipped["spearman_score"]["mean"],
                       "spearman_expected": shipped["spearman_expected"]["mean"], "exact": shipped["exact"]["mean"]}}
        mcal.ASYMMETRY_MODEL_PATH.write_text(json.dumps(mcal.asymmetry_json(fit, meta), indent=1) + "\n")
        print(f"model written to {mcal.ASYMMETRY_MODEL_PATH}")
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
