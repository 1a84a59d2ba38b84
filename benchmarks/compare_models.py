"""Score model files side by side, each with the outline refinement on and off, on the same images.

Made for the "default model 2" decision: the shipped model beside the model-2 campaign's checkpoints.
Every image is scored at its full resolution as stored, against its expert mask, with the public API:
per image and model the network runs once (``network_map``) and both refinement settings are derived
from that map (``labels_from_map(..., refine=True/False)``, equal to ``segment(..., refine=...)``);
Dice and Jaccard are ``napari_nevus_seg.dice`` / ``jaccard`` (the ISIC challenge's per-image scores).

Sets (``--sets``):

- ``ph2``: the 80 annotated PH2 cases (ph2-adapt's 20 + ph2-calib's 60): mean Dice and Jaccard, also
  per folder (ph2-adapt guided development decisions and is monitored during training, ph2-calib never).
- ``isic``: the 200 ISIC 2017 images held out by every campaign since model 1.0
  (``training.data.split_pairs(pairs, 0.1, seed=0)`` over the pairs in ``discover_cases`` order, as
  ``load_pairs`` lists them): mean Dice, mean Jaccard and the share of images with Jaccard < 0.65.
- ``ham``: the HAM10000 images of the lesions the model-2 campaign held out
  (``split_by_lesion(ham_metadata(...), 0.1, seed=0)`` imported from ``scripts/train_model2.py``: 10 %
  of each diagnosis's lesions, every image of a held-out lesion): mean Dice overall, per diagnosis, and
  over the bcc + akiec images pooled.
- ``small``: the held-out ISIC and HAM images whose expert mask covers less than 5 % of the frame
  (``SMALL_FRACTION``): mean Dice (their count is printed).
- ``lesionfree``: views of skin without lesion, made from the held-out ISIC and HAM images: the expert
  mask is grown by ``MARGIN_PX`` = 4 px (a square 9x9 maximum filter: every pixel of the view is more
  than 4 px, in the chessboard metric, from every mask pixel); the view has the image's own aspect ratio
  (height h, width round(h * W / H)) and the largest height h >= ceil(H / 4) at which such a window fits
  in the grown mask's empty part (binary search on h over a summed-area table); among all positions
  where a window of that size fits, one is drawn with ``numpy.random.default_rng([VIEW_SEED,
  crc32(image name)])`` (so a view does not depend on the order or ``--limit``). Images where no window of
  a quarter of the side fits give no view. The crop is taken as stored (no resizing) and segmented like
  any image. Reported: the share of views in which the model detects any lesion (``labels.max() > 0``),
  and, in the JSON, the detected share of each view's area.
- ``speed``: seconds per image of ``segment`` end to end (refinement on and off) for a 768x576
  ``synthetic_lesion_image`` (seed 0) and the same image upscaled (bicubic) to 4000x3000; the median of
  ``--repeats`` runs after one warm-up, with ``os.getloadavg()`` before and after. Timings taken while
  other work (a training run) shares the CPU are not reliable: the load is recorded for that reason.

``--limit N`` keeps the first N cases of each set (ph2, isic, ham; small and lesion-free views then come
from those) for a quick smoke run. The splits are always computed on the full folders.

Output: a JSON file (default ``benchmarks/results/compare_models_<date>.json``) with the model files'
sha256, the split definitions and held-out names, every per-image score (so later analysis can pair
them), the summary rows and the timings; and a Markdown table printed (rows: data set / diagnosis /
subset; columns: model x refinement), followed by the paired differences against the first model (mean
over the same images, 95 % bootstrap interval, ``BOOT_SEED``). ``--partial FILE`` (keep it outside the
repository) appends per-image results as they come and reuses them when the run is started again.

    python benchmarks/compare_models.py --models src/napari_nevus_seg/weights/default.pt runs/m2/best.pt \\
        --names 1.5 m2 --limit 5
    python benchmarks/compare_models.py --models a.pt b.pt --partial /tmp/cmp.jsonl --sets ph2 isic
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from train_model2 import DIAGNOSES, ham_metadata, split_by_lesion  # noqa: E402

from napari_nevus_seg import (  # noqa: E402
    dice,
    jaccard,
    labels_from_map,
    load_model,
    network_map,
    read_image,
    read_mask,
    segment,
    synthetic_lesion_image,
)
from napari_nevus_seg.io.datasets import discover_cases  # noqa: E402
from napari_nevus_seg.training.data import PairSet, split_pairs  # noqa: E402

SETS = ("ph2", "isic", "ham", "small", "lesionfree", "speed")
SMALL_FRACTION = 0.05
JACCARD_CUTOFF = 0.65
MARGIN_PX = 4
MIN_VIEW_SIDE = 0.25
VIEW_SEED = 0
BOOT_SEED = 0
BOOT_N = 2000
SPEED_SHAPES = ((576, 768), (3000, 4000))
# (column suffix, refine, zoomed second look); --zoom adds the zoomed variants
REFINE = [("refine", True, False), ("no refine", False, False)]
ZOOMED = [("refine, zoomed", True, True), ("no refine, zoomed", False, True)]


def data_root(arg: str | None) -> Path:
    return Path(arg or os.environ.get("NEVUS_SEG_DATA") or ROOT.parent / "shared" / "data")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- splits
def isic_held_out(root: Path) -> list:
    """The 200 ISIC validation cases of every campaign: ``split_pairs`` on the pairs as ``load_pairs`` lists them.

    ``split_pairs`` only draws indices (``randperm`` with the seed) and uses the pairs' names, so it is
    given a names-only ``PairSet`` instead of reading 2000 images.
    """
    cases = [c for c in discover_cases(root) if c.mask is not None]
    stub = torch.zeros(len(cases), 1)
    _, val = split_pairs(PairSet(stub, stub, [c.name for c in cases]), 0.1, seed=0)
    names = set(val.names)
    return [c for c in cases if c.name in names]


def ham_held_out(root: Path) -> tuple[list, dict, set]:
    """HAM cases whose lesion the model-2 campaign held out, the metadata, and the held-out lesion ids."""
    meta = ham_metadata(root)
    held = split_by_lesion(meta, 0.1, seed=0)
    cases = [c for c in discover_cases(root) if c.mask is not None and meta[c.name][0] in held]
    return cases, meta, held


# ----------------------------------------------------------------------------------- lesion-free views
def lesion_free_view(name: str, truth: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, h, w) of the largest image-shaped window, at least a quarter of the side, clear of the mask."""
    H, W = truth.shape
    grown = ndi.maximum_filter(truth.astype(np.uint8), size=2 * MARGIN_PX + 1) > 0
    sat = np.pad(grown.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def fits(h: int) -> np.ndarray:
        w = max(1, min(W, round(h * W / H)))
        s = sat[h:, w:] - sat[:-h, w:] - sat[h:, :-w] + sat[:-h, :-w]  # window sums, indexed by top-left
        return s == 0

    lo = int(np.ceil(MIN_VIEW_SIDE * H))
    if not fits(lo).any():
        return None
    hi = H
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid).any() else (lo, mid - 1)
    ys, xs = np.nonzero(fits(lo))
    rng = np.random.default_rng([VIEW_SEED, zlib.crc32(name.encode())])
    k = int(rng.integers(len(ys)))
    return int(ys[k]), int(xs[k]), lo, max(1, min(W, round(lo * W / H)))


