"""Fine-tuning protocol on HAM10000 (issue 20): does one click teach the network a kind of lesion it is weak on?

For each "new kind" (bcc, akiec, bkl, vasc) and each draw (seed 0, 1, 2):

- draw 20 lesions of that kind (``lesion_id``, never an image: HAM has several images of one lesion) and
  one image of each: the user's 20 corrected cases (the Tschandl et al. masks stand in for corrections);
- ``fine_tune`` them from the base model with the settings under test (default: the package's defaults,
  what the widget's one click runs), timing the call;
- score, with the base and with the tuned model, every image of the *other* lesions of that kind (the
  "new kind" gain) and the untouched sets (forgetting): the 200 ISIC held-out images of every campaign
  (read once, reduced to 768 px on the long side and cached), and 200 HAM nevus and 100 melanoma images
  (fixed draws, seed 0). Scores are Dice of ``segment`` with the refinement as each model says (what the
  widget shows) and, from the same network map, the other setting.

Base models: 1.5 (the model this repository ships as ``weights/default.pt`` at the time of writing; keep a
copy and pass it with ``--base`` once the default changes) and the current default. With a base trained on
HAM images, pass ``--lesions FILE`` (the lesion ids it held out, one per line, e.g. a campaign's
``ham_val_lesions.txt``): lesions are then drawn and scored among those only.

    python benchmarks/finetune_protocol.py --label defaults --json benchmarks/results/ft_defaults.json
    python benchmarks/finetune_protocol.py --label long --set epochs=20 --set blend=1.0 --set patience=None
    python benchmarks/finetune_protocol.py --timing-ph2       # 20 PH2 pairs of 768x560: the 2-minute budget

Which cases to correct (``--select random|confidence|mixed``): half of a kind's lesions are scored, and the
20 corrected cases are picked from one image of each other lesion, at random, as the 20 the base model is
least confident about (:func:`~napari_nevus_seg.rank_least_confident`), or as the 10 least confident and 10
of the others at random; the scored set is the same for all.

Per-image results go to ``--partial`` (JSON lines) so that an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np
from compare_models import data_root, isic_held_out, read_pair, sha256
from train_model2 import ham_metadata

from napari_nevus_seg import (
    dice,
    fine_tune,
    iter_pairs,
    labels_from_map,
    load_model,
    network_map,
    rank_least_confident,
)
from napari_nevus_seg.io.datasets import discover_cases
from napari_nevus_seg.training.finetune import DEFAULTS, FineTuneSettings

KINDS = ("bcc", "akiec", "bkl", "vasc")
N_CORRECTED = 20
FORGET_DRAWS = {"nv": 200, "mel": 100}
ISIC_LONG_SIDE = 768
MAX_TEST = 300          # images of other lesions scored per kind and draw (bkl has ~950)


# --------------------------------------------------------------------------------------------- data
def ham_cases(root: Path, allowed: set[str] | None) -> tuple[dict[str, list], dict[str, tuple[str, str]]]:
    """HAM cases by diagnosis (only lesions in ``allowed`` when given) and the metadata."""
    meta = ham_metadata(root)
    by_dx: dict[str, list] = {}
    for c in discover_cases(root):
        if c.mask is None or c.name not in meta:
            continue
        lesion, dx = meta[c.name]
        if allowed is None or lesion in allowed:
            by_dx.setdefault(dx, []).append(c)
    return by_dx, meta


def draw_corrected(cases: list, meta: dict, seed: int, n: int = N_CORRECTED) -> tuple[list, list]:
    """(``n`` training cases, one per drawn lesion; the cases of every other lesion)."""
    rng = np.random.default_rng(seed)
    by_lesion: dict[str, list] = {}
    for c in sorted(cases, key=lambda c: c.name):
        by_lesion.setdefault(meta[c.name][0], []).append(c)
    lesions = sorted(by_lesion)
    picked = set(rng.choice(lesions, size=n, replace=False).tolist())
    train = [by_lesion[les][int(rng.integers(len(by_lesion[les])))] for les in sorted(picked)]
    test = [c for les in lesions if les not in picked for c in by_lesion[les]]
    if len(test) > MAX_TEST:
        keep = sorted(rng.choice(len(test), size=MAX_TEST, replace=False).tolist())
        test = [test[i] for i in keep]
    return train, test


def draw_selected(cases: list, meta: dict, seed: int, select: str, base, n: int = N_CORRECTED) -> tuple[list, list]:
    """The "which cases to correct" experiment: half of the lesions (drawn with ``seed``) are the scored set;
    from one image of each lesion of the other half, 20 are picked at random (``select="random"``), as the
    20 the base model is least confident about (``"confidence"``), or as its 10 least confident and 10 others
    at random (``"mixed"``). The scored set is the same for all."""
    rng = np.random.default_rng(seed)
    by_lesion: dict[str, list] = {}
    for c in sorted(cases, key=lambda c: c.name):
        by_lesion.setdefault(meta[c.name][0], []).append(c)
    lesions = [str(x) for x in rng.permutation(sorted(by_lesion))]
    pool, scored = lesions[: len(lesions) // 2], lesions[len(lesions) // 2:]
    candidates = [by_lesion[les][int(rng.integers(len(by_lesion[les])))] for les in pool]
    test = [c for les in scored for c in by_lesion[les]]
    if len(test) > MAX_TEST:
        test = [test[i] for i in sorted(rng.choice(len(test), size=MAX_TEST, replace=False).tolist())]
    if select == "random":
        picked = np.random.default_rng(seed + 1000).choice(len(candidates), n, replace=False).tolist()
    else:
        order = [i for i, _ in rank_least_confident([read_pair(c)[0] for c in candidates], model=base, device="cpu")]
        if select == "confidence":
            picked = order[:n]
        else:   # "mixed": the least confident half, and the other half at random among the rest
            k = n // 2
            rest = order[k:]
            extra = np.random.default_rng(seed + 1000).choice(len(rest), n - k, replace=False)
            picked = order[:k] + [rest[j] for j in extra]
    return [candidates[i] for i in sorted(picked)], test


def isic_forgetting_set(root: Path, cache: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 200 ISIC held-out images at ``ISIC_LONG_SIDE`` px (cached as .npz: decoding 200 large JPEGs takes minutes)."""
    from skimage.transform import resize

    path = cache / f"isic_heldout_{ISIC_LONG_SIDE}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        names = [str(n) for n in z["names"]]
        return [(n, z[f"img_{i}"], z[f"mask_{i}"]) for i, n in enumerate(names)]
    out = []
    for case in isic_held_out(root):
        img, truth = read_pair(case)
        f = ISIC_LONG_SIDE / max(img.shape[:2])
        if f < 1:
            shape = (round(img.shape[0] * f), round(img.shape[1] * f))
            img = (resize(img, shape, anti_aliasing=True, preserve_range=True) + 0.5).astype(np.uint8)
            truth = resize(truth.astype(float), shape, order=1, anti_aliasing=True) >= 0.5
        out.append((case.name, img, truth.astype(bool)))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")      # two runs starting together must not mix files
    np.savez_compressed(tmp, names=np.array([n for n, _, _ in out]),
                        **{f"img_{i}": im for i, (_, im, _) in enumerate(out)},
                        **{f"mask_{i}": m for i, (_, _, m) in enumerate(out)})
    os.replace(tmp, path)
    return out


