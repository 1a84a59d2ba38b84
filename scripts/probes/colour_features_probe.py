"""Probe: do other lesion features let the colour detector reach the issue-21 targets? (exploratory)

Same protocol as ``benchmarks/calibrate_colours.py`` (per-colour balanced L2 logistic regression, nested
penalty, repeated stratified 5-fold CV on the 80 PH2 cases, the shipped share conditions), different
features beside the shipped 15 (:data:`DETECTOR_FEATURES`):

- skin-relative: percentiles of L*, a*, b* minus the median of the skin 15-60 px outside the lesion;
- colour-region fractions: share of lesion pixels lighter/redder than the skin, darker than L* 15-30, ...;
- local contrast: share of pixels lighter and less chromatic (or bluer) than their lesion neighbourhood
  (masked Gaussian of 10 or 30 px), and the tail percentiles of those differences;
- log lesion area, which is not a colour feature (PH2's white lesions are its large melanomas), run only
  to show how much of the "colour" signal is the lesion's kind;
- colour histograms of the lesion's pixels (square roots of the shares): L*a*b* in 4 x 4 x 4 bins, the
  three marginals in 10 bins each, L* x chroma in 5 x 5 bins, alone and beside the shipped 15 (the
  issue's "small learned model on colour histograms").

Exploratory (2026-12-07, issue 21; results in docs/measurements.md)::

    python scripts/probes/colour_features_probe.py [REPEATS]
"""
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2lab

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src")); sys.path.insert(0, str(ROOT / "benchmarks"))
import calibrate_colours as cc

from napari_nevus_seg import iter_pairs
from napari_nevus_seg.measurements import calibration as cal
from napari_nevus_seg.measurements.colour import COLOUR_NAMES


def masked_blur(x, m, s):
    return ndi.gaussian_filter(np.where(m, x, 0.0), s) / np.maximum(ndi.gaussian_filter(m.astype(float), s), 1e-6)


def case_features(img, mask):
    lab = rgb2lab(img[..., :3])
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    C = np.hypot(a, b)
    dist = ndi.distance_transform_edt(~mask)
    skin = lab[(dist > 15) & (dist <= 60)]
    skin_med = np.median(skin[skin[:, 0] > 25], axis=0)           # PH2's dark vignette left out
    Lm, am, bm, Cm = L[mask], a[mask], b[mask], C[mask]
    rel = np.concatenate([np.percentile(v - s, [5, 50, 95]) for v, s in zip((Lm, am, bm), skin_med)])
    frac = [np.mean(Lm - skin_med[0] > t) for t in (0, 5, 10)] + [np.mean(am - skin_med[1] > t) for t in (5, 10, 15)]
    frac += [np.mean(Lm < t) for t in (15, 20, 25, 30)] + [np.mean((bm < t) & (Lm < 60)) for t in (0, 5, 10)]
    frac += [np.mean((Cm < 12) & (Lm > 25) & (Lm < 60)), np.mean((Lm > 25) & (Lm < 45) & (Cm >= 12)),
             np.mean((Lm >= 45) & (Lm < 65) & (Cm >= 15))]
    local = []
    for s in (10, 30):
        dL = (L - masked_blur(L, mask, s))[mask]
        dC = (C - masked_blur(C, mask, s))[mask]
        db = (b - masked_blur(b, mask, s))[mask]
        local += [np.mean((dL > t) & (dC < 0)) for t in (5, 10, 15)] + [np.mean(db < -t) for t in (5, 10)]
        local += list(np.percentile(dL, [95, 99])) + list(np.percentile(db, [1, 5]))
    return {"skin_rel": rel, "fractions": np.array(frac), "local": np.array(local),
            "log_area": np.array([np.log(mask.sum())]), **histograms(Lm, am, bm, Cm)}


