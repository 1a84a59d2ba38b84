"""The training campaign of default model 2: ISIC 2017 training set + HAM10000 (+ synthetic images).

Validation is split by lesion: the 200 ISIC images held out since model 1.0 (``split_pairs`` seed 0) and
about 10 % of the HAM10000 lesions, stratified by diagnosis (every image of a lesion on one side). PH2 is
never trained on; its 20 ph2-adapt cases are scored at full resolution every few epochs for monitoring.

Resumable: run it again with the same ``--run`` folder and it continues from ``last.pt``. Per-epoch
metrics (overall, ISIC, HAM per diagnosis) go to ``--log`` (a CSV that is committed with the recipe).

    python scripts/train_model2.py --run runs/m2-w16 --log docs/training_logs/m2-w16.csv \
        --init src/napari_nevus_seg/weights/default.pt --epochs 16 --lr 3e-4 --synthetic 200
    python scripts/train_model2.py --run runs/m2-w32 --log docs/training_logs/m2-w32.csv --width 32 ...
    python scripts/train_model2.py --run runs/m2b-isic4 --log docs/training_logs/m2b-isic4.csv \
        --init runs/m2-w16/best.pt --isic-repeat 4 --epochs 3 --lr 1e-4 --synthetic 200

Targets are the ISIC/HAM masks as drawn (loose outlines): model 2 learns the archives' convention, and
the outline refinement (a user's choice) moves outlines onto the visible pigment edge for PH2-style work.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from napari_nevus_seg.inference.metrics import score_pairs  # noqa: E402
from napari_nevus_seg.io.datasets import iter_pairs  # noqa: E402
from napari_nevus_seg.model.networks import build_model, default_preprocess  # noqa: E402
from napari_nevus_seg.training.augment import AugmentConfig  # noqa: E402
from napari_nevus_seg.training.data import PairSet, load_pairs, split_pairs  # noqa: E402
from napari_nevus_seg.training.loop import TrainConfig, evaluate, init_from, train  # noqa: E402
from napari_nevus_seg.training.replay import synthetic_pairs  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DIAGNOSES = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")


def ham_metadata(root: Path) -> dict[str, tuple[str, str]]:
    """image_id -> (lesion_id, dx) from HAM10000's metadata.csv."""
    with open(root / "metadata.csv", newline="") as f:
        return {r["image_id"]: (r["lesion_id"], r["dx"]) for r in csv.DictReader(f)}


def split_by_lesion(meta: dict[str, tuple[str, str]], fraction: float, seed: int) -> set[str]:
    """The lesion ids held out: ``fraction`` of each diagnosis's lesions (at least one), drawn with ``seed``."""
    lesions_by_dx: dict[str, set[str]] = defaultdict(set)
    for lesion, dx in meta.values():
        lesions_by_dx[dx].add(lesion)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for dx in sorted(lesions_by_dx):
        ids = sorted(lesions_by_dx[dx])
        k = max(1, int(round(len(ids) * fraction)))
        held.update(rng.choice(ids, size=k, replace=False).tolist())
    return held


def concat(*sets: PairSet) -> PairSet:
    return PairSet(torch.cat([s.images for s in sets]), torch.cat([s.masks for s in sets]),
                   [n for s in sets for n in s.names])


class CampaignSets(NamedTuple):
    train: PairSet
    val: PairSet
    isic_tr: PairSet
    isic_va: PairSet
    ham_tr: PairSet
    ham_va: PairSet
    meta: dict
    held: set


def log_row(path: Path, fields: list[str], row: dict) -> None:
    """Print one epoch's ``row`` (floats rounded to 4 places) and append it to the CSV ``path``."""
    row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    print(json.dumps(row), flush=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)