def loaded(cases: list) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(c.name, *read_pair(c)) for c in cases]


# ------------------------------------------------------------------------------------------ scoring
class Partial:
    """Per-image scores in a JSON-lines file, keyed by (model key, set, image name): a restart skips them."""

    def __init__(self, path: Path | None):
        self.path, self.done = path, {}
        if path and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.done[(r["model"], r["set"], r["name"])] = r["dice"]

    def scores(self, key: str, kind: str, pairs, model) -> dict[str, dict[str, float]]:
        """{name: {"refine": dice, "no refine": dice}} for ``pairs``, computing only the missing ones."""
        out = {}
        for name, img, truth in pairs:
            d = self.done.get((key, kind, name))
            if d is None:
                plane, small = network_map(img, model=model, device="cpu")
                d = {r: dice(labels_from_map(plane, small, model=model, refine=flag) > 0, truth)
                     for r, flag in (("refine", True), ("no refine", False))}
                self.done[(key, kind, name)] = d
                if self.path:
                    with open(self.path, "a") as fh:
                        fh.write(json.dumps({"model": key, "set": kind, "name": name, "dice": d}) + "\n")
            out[name] = d
        return out


def mean_as_used(scores: dict[str, dict[str, float]], refines: bool) -> float:
    key = "refine" if refines else "no refine"
    return float(np.mean([d[key] for d in scores.values()]))


# -------------------------------------------------------------------------------------------- main
def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if k not in FineTuneSettings.__dataclass_fields__:
            raise SystemExit(f"--set {item}: no such setting (have {', '.join(FineTuneSettings.__dataclass_fields__)})")
        out[k] = ast.literal_eval(v)
    return out