def histograms(L, a, b, C):
    """Square roots of the shares of the lesion's pixels in L*a*b* bins (joint, marginal, L* x chroma)."""
    joint, _ = np.histogramdd(np.c_[L, a, b], bins=(np.array([0, 30, 45, 60, 101.]), np.array([-50, 8, 16, 24, 100.]),
                                                    np.array([-60, 5, 15, 25, 100.])))
    edges = (np.linspace(0, 100, 11), np.linspace(-10, 40, 11), np.linspace(-20, 40, 11))
    marginals = np.concatenate([np.histogram(v, bins=e)[0] for v, e in zip((L, a, b), edges)])
    lc, _, _ = np.histogram2d(L, C, bins=(np.array([0, 25, 40, 55, 70, 101.]), np.array([0, 10, 20, 30, 40, 200.])))
    return {"hist_lab": np.sqrt(joint.ravel() / L.size), "hist_marginals": np.sqrt(marginals / L.size),
            "hist_lc": np.sqrt(lc.ravel() / L.size)}


def evaluate(X, truth, shares, repeats):
    """Mean balanced accuracy of six, count Spearman, per colour (BA, AUC): the shipped decision, out of fold."""
    probs = {}
    for i, name in enumerate(COLOUR_NAMES):
        y = truth[:, i]

        def predict(train, test, rng, y=y):
            fit = cc.fit_colour(X[train], y[train], rng)
            return 1 / (1 + np.exp(-cal.logistic_logit(fit, X[test])))

        probs[name] = cal.repeated_cv(y, predict, repeats=repeats, k=5, seed=0)
    bas, rhos, per = [], [], {n: [] for n in COLOUR_NAMES}
    for r in range(repeats):
        calls = []
        for i, n in enumerate(COLOUR_NAMES):
            c = ((probs[n][r] >= 0.5) & (shares[:, i] > 0)) | (shares[:, i] >= 0.5)
            calls.append(c)
            per[n].append(cal.binary_figures(c, truth[:, i])["balanced_accuracy"])
        bas.append(np.mean([per[n][-1] for n in COLOUR_NAMES]))
        rhos.append(cal.spearman(np.sum(calls, 0), truth.sum(1)))
    auc = {n: np.mean([cc._auc(probs[n][r], truth[:, i]) for r in range(repeats)]) for i, n in enumerate(COLOUR_NAMES)}
    return np.mean(bas), np.mean(rhos), {n: (np.mean(per[n]), auc[n]) for n in COLOUR_NAMES}


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    data = cc.default_data()
    cases = cc.load_cases(data)
    idx = {n: i for i, n in enumerate(cases["names"])}
    extra = [None] * len(idx)
    for sub in cc.SUBSETS:
        for name, img, mask in iter_pairs(data / sub):
            if name in idx:
                extra[idx[name]] = case_features(img, mask)
    base = cases["colour_x"]
    stack = {k: np.array([e[k] for e in extra]) for k in extra[0]}
    sets = {"shipped 15": base,
            "skin-relative (+ chroma percentiles)": np.hstack([stack["skin_rel"], base[:, 9:12]]),
            "shipped + skin-relative": np.hstack([base, stack["skin_rel"]]),
            "shipped + fractions": np.hstack([base, stack["fractions"]]),
            "shipped + local (10 and 30 px)": np.hstack([base, stack["local"]]),
            "shipped + local (10 px)": np.hstack([base, stack["local"][:, :9]]),
            "shipped + log area (not a colour feature)": np.hstack([base, stack["log_area"]]),
            "histogram L*a*b* 4x4x4": stack["hist_lab"],
            "histogram marginals 3x10": stack["hist_marginals"],
            "histogram L* x chroma 5x5": stack["hist_lc"],
            "shipped + histogram L*a*b*": np.hstack([base, stack["hist_lab"]]),
            "shipped + histogram marginals": np.hstack([base, stack["hist_marginals"]]),
            "shipped + histogram L* x chroma": np.hstack([base, stack["hist_lc"]])}
    print(f"{repeats} x 5-fold CV, 80 PH2 cases, expert masks; per colour: balanced accuracy / AUC")
    for label, X in sets.items():
        ba, rho, per = evaluate(X, cases["truth"], cases["shares"], repeats)
        print(f"{label:42s} mean BA {ba:.3f}  count rho {rho:.3f} | "
              + " ".join(f"{n} {v[0]:.2f}/{v[1]:.2f}" for n, v in per.items()), flush=True)


if __name__ == "__main__":
    main()