def tightened_cached(pairs: PairSet, cache: Path | None) -> PairSet:
    """``pairs`` with each mask moved onto its image's pigment edge (``tightened``), read from ``cache``
    when it holds the same images (the tightening of ~10,000 pairs takes minutes), else computed and saved."""
    from train_default import tightened

    if cache is not None and cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved["names"] == list(pairs.names) and saved["masks"].shape == pairs.masks.shape:
            return PairSet(pairs.images, saved["masks"], pairs.names)
    out = tightened(pairs)
    if cache is not None:
        torch.save({"names": list(out.names), "masks": out.masks}, cache)
    return out


def campaign_sets(isic_path, ham_path, size: int, ham_val: float = 0.1, synthetic: int = 200, isic_repeat: int = 1,
                  limit: int | None = None, tighten_cache: Path | None = None, tighten: bool = False) -> CampaignSets:
    """The campaign's training and validation pairs at input ``size``: ISIC 2017 split with ``split_pairs``
    seed 0 (its 200 validation images), HAM10000 split by lesion (``ham_val`` of each diagnosis's lesions,
    seed 0), ISIC training pairs ``isic_repeat`` times, plus ``synthetic`` replay images. With ``tighten``
    the training masks (not the validation masks) are moved onto the pigment edge, as for models 1.2-1.5."""
    isic = load_pairs(isic_path, size, limit=limit)
    isic_tr, isic_va = split_pairs(isic, 0.1, seed=0)
    ham = load_pairs(ham_path, size, limit=limit)
    meta = ham_metadata(Path(ham_path))
    held = split_by_lesion(meta, ham_val, seed=0)
    va_idx = [i for i, n in enumerate(ham.names) if meta[n][0] in held]
    ham_tr, ham_va = ham.subset([i for i in range(len(ham)) if meta[ham.names[i]][0] not in held]), ham.subset(va_idx)
    if tighten:
        both = tightened_cached(concat(isic_tr, ham_tr), tighten_cache)
        isic_tr = both.subset(range(len(isic_tr)))
        ham_tr = both.subset(range(len(isic_tr), len(both)))
    parts = [isic_tr] * max(1, isic_repeat) + [ham_tr]
    if synthetic:
        parts.append(synthetic_pairs(synthetic, size))
    return CampaignSets(concat(*parts), concat(isic_va, ham_va), isic_tr, isic_va, ham_tr, ham_va, meta, held)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isic", default=str(DATA / "isic2017-train"))
    ap.add_argument("--ham", default=str(DATA / "ham10000"))
    ap.add_argument("--ph2", default=str(DATA / "ph2-adapt"))
    ap.add_argument("--run", required=True, help="checkpoint folder (resumes from its last.pt)")
    ap.add_argument("--log", required=True, help="per-epoch CSV (appended)")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--init", default=None, help="start from this model file (else from scratch)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--synthetic", type=int, default=200)
    ap.add_argument("--isic-repeat", type=int, default=1, help="each ISIC training pair this many times per epoch "
                    "(HAM's 7,900 small images otherwise outnumber ISIC's 1,800 four to one)")
    ap.add_argument("--tighten", action="store_true", help="train on masks moved onto the pigment edge by "
                    "refine_outline (validation masks stay as drawn); cached in the run folder")
    ap.add_argument("--ham-val", type=float, default=0.1, help="share of HAM lesions held out per diagnosis")
    ap.add_argument("--fill-prob", type=float, default=0.4)
    ap.add_argument("--ink-prob", type=float, default=0.15)
    ap.add_argument("--sticker-prob", type=float, default=0.05)
    ap.add_argument("--skin-prob", type=float, default=0.1)
    ap.add_argument("--ph2-every", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="at most this many pairs per archive (smoke runs)")
    args = ap.parse_args()

    run = Path(args.run).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = campaign_sets(args.isic, args.ham, args.size, args.ham_val, args.synthetic, args.isic_repeat, args.limit,
                         run / "tightened_masks.pt", args.tighten)
    isic_tr, isic_va, ham_tr, ham_va, meta, held = (data.isic_tr, data.isic_va, data.ham_tr, data.ham_va,
                                                    data.meta, data.held)
    tr, va = data.train, data.val
    (run / "ham_val_lesions.txt").write_text("\n".join(sorted(held)) + "\n")
    print(f"loaded in {time.time() - t0:.0f}s: train {len(tr)} (ISIC {len(isic_tr)} x {args.isic_repeat}, HAM {len(ham_tr)}, "
          f"synthetic {args.synthetic}), val {len(va)} (ISIC {len(isic_va)}, HAM {len(ham_va)} images of "
          f"{len(held)} lesions)", flush=True)
    ham_va_by_dx = {dx: ham_va.subset([i for i, n in enumerate(ham_va.names) if meta[n][1] == dx])
                    for dx in DIAGNOSES}
    ph2 = list(iter_pairs(args.ph2)) if Path(args.ph2).is_dir() else []

    if args.init:
        model = init_from(args.init)
        model.preprocess = default_preprocess(args.size)
    else:
        torch.manual_seed(0)
        model = build_model("unet", default_preprocess(args.size), width=args.width, depth=args.depth)
    model.meta.update({"name": "default", "init": args.init, "training_data": (
        f"ISIC 2017 Challenge Part 1 training set ({len(isic_tr)} train / {len(isic_va)} validation, split seed 0) "
        f"+ HAM10000 with the Tschandl et al. 2020 masks ({len(ham_tr)} train / {len(ham_va)} validation images, "
        f"{args.ham_val:.0%} of lesions per diagnosis held out, seed 0)"
        + (f" + {args.synthetic} synthetic images" if args.synthetic else "")
        + (f"; ISIC pairs repeated {args.isic_repeat}x per epoch" if args.isic_repeat > 1 else "")
        + ("; training masks moved onto the pigment edge by refine_outline" if args.tighten else ""))})
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, loss="bce+dice",
                      warmup_epochs=0.5 if args.init else 1.0,
                      augment=AugmentConfig(fill_prob=args.fill_prob, ink_prob=args.ink_prob,
                                            sticker_prob=args.sticker_prob, skin_prob=args.skin_prob))
    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fields = (["epoch", "seconds", "loss", "val_dice", "val_jaccard", "isic_dice", "isic_jaccard", "ham_dice"]
              + [f"ham_{dx}_dice" for dx in DIAGNOSES] + ["ph2_dice"])

    def progress(d):
        if d["stage"] == "resume":
            print(f"resuming at epoch {d['epoch'] + 1}", flush=True)
        if d["stage"] != "val":
            return
        row = {k: d.get(k) for k in ("epoch", "seconds", "loss", "val_dice", "val_jaccard")}
        s = evaluate(model, isic_va)
        row.update(isic_dice=s["dice"], isic_jaccard=s["jaccard"], ham_dice=evaluate(model, ham_va)["dice"])
        for dx, sub in ham_va_by_dx.items():
            row[f"ham_{dx}_dice"] = evaluate(model, sub)["dice"] if len(sub) else None
        if ph2 and (d["epoch"] % args.ph2_every == 0 or d["epoch"] == args.epochs):
            from napari_nevus_seg.inference.pipeline import segment

            row["ph2_dice"] = score_pairs((segment(img, model=model, device="cpu") > 0, m)
                                          for _, img, m in ph2)["dice"]
        model.net.train()
        log_row(log_path, fields, row)

    if not (run / "last.pt").exists() and not log_path.exists():  # the starting point, as epoch 0
        progress({"stage": "val", "epoch": 0, "seconds": 0.0, "loss": None, **{f"val_{k}": v for k, v in evaluate(model, va).items()}})
    res = train(model, tr, va, cfg, device="auto", progress=progress, checkpoint_dir=run, resume=True)
    print(f"done in {res.seconds / 60:.1f} min; best {res.best_val}", flush=True)


if __name__ == "__main__":
    main()