def timing_ph2(root: Path, settings: dict, base) -> dict:
    """``fine_tune`` on the 20 ph2-adapt pairs (768x560): the widget's budget for ~768x576 images; and on 20
    HAM10000 pairs (200x150, the bcc draw 0 of the protocol)."""
    pairs = list(iter_pairs(root / "ph2-adapt"))
    out = {"ph2": _timed(pairs, settings, base)}
    by_dx, meta = ham_cases(root / "ham10000", None)
    out["ham"] = _timed(loaded(draw_corrected(by_dx["bcc"], meta, 0)[0]), settings, base)
    return out


def _timed(pairs: list, settings: dict, base) -> dict:
    from napari_nevus_seg.training.replay import synthetic_pairs

    synthetic_pairs.cache_clear()     # a first run in a session draws the practice images: timed too
    t0 = time.perf_counter()
    tuned = fine_tune([p[1] for p in pairs], [p[2] for p in pairs], base=base, device="cpu", **settings)
    secs = time.perf_counter() - t0
    ft = tuned.meta["fine_tune"]
    return {"pairs": len(pairs), "shape": list(pairs[0][1].shape[:2]), "seconds": round(secs, 1),
            "before_dice": ft["before_dice"], "after_dice": ft["after_dice"], "stopped_epoch": ft["stopped_epoch"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="folder with ham10000/, isic2017-train/, ph2-adapt/")
    ap.add_argument("--base", default=str(ROOT / "src" / "napari_nevus_seg" / "weights" / "default.pt"))
    ap.add_argument("--lesions", default=None, help="draw and score only these HAM lesion ids (a file, one per line)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=N_CORRECTED, help=f"corrected cases per run (default {N_CORRECTED})")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a fine-tuning setting")
    ap.add_argument("--label", default="defaults")
    ap.add_argument("--select", choices=("random", "confidence", "mixed"), default=None,
                    help="the which-cases-to-correct experiment: half the lesions scored, 20 of the others picked so")
    ap.add_argument("--no-forgetting", action="store_true", help="skip the untouched sets (quick search)")
    ap.add_argument("--timing-ph2", action="store_true",
                    help="only time fine_tune on the 20 ph2-adapt pairs (768x560) and 20 HAM pairs (200x150)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "nevus-seg-bench"))
    ap.add_argument("--partial", default=None, help="JSON-lines file of per-image scores (resume)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", nargs="+", metavar="RESULTS", default=None,
                    help="only print the tables of finished runs: their --json files, or logs (one row per line)")
    args = ap.parse_args()
    if args.table:
        for path in args.table:
            print(table_of(Path(path)) + "\n")
        return

    root = data_root(args.data)
    settings = parse_settings(args.set)
    base = load_model(args.base)
    base_key = sha256(Path(args.base))[:12]
    env = {"date": _dt.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "base": str(args.base), "base_sha": base_key,
           "base_version": base.meta.get("model_version"), "settings": {**DEFAULTS, **settings},
           "label": args.label, "select": args.select, "pairs": args.pairs}
    if args.timing_ph2:
        res = {"env": env, "timing_ph2": timing_ph2(root, settings, base)}
        print(json.dumps(res["timing_ph2"]))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        return

    allowed = set(Path(args.lesions).read_text().split()) if args.lesions else None
    by_dx, meta = ham_cases(root / "ham10000", allowed)
    partial = Partial(Path(args.partial) if args.partial else None)
    forget: dict[str, list] = {}
    if not args.no_forgetting:
        rng = np.random.default_rng(0)
        for dx, n in FORGET_DRAWS.items():
            cases = sorted(by_dx[dx], key=lambda c: c.name)
            forget[f"ham_{dx}"] = loaded([cases[i] for i in sorted(rng.choice(len(cases), n, replace=False))])
        forget["isic"] = isic_forgetting_set(root / "isic2017-train", Path(args.cache))
    base_forget = {k: partial.scores(base_key, k, v, base) for k, v in forget.items()}

    runs = []
    for kind in args.kinds:
        for draw in range(args.draws):
            train, test = (draw_corrected(by_dx[kind], meta, draw, args.pairs) if args.select is None
                           else draw_selected(by_dx[kind], meta, draw, args.select, base, args.pairs))
            tr, te = loaded(train), loaded(test)
            t0 = time.perf_counter()
            tuned = fine_tune([p[1] for p in tr], [p[2] for p in tr], base=base, device="cpu",
                              names=[p[0] for p in tr], **settings)
            secs = time.perf_counter() - t0
            key = f"{args.label}:{args.select or 'all'}:{args.pairs}:{base_key}:{kind}:{draw}"
            ft = tuned.meta["fine_tune"]
            row = {"kind": kind, "draw": draw, "n_test": len(te), "seconds": round(secs, 1),
                   "stopped_epoch": ft["stopped_epoch"], "refine": bool(tuned.refines),
                   "report_before": ft["before_dice"], "report_after": ft["after_dice"]}
            row["trained_on"] = [p[0] for p in tr]
            b = partial.scores(base_key, kind, te, base)
            a = partial.scores(key, kind, te, tuned)
            row["new_before"], row["new_after"] = mean_as_used(b, base.refines), mean_as_used(a, tuned.refines)
            row["new_after_other_refine"] = mean_as_used(a, not tuned.refines)
            # the base with the refinement switched as the tuned model switched it: what the switch alone gives
            row["new_before_tuned_refine"] = mean_as_used(b, tuned.refines)
            for k, pairs in forget.items():
                row[f"{k}_before"] = mean_as_used(base_forget[k], base.refines)
                row[f"{k}_before_tuned_refine"] = mean_as_used(base_forget[k], tuned.refines)
                row[f"{k}_after"] = mean_as_used(partial.scores(key, k, pairs, tuned), tuned.refines)
            runs.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    summary = summarise(runs, list(forget))
    print(markdown(summary, list(forget), env))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "runs": runs, "summary": summary}, indent=1) + "\n")