# --------------------------------------------------------------------------------------------- scoring
def columns(names: list[str]) -> list[str]:
    return [f"{n}, {r}" for n in names for r, *_ in REFINE]


def run_models(img: np.ndarray, models: list, names: list[str], device: str) -> dict[str, np.ndarray]:
    """Labels per column: the network once per model, both refinement settings from its map."""
    out = {}
    for name, model in zip(names, models):
        plane, small = network_map(img, model=model, device=device)
        for r, flag, zoom in REFINE:
            out[f"{name}, {r}"] = labels_from_map(plane, small, model=model, refine=flag, zoom_small=zoom,
                                                  device=device)
    return out


def read_pair(case) -> tuple[np.ndarray, np.ndarray]:
    img, truth = read_image(case.image), read_mask(case.mask)
    if truth.shape != img.shape[:2]:
        raise ValueError(f"{case.mask}: mask {truth.shape} does not fit image {img.shape[:2]}")
    return img, truth


class Partial:
    """Per-image results appended to a JSON-lines file and read back on a restart (key: set, name, model sha)."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.done: dict[tuple, dict] = {}
        if self.path and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut off by an interruption
                self.done[(r["set"], r["name"], r["sha"])] = r["result"]

    def get(self, kind: str, name: str, sha: str):
        return self.done.get((kind, name, sha))

    def put(self, kind: str, name: str, sha: str, result: dict) -> None:
        self.done[(kind, name, sha)] = result
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"set": kind, "name": name, "sha": sha, "result": result}) + "\n")


def score_case(kind: str, case, info: dict, models, names, shas, device, partial: Partial,
               want_scores: bool, want_view: bool) -> tuple[dict | None, dict | None]:
    """(per-image record, lesion-free view record) of one case; the image is read only when needed."""
    todo_s = [i for i, s in enumerate(shas) if want_scores and partial.get(kind, case.name, s) is None]
    todo_v = [i for i, s in enumerate(shas) if want_view and partial.get(f"{kind}-view", case.name, s) is None]
    if todo_s or todo_v:
        img, truth = read_pair(case)
        if todo_s:
            labs = run_models(img, [models[i] for i in todo_s], [names[i] for i in todo_s], device)
            for i in todo_s:
                partial.put(kind, case.name, shas[i], {
                    r: {"dice": dice(labs[f"{names[i]}, {r}"] > 0, truth),
                        "jaccard": jaccard(labs[f"{names[i]}, {r}"] > 0, truth),
                        "lesions": int(labs[f"{names[i]}, {r}"].max())} for r, *_ in REFINE}
                    | {"_image": {"height": int(truth.shape[0]), "width": int(truth.shape[1]),
                                  "lesion_fraction": float(truth.mean())}})
        if todo_v:
            box = lesion_free_view(case.name, truth)
            labs = {}
            if box is not None:
                y0, x0, h, w = box
                crop = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
                labs = run_models(crop, [models[i] for i in todo_v], [names[i] for i in todo_v], device)
            for i in todo_v:
                res = {"_box": list(box) if box else None}
                if box is not None:
                    for r, *_ in REFINE:
                        lab = labs[f"{names[i]}, {r}"]
                        res[r] = {"detected": bool(lab.max() > 0), "detected_fraction": float((lab > 0).mean())}
                partial.put(f"{kind}-view", case.name, shas[i], res)
    rec = view = None
    if want_scores:
        rec = {"name": case.name, **info}
        for n, s in zip(names, shas):
            r = partial.get(kind, case.name, s)
            rec.update(r["_image"])
            for rr, *_ in REFINE:
                rec.setdefault("dice", {})[f"{n}, {rr}"] = r[rr]["dice"]
                rec.setdefault("jaccard", {})[f"{n}, {rr}"] = r[rr]["jaccard"]
                rec.setdefault("lesions", {})[f"{n}, {rr}"] = r[rr]["lesions"]
    if want_view:
        first = partial.get(f"{kind}-view", case.name, shas[0])
        if first["_box"] is not None:
            view = {"name": case.name, "source": kind, "box_y0_x0_h_w": first["_box"]}
            for n, s in zip(names, shas):
                r = partial.get(f"{kind}-view", case.name, s)
                for rr, *_ in REFINE:
                    view.setdefault("detected", {})[f"{n}, {rr}"] = r[rr]["detected"]
                    view.setdefault("detected_fraction", {})[f"{n}, {rr}"] = r[rr]["detected_fraction"]
    return rec, view


def evaluate(kind: str, cases: list, infos: list[dict], models, names, shas, device, partial: Partial,
             want_scores, want_view) -> tuple[list[dict], list[dict]]:
    recs, views = [], []
    t0 = time.time()
    for k, (case, info) in enumerate(zip(cases, infos)):
        rec, view = score_case(kind, case, info, models, names, shas, device, partial, want_scores, want_view)
        if rec is not None:
            recs.append(rec)
        if view is not None:
            views.append(view)
        if (k + 1) % 25 == 0 or k + 1 == len(cases):
            el = time.time() - t0
            print(f"  {kind}: {k + 1}/{len(cases)} images, {el:.0f} s, about {el / (k + 1) * (len(cases) - k - 1):.0f} s "
                  f"left (load {os.getloadavg()[0]:.1f})", flush=True)
    return recs, views


# ----------------------------------------------------------------------------------------------- speed
def speed(models, names, device: str, repeats: int) -> list[dict]:
    from PIL import Image

    base = synthetic_lesion_image(seed=0, shape=SPEED_SHAPES[0]).image
    rows = []
    for h, w in SPEED_SHAPES:
        img = base if (h, w) == base.shape[:2] else np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC))
        for name, model in zip(names, models):
            for r, flag, zoom in REFINE:
                segment(img, model=model, device=device, refine=flag, zoom_small=zoom)  # warm-up
                load0 = os.getloadavg()
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    segment(img, model=model, device=device, refine=flag, zoom_small=zoom)
                    times.append(time.perf_counter() - t)
                rows.append({"size": f"{w}x{h}", "column": f"{name}, {r}", "median_s": float(np.median(times)),
                             "min_s": float(np.min(times)), "times_s": times, "loadavg_before": load0,
                             "loadavg_after": os.getloadavg()})
                print(f"  speed {w}x{h} {name} | {r}: median {rows[-1]['median_s']:.3f} s (min {rows[-1]['min_s']:.3f}; "
                      f"load {load0[0]:.1f} -> {rows[-1]['loadavg_after'][0]:.1f})", flush=True)
    return rows


# --------------------------------------------------------------------------------------------- summary
def summary_rows(per: dict, cols: list[str]) -> list[dict]:
    """Table rows: label, n, metric, value per column, and the per-image values behind each (for pairing)."""
    rows = []

    def add(label: str, recs: list[dict], metric: str, key: str, fn=np.mean):
        if not recs:
            return
        vals = {c: [r[key][c] for r in recs] for c in cols}
        if metric.startswith("share J <"):
            vals = {c: [float(v < JACCARD_CUTOFF) for v in vs] for c, vs in vals.items()}
        rows.append({"row": label, "n": len(recs), "metric": metric,
                     "values": {c: float(fn(v)) for c, v in vals.items()}, "_per_image": vals})

    ph2 = per.get("ph2", [])
    add("PH2, all", ph2, "Dice", "dice")
    add("PH2, all", ph2, "Jaccard", "jaccard")
    for src in ("ph2-adapt", "ph2-calib"):
        add(f"PH2, {src}", [r for r in ph2 if r["source"] == src], "Dice", "dice")
    isic = per.get("isic", [])
    add("ISIC held-out", isic, "Dice", "dice")
    add("ISIC held-out", isic, "Jaccard", "jaccard")
    add("ISIC held-out", isic, f"share J < {JACCARD_CUTOFF}", "jaccard")
    ham = per.get("ham", [])
    add("HAM held-out, all", ham, "Dice", "dice")
    for dx in DIAGNOSES:
        add(f"HAM, {dx}", [r for r in ham if r["dx"] == dx], "Dice", "dice")
    add("HAM, bcc + akiec", [r for r in ham if r["dx"] in ("bcc", "akiec")], "Dice", "dice")
    small = per.get("small", [])
    if small:
        n_i = sum(r["source"] == "isic" for r in small)
        add(f"Small lesions (< {SMALL_FRACTION:.0%} of frame; ISIC {n_i}, HAM {len(small) - n_i})", small, "Dice", "dice")
    views = per.get("lesionfree", [])
    if views:
        vals = {c: [float(v["detected"][c]) for v in views] for c in cols}
        n_i = sum(v["source"] == "isic" for v in views)
        rows.append({"row": f"Lesion-free views (ISIC {n_i}, HAM {len(views) - n_i})", "n": len(views),
                     "metric": "share with a detection", "values": {c: float(np.mean(v)) for c, v in vals.items()},
                     "_per_image": vals})
    return rows


def paired(rows: list[dict], cols: list[str], names: list[str]) -> list[dict]:
    """Each later model minus the first, per refinement setting: mean difference and 95 % bootstrap interval."""
    out = []
    rng = np.random.default_rng(BOOT_SEED)
    for row in rows:
        n = row["n"]
        idx = rng.integers(0, n, size=(BOOT_N, n))
        for other in names[1:]:
            for r, *_ in REFINE:
                d = np.asarray(row["_per_image"][f"{other}, {r}"]) - np.asarray(row["_per_image"][f"{names[0]}, {r}"])
                boot = d[idx].mean(1)
                out.append({"row": row["row"], "metric": row["metric"], "n": n, "comparison": f"{other} - {names[0]}",
                            "refine": r, "mean": float(d.mean()), "ci95": [float(np.percentile(boot, 2.5)),
                                                                          float(np.percentile(boot, 97.5))]})
        for name in names:  # the zoomed second look against the same model and refinement without it
            for r, _, zoom in REFINE:
                if not zoom:
                    continue
                base = r.replace(", zoomed", "")
                d = np.asarray(row["_per_image"][f"{name}, {r}"]) - np.asarray(row["_per_image"][f"{name}, {base}"])
                boot = d[idx].mean(1)
                out.append({"row": row["row"], "metric": row["metric"], "n": n,
                            "comparison": f"{name}: zoomed - first look", "refine": base, "mean": float(d.mean()),
                            "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]})
    return out


def markdown(rows: list[dict], diffs: list[dict], speed_rows: list[dict], cols: list[str], env: dict) -> str:
    out = ["| data set / subset | n | metric | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        out.append(f"| {r['row']} | {r['n']} | {r['metric']} | " + " | ".join(f"{r['values'][c]:.4f}" for c in cols) + " |")
    for size in dict.fromkeys(s["size"] for s in speed_rows):
        by = {s["column"]: s for s in speed_rows if s["size"] == size}
        loads = [s["loadavg_before"][0] for s in by.values()]
        out.append(f"| Speed {size} (load {min(loads):.1f}-{max(loads):.1f}; unreliable while training runs) | | "
                   "s per image, median | " + " | ".join(f"{by[c]['median_s']:.3f}" if c in by else "" for c in cols) + " |")
    if diffs:
        combos = list(dict.fromkeys((d["comparison"], d["refine"]) for d in diffs))
        out += ["", "Paired differences over the same images (mean, 95 % bootstrap interval):", "",
                "| data set / subset | n | metric | " + " | ".join(f"{c}, {r}" for c, r in combos) + " |",
                "|---|---|---|" + "---|" * len(combos)]
        for row in dict.fromkeys((d["row"], d["metric"], d["n"]) for d in diffs):
            cells = []
            for c, r in combos:
                d = next(x for x in diffs if (x["row"], x["metric"], x["n"]) == row and x["comparison"] == c
                         and x["refine"] == r)
                cells.append(f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]")
            out.append(f"| {row[0]} | {row[2]} | {row[1]} | " + " | ".join(cells) + " |")
    out += ["", (f"Load average at start {env['loadavg_start'][0]:.1f}, at end {env['loadavg_end'][0]:.1f} "
                 f"({env['cpu_count']} cores); run time {env['seconds'] / 60:.1f} min.")]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ main
def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[str(ROOT / "src/napari_nevus_seg/weights/default.pt")])
    ap.add_argument("--names", nargs="+", default=None, help="one per model (default: the files' stems)")
    ap.add_argument("--data", default=None, help="folder with ph2-adapt/, ph2-calib/, isic2017-train/, ham10000/ "
                    "(default: NEVUS_SEG_DATA, else ../shared/data relative to the repository)")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--limit", type=int, default=None, help="first N cases per set (smoke runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per speed measurement")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/compare_models_<date>.json)")
    ap.add_argument("--zoom", action="store_true", help="also score each model with the zoomed second look at "
                    "small lesions (columns '..., zoomed'; without it every column is without that look)")
    ap.add_argument("--partial", default=None, help="JSON-lines file of per-image results to resume from "
                    "(keep it outside the repository)")
    args = ap.parse_args()
    if args.zoom:
        REFINE.extend(ZOOMED)

    t_start = time.time()
    paths = [Path(p).expanduser() for p in args.models]
    names = args.names or [p.stem for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        ap.error("--names needs one distinct name per model")
    models = [load_model(p) for p in paths]
    shas = [sha256(p) for p in paths]
    cols = columns(names)
    root = data_root(args.data)
    sets = set(args.sets)
    env = {"loadavg_start": os.getloadavg(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "device": args.device, "torch_threads": torch.get_num_threads(), "git_commit": git_commit()}
    print(f"data {root}; load average {env['loadavg_start'][0]:.1f} on {env['cpu_count']} cores", flush=True)
    partial = Partial(args.partial)
    per: dict[str, list] = {}
    splits: dict = {}

    if "ph2" in sets:
        cases, infos = [], []
        for src in ("ph2-adapt", "ph2-calib"):
            if (root / src).is_dir():
                cs = [c for c in discover_cases(root / src) if c.mask is not None]
                cases += cs
                infos += [{"source": src}] * len(cs)
        cases, infos = cases[:args.limit], infos[:args.limit]
        print(f"PH2: {len(cases)} cases", flush=True)
        per["ph2"], _ = evaluate("ph2", cases, infos, models, names, shas, args.device, partial, True, False)
        splits["ph2"] = {"definition": "every case with a mask in ph2-adapt/ and ph2-calib/ (discover_cases)",
                         "n": len(cases)}

    need_held = sets & {"isic", "ham", "small", "lesionfree"}
    views: list[dict] = []
    small: list[dict] = []
    if need_held and (root / "isic2017-train").is_dir():
        cases = isic_held_out(root / "isic2017-train")
        splits["isic"] = {"definition": "training.data.split_pairs(pairs, 0.1, seed=0) over the ISIC 2017 pairs in "
                          "discover_cases order (the campaigns' validation split)", "n_held_out": len(cases),
                          "names": [c.name for c in cases]}
        cases = cases[:args.limit]
        print(f"ISIC held-out: {len(cases)} images", flush=True)
        want = "isic" in sets or "small" in sets
        recs, v = evaluate("isic", cases, [{"source": "isic"}] * len(cases), models, names, shas, args.device,
                           partial, want, "lesionfree" in sets)
        if "isic" in sets:
            per["isic"] = recs
        small += [r for r in recs if r["lesion_fraction"] < SMALL_FRACTION]
        views += v
    if need_held and (root / "ham10000").is_dir():
        cases, meta, held = ham_held_out(root / "ham10000")
        splits["ham"] = {"definition": "split_by_lesion(ham_metadata(root), 0.1, seed=0) from scripts/train_model2.py "
                         "(10 % of each diagnosis's lesions, at least one; every image of a held-out lesion)",
                         "n_lesions_held_out": len(held), "n_images_held_out": len(cases),
                         "lesion_ids": sorted(held)}
        cases = cases[:args.limit]
        print(f"HAM held-out: {len(cases)} images of {len(held)} lesions", flush=True)
        infos = [{"source": "ham", "dx": meta[c.name][1], "lesion_id": meta[c.name][0]} for c in cases]
        want = "ham" in sets or "small" in sets
        recs, v = evaluate("ham", cases, infos, models, names, shas, args.device, partial, want, "lesionfree" in sets)
        if "ham" in sets:
            per["ham"] = recs
        small += [r for r in recs if r["lesion_fraction"] < SMALL_FRACTION]
        views += v
    if "small" in sets:
        per["small"] = small
        splits["small"] = {"definition": f"held-out ISIC and HAM images whose expert mask covers < {SMALL_FRACTION} "
                           "of the frame", "n": len(small)}
    if "lesionfree" in sets:
        per["lesionfree"] = views
        splits["lesionfree"] = {"definition": (
            f"per held-out ISIC/HAM image: the expert mask grown by {MARGIN_PX} px (maximum filter "
            f"{2 * MARGIN_PX + 1}x{2 * MARGIN_PX + 1}); the largest window with the image's aspect ratio and a height of "
            f"at least ceil({MIN_VIEW_SIDE} * H) inside the grown mask's empty part; position drawn among all that fit with "
            f"numpy default_rng([{VIEW_SEED}, crc32(name)]); images without such a window skipped"), "n": len(views)}

    speed_rows = speed(models, names, args.device, args.repeats) if "speed" in sets else []
    rows = summary_rows(per, cols)
    diffs = paired(rows, cols, names) if len(names) > 1 or args.zoom else []
    env["loadavg_end"] = os.getloadavg()
    env["seconds"] = time.time() - t_start
    text = markdown(rows, diffs, speed_rows, cols, env)
    print("\n" + text, flush=True)

    result = {
        "benchmark": "benchmarks/compare_models.py", "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": sys.argv, "limit": args.limit, "sets": sorted(sets), "data": str(root),
        "models": [{"name": n, "path": str(p), "sha256": s, "arch": m.arch, "config": m.config,
                    "input_size": m.input_size, "model_version": m.meta.get("model_version"),
                    "best_val": m.meta.get("best_val"), "training_data": m.meta.get("training_data")}
                   for n, p, s, m in zip(names, paths, shas, models)],
        "columns": cols, "environment": env, "splits": splits,
        "constants": {"small_fraction": SMALL_FRACTION, "jaccard_cutoff": JACCARD_CUTOFF, "margin_px": MARGIN_PX,
                      "min_view_side": MIN_VIEW_SIDE, "view_seed": VIEW_SEED, "boot_seed": BOOT_SEED, "boot_n": BOOT_N},
        "summary": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "paired_differences": diffs, "speed": speed_rows, "per_image": per, "markdown": text,
    }
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"compare_models_{_dt.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
