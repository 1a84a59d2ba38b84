"""Agreement of :func:`napari_nevus_seg.measure` with the PH2 experts on the 20 cases of ``ph2-adapt``.

For every case, the expert lesion mask is measured (one lesion, pixel units: PH2 gives no pixel size),
and compared with the experts' annotations in ``PH2_annotations.csv``:

- asymmetry: our 0/1/2 shape score against the experts' 0/1/2 (Spearman rank correlation, exact
  agreement, confusion matrix), and the rank correlation of the continuous figures (shape asymmetry
  of both axes summed, and the larger colour asymmetry ΔE) with the experts' score;
- colours: for each of the six dermoscopic colours, accuracy, sensitivity and specificity of
  "present" against the experts' 1/0, and the correlation of the colour counts.

The rules are the fixed rules of earlier versions, set before this comparison: the shape-only asymmetry
score and the reference colour rule (``colour_rule="reference"``); only the reference colour set is a
choice (``--references``, every set by default). The calibrated rules, fitted on 80 PH2 cases that
include these 20, are cross-validated by ``benchmarks/calibrate_colours.py``; scoring them here would
report their fit on their own training cases. Run::

    python benchmarks/ph2_agreement.py [--data ../shared/data/ph2-adapt] [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_nevus_seg import iter_pairs, measure
from napari_nevus_seg.measurements.colour import COLOUR_NAMES, DEFAULT_REFERENCES, REFERENCE_SETS


def default_data() -> Path:
    env = os.environ.get("NEVUS_SEG_DATA")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    return base / "ph2-adapt"


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def binary_scores(pred, truth) -> dict:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp, tn = int((pred & truth).sum()), int((~pred & ~truth).sum())
    fp, fn = int((pred & ~truth).sum()), int((~pred & truth).sum())
    return {"n_pos": int(truth.sum()), "pred_pos": int(pred.sum()), "accuracy": (tp + tn) / len(truth),
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan")}


def measure_cases(data: Path, references: list[str]) -> tuple[list[dict], dict[str, list]]:
    with open(data / "PH2_annotations.csv", newline="") as fh:
        ann = {r["name"]: r for r in csv.DictReader(fh)}
    rows, tables = [], {ref: [] for ref in references}
    for name, img, mask in iter_pairs(data):
        if name not in ann:
            continue
        rows.append(ann[name])
        labels = mask.astype(np.int32)
        for ref in references:
            t = measure(labels, img, None, reference_colours=ref, colour_rule="reference")
            if len(t) != 1:
                raise RuntimeError(f"{name}: expected one lesion, got {len(t)}")
            tables[ref].append(t.iloc[0])
    return rows, tables


def report(rows: list[dict], tables: dict[str, list], markdown: bool) -> None:
    expert_a = np.array([int(r["asymmetry"]) for r in rows])
    first = next(iter(tables.values()))
    ours_a = np.array([int(t["asymmetry_shape_score"]) for t in first])
    shape_sum = np.array([t["asymmetry_axis1"] + t["asymmetry_axis2"] for t in first])
    colour_max = np.array([max(t["colour_asymmetry_axis1_dE"], t["colour_asymmetry_axis2_dE"]) for t in first])
    conf = np.zeros((3, 3), int)
    for e, o in zip(expert_a, ours_a):
        conf[e, o] += 1
    edge = [r["name"] for r, t in zip(rows, first) if bool(t["touches_image_edge"])]
    print(f"PH2 cases: {len(rows)}; lesion touching the image edge (outline cut, asymmetry unreliable): "
          f"{', '.join(edge) or 'none'}")
    print("\nAsymmetry (shape, 0/1/2) against the experts' asymmetry")
    print(f"  Spearman rho (score)                  {spearman(ours_a, expert_a):+.2f}")
    print(f"  exact agreement                       {np.mean(ours_a == expert_a):.2f}  ({int((ours_a == expert_a).sum())}/{len(rows)})")
    print(f"  Spearman rho (axis1 + axis2, shape)   {spearman(shape_sum, expert_a):+.2f}")
    print(f"  Spearman rho (max colour asymmetry)   {spearman(colour_max, expert_a):+.2f}")
    inner = np.array([not bool(t["touches_image_edge"]) for t in first])
    print(f"  without lesions cut by the image edge ({int(inner.sum())} cases): Spearman "
          f"{spearman(ours_a[inner], expert_a[inner]):+.2f}, exact {np.mean(ours_a[inner] == expert_a[inner]):.2f}")
    print("  confusion (rows: experts 0/1/2, columns: ours 0/1/2):")
    for e in range(3):
        print("    " + " ".join(f"{v:3d}" for v in conf[e]))
    for ref, tabs in tables.items():
        print(f"\nColours, reference set {ref!r}")
        head = (f"  {'colour':12s} {'experts+':>8s} {'ours+':>6s} {'accuracy':>9s} {'sensitivity':>12s} "
                f"{'specificity':>12s} {'majority':>9s}")
        print(head)
        accs, base = [], []
        for c in COLOUR_NAMES:
            truth = [int(r[c]) == 1 for r in rows]
            pred = [bool(t[f"colour_{c}"]) for t in tabs]
            s = binary_scores(pred, truth)
            accs.append(s["accuracy"])
            base.append(max(s["n_pos"], len(truth) - s["n_pos"]) / len(truth))  # always answering the commoner
            print(f"  {c:12s} {s['n_pos']:8d} {s['pred_pos']:6d} {s['accuracy']:9.2f} {s['sensitivity']:12.2f} "
                  f"{s['specificity']:12.2f} {base[-1]:9.2f}")
        e_count = np.array([sum(int(r[c]) for c in COLOUR_NAMES) for r in rows])
        o_count = np.array([int(t["colour_count"]) for t in tabs])
        print(f"  mean per-colour accuracy {np.mean(accs):.2f} (majority answer: {np.mean(base):.2f}); colour count: Spearman {spearman(o_count, e_count):+.2f}, "
              f"exact {np.mean(o_count == e_count):.2f}, within one {np.mean(np.abs(o_count - e_count) <= 1):.2f}")
    if markdown:
        print("\n| case | experts A | ours A | axis1 | axis2 | colour ΔE max | experts' colours | our colours |")
        print("|---|---|---|---|---|---|---|---|")
        for r, t in zip(rows, first):
            ec = ", ".join(c for c in COLOUR_NAMES if int(r[c]) == 1)
            oc = ", ".join(c for c in COLOUR_NAMES if bool(t[f"colour_{c}"]))
            print(f"| {r['name']} | {r['asymmetry']} | {int(t['asymmetry_shape_score'])} | {t['asymmetry_axis1']:.3f} | "
                  f"{t['asymmetry_axis2']:.3f} | {max(t['colour_asymmetry_axis1_dE'], t['colour_asymmetry_axis2_dE']):.1f} | "
                  f"{ec} | {oc} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data(), help="the ph2-adapt folder")
    ap.add_argument("--references", nargs="+", default=[DEFAULT_REFERENCES] + sorted(set(REFERENCE_SETS) - {DEFAULT_REFERENCES}), choices=sorted(REFERENCE_SETS),
                    help="reference colour sets to compare (the first one also gives the asymmetry figures)")
    ap.add_argument("--markdown", action="store_true", help="also print a per-case markdown table")
    args = ap.parse_args(argv)
    if not (args.data / "PH2_annotations.csv").is_file():
        print(f"PH2 data not found at {args.data} (PH2_annotations.csv missing); nothing to do")
        return 0
    t0 = time.perf_counter()
    rows, tables = measure_cases(args.data, args.references)
    report(rows, tables, args.markdown)
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