def table_of(path: Path) -> str:
    """The markdown table of a finished (or interrupted) run, from its --json file or its log."""
    if path.suffix == ".json":
        res = json.loads(path.read_text())
        runs, env = res["runs"], res["env"]
    else:
        runs = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
        env = {"label": path.stem, "settings": "(see the log's command)", "base_sha": "?"}
    forget = [k[: -len("_before")] for k in runs[0] if k.endswith("_before") and k not in ("new_before", "report_before")]
    return markdown(summarise(runs, forget), forget, env)


def summarise(runs: list[dict], forget: list[str]) -> list[dict]:
    """Per kind: mean and spread (sd over draws) of the gain, forgetting per untouched set, time."""
    out = []
    for kind in dict.fromkeys(r["kind"] for r in runs):
        rs = [r for r in runs if r["kind"] == kind]
        gain = [100 * (r["new_after"] - r["new_before"]) for r in rs]
        row = {"kind": kind, "draws": len(rs), "before": float(np.mean([r["new_before"] for r in rs])),
               "after": float(np.mean([r["new_after"] for r in rs])), "gain_pts": float(np.mean(gain)),
               "gain_sd": float(np.std(gain, ddof=1)) if len(rs) > 1 else 0.0,
               "seconds": float(np.mean([r["seconds"] for r in rs])),
               "refined": sum(r["refine"] for r in rs)}
        if all("new_before_tuned_refine" in r for r in rs):   # the base switched as the tuned model switched
            row["switch_pts"] = float(np.mean([100 * (r["new_before_tuned_refine"] - r["new_before"]) for r in rs]))
        for k in forget:
            d = [100 * (r[f"{k}_after"] - r[f"{k}_before"]) for r in rs]
            row[f"{k}_pts"] = float(np.mean(d))
            row[f"{k}_sd"] = float(np.std(d, ddof=1)) if len(rs) > 1 else 0.0
            if all(f"{k}_before_tuned_refine" in r for r in rs):   # the weights' own share of the change
                row[f"{k}_same_refine_pts"] = float(np.mean([100 * (r[f"{k}_after"] - r[f"{k}_before_tuned_refine"])
                                                             for r in rs]))
        out.append(row)
    return out


def markdown(summary: list[dict], forget: list[str], env: dict) -> str:
    switch = all("switch_pts" in r for r in summary)
    head = (["kind", "Dice before", "after", "gain (pts, mean ± sd)"] + (["of it, refinement switch"] if switch else [])
            + [f"{k} (pts)" for k in forget] + ["time (s)", "refined"])
    lines = [(f"Settings `{env['label']}`: {json.dumps(env['settings'], default=str)}; base {env['base_sha']}. "
             "Untouched sets: change as the user gets it (in brackets: against the base with the tuned model's "
             "refinement setting, the weights' own share)"),
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [r["kind"], f"{r['before']:.3f}", f"{r['after']:.3f}", f"{r['gain_pts']:+.1f} ± {r['gain_sd']:.1f}"]
        cells += [f"{r['switch_pts']:+.1f}"] if switch else []
        cells += [f"{r[f'{k}_pts']:+.1f} ± {r[f'{k}_sd']:.1f}"
                  + (f" ({r[f'{k}_same_refine_pts']:+.1f})" if f"{k}_same_refine_pts" in r else "") for k in forget]
        cells += [f"{r['seconds']:.0f}", f"{r['refined']}/{r['draws']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
