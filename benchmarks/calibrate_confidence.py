"""Fit and check the per-lesion confidence (inference.confidence) on validation images.

For each validation image (ISIC 2017's 200 held-out images and a sample of the HAM10000 validation
lesions of scripts/train_model2.py): segment it, take the largest lesion's raw margin score (as segment(return_confidence=True) computes it) and the
image's Dice against the expert mask. A monotone (isotonic) fit of Dice on the raw score gives the
calibration table; two-fold cross-validation says how well the table predicts Dice on images it was not
fitted on (Spearman, mean absolute error, and how often 'check this outline' is right).

    python benchmarks/calibrate_confidence.py --model src/napari_nevus_seg/weights/default.pt
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from train_model2 import ham_metadata, split_by_lesion  # noqa: E402

from napari_nevus_seg import dice, load_model, read_image, read_mask, segment  # noqa: E402
from napari_nevus_seg.inference.confidence import REVIEW_BELOW  # noqa: E402
from napari_nevus_seg.io.datasets import discover_cases  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
IDENTITY = {"raw": [0.0, 1.0], "dice": [0.0, 1.0]}


def isic_validation(root: Path) -> list:
    cases = [c for c in discover_cases(root) if c.mask is not None]
    order = torch.randperm(len(cases), generator=torch.Generator().manual_seed(0)).tolist()
    return [cases[i] for i in sorted(order[:round(len(cases) * 0.1)])]


def ham_validation(root: Path, n: int) -> list:
    meta = ham_metadata(root)
    held = split_by_lesion(meta, 0.1, seed=0)
    cases = [c for c in discover_cases(root) if c.mask is not None and meta[c.name][0] in held]
    rng = np.random.default_rng(0)
    return [cases[i] for i in sorted(rng.choice(len(cases), size=min(n, len(cases)), replace=False))]


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing step fit of y on x, as (knots, values)."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    blocks = [[ys[i], 1.0, xs[i], xs[i]] for i in range(len(xs))]   # mean, weight, x_lo, x_hi
    merged: list[list[float]] = []
    for b in blocks:
        merged.append(b)
        while len(merged) > 1 and merged[-2][0] > merged[-1][0]:
            b2, b1 = merged.pop(), merged.pop()
            w = b1[1] + b2[1]
            merged.append([(b1[0] * b1[1] + b2[0] * b2[1]) / w, w, b1[2], b2[3]])
    knots = np.array([(b[2] + b[3]) / 2 for b in merged])
    return knots, np.array([b[0] for b in merged])


def table_from(x: np.ndarray, y: np.ndarray, max_knots: int = 12) -> dict[str, list[float]]:
    knots, values = isotonic(x, y)
    if len(knots) > max_knots:
        idx = np.unique(np.linspace(0, len(knots) - 1, max_knots).round().astype(int))
        knots, values = knots[idx], values[idx]
    return {"raw": [0.0, *np.round(knots, 4).tolist(), 1.0],
            "dice": [float(np.round(values[0], 4)), *np.round(values, 4).tolist(), float(np.round(values[-1], 4))]}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--isic", default=str(DATA / "isic2017-train"))
    ap.add_argument("--ham", default=str(DATA / "ham10000"))
    ap.add_argument("--ham-n", type=int, default=300)
    ap.add_argument("--out", default=None, help="write the table and figures as JSON here")
    args = ap.parse_args()
    model = copy.copy(load_model(args.model))
    model.meta = {**model.meta, "confidence_calibration": IDENTITY}
    rows = []
    t0 = time.time()
    for source, cases in (("isic", isic_validation(Path(args.isic))), ("ham", ham_validation(Path(args.ham), args.ham_n))):
        for c in cases:
            img, truth = read_image(c.image), read_mask(c.mask)
            labels, raw = segment(img, model=model, return_confidence=True)   # identity table: raw scores
            rows.append((source, c.name, raw.get(1, float("nan")), dice(labels, truth)))
    print(f"{len(rows)} images in {time.time() - t0:.0f} s")
    found = [r for r in rows if np.isfinite(r[2])]
    x, y = np.array([r[2] for r in found]), np.array([r[3] for r in found])
    src = np.array([r[0] for r in found])
    # two-fold cross-validation, folds alternating by image within each source
    fold = np.zeros(len(found), int)
    for s in ("isic", "ham"):
        idx = np.flatnonzero(src == s)
        fold[idx[1::2]] = 1
    pred = np.empty(len(found))
    for k in (0, 1):
        t = table_from(x[fold != k], y[fold != k])
        pred[fold == k] = np.interp(x[fold == k], t["raw"], t["dice"])
    flag, bad = pred < REVIEW_BELOW, y < REVIEW_BELOW
    report = {
        "images": len(rows), "no_detection": len(rows) - len(found),
        "cv_spearman_raw_vs_dice": round(spearman(x, y), 3),
        "cv_mae_expected_vs_dice": round(float(np.mean(np.abs(pred - y))), 4),
        "cv_flagged": int(flag.sum()), "cv_flagged_truly_below": int((flag & bad).sum()),
        "below_total": int(bad.sum()), "cv_sensitivity": round(float((flag & bad).sum() / max(bad.sum(), 1)), 3),
        "cv_precision": round(float((flag & bad).sum() / max(flag.sum(), 1)), 3),
        "per_source": {s: {"n": int((src == s).sum()),
                           "spearman": round(spearman(x[src == s], y[src == s]), 3),
                           "mae": round(float(np.mean(np.abs(pred[src == s] - y[src == s]))), 4)}
                       for s in ("isic", "ham")},
        "table": table_from(x, y),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
