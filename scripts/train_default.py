"""The training campaign of the default model (ISIC 2017 train, PH2 never used for training).

Resumable: run it again with the same --run folder and it continues from ``last.pt``.
Each validation prints ISIC validation Dice/Jaccard at the model's input size; every few epochs the
20 PH2 cases are scored at full resolution through the real inference path, beside the classical
Otsu baseline (monitoring; ``best.pt`` is the best epoch on the ISIC validation split, ``last.pt`` the last).

    python scripts/train_default.py --run ~/.cache/napari-nevus-seg/campaign/s128 --size 128 --epochs 50
    python scripts/train_default.py --run .../s160 --size 160 --epochs 12 --init .../s128/best.pt --lr 5e-4

``--synthetic N`` adds N of the package's own synthetic images (seeds from 100000 on: never those of the
tests or the sample data) to the training split only: 1-4 lesions each, every look and colour mix,
so that the network also learns several lesions per image and colours ISIC rarely shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from baseline import otsu_baseline  # noqa: E402

from napari_nevus_seg.inference.metrics import score_pairs  # noqa: E402
from napari_nevus_seg.io.datasets import iter_pairs  # noqa: E402
from napari_nevus_seg.model.networks import build_model, default_preprocess  # noqa: E402
from napari_nevus_seg.training.augment import AugmentConfig  # noqa: E402
from napari_nevus_seg.training.data import PairSet, load_pairs, split_pairs  # noqa: E402
from napari_nevus_seg.training.loop import TrainConfig, init_from, train  # noqa: E402
from napari_nevus_seg.training.replay import SYNTHETIC_SEED0, synthetic_pairs  # noqa: E402



def tightened(pairs: PairSet) -> PairSet:
    """The same pairs with each mask moved onto its image's visible pigment edge (refine_outline)."""
    import numpy as np

    from napari_nevus_seg.inference.refine import refine_outline

    masks = pairs.masks.clone()
    for i in range(len(pairs)):
        img = pairs.images[i].permute(1, 2, 0).numpy()
        m = pairs.masks[i, 0].numpy().astype(np.float32)
        masks[i, 0] = torch.from_numpy((refine_outline(img, m, 0.5, min_size=1) > 0.5).astype(np.uint8))
    return PairSet(pairs.images, masks, pairs.names)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/isic2017-train"))
    ap.add_argument("--ph2", default=str(ROOT.parent / "shared/data/ph2-adapt"))
    ap.add_argument("--run", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--loss", default="bce+dice")
    ap.add_argument("--init", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--ph2-every", type=int, default=5)
    ap.add_argument("--synthetic", type=int, default=0, help="add this many synthetic pairs to the training split")
    ap.add_argument("--tighten", action="store_true",
                    help="train on ISIC masks moved onto the visible pigment edge by refine_outline (experiment)")
    ap.add_argument("--fill-prob", type=float, default=0.0,
                    help="probability of a crop inside the lesion (AugmentConfig.fill_prob)")
    ap.add_argument("--ink-prob", type=float, default=0.0, help="AugmentConfig.ink_prob (skin-marker rings)")
    ap.add_argument("--sticker-prob", type=float, default=0.0, help="AugmentConfig.sticker_prob (coloured discs)")
    ap.add_argument("--skin-prob", type=float, default=0.0,
                    help="AugmentConfig.skin_prob (crops of lesion-free skin, target empty)")
    args = ap.parse_args()

    run = Path(args.run).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "log.jsonl", "a")
    t0 = time.time()
    pairs = load_pairs(args.data, args.size, limit=args.limit)
    tr, va = split_pairs(pairs, 0.1, seed=0)
    print(f"loaded {len(pairs)} pairs in {time.time() - t0:.0f}s: train {len(tr)}, val {len(va)}", flush=True)
    if args.tighten:
        tr = tightened(tr)
        print("training masks tightened onto the pigment edge", flush=True)
    if args.synthetic:
        syn = synthetic_pairs(args.synthetic, args.size)
        tr = PairSet(torch.cat([tr.images, syn.images]), torch.cat([tr.masks, syn.masks]), tr.names + syn.names)
        print(f"added {len(syn)} synthetic pairs: train {len(tr)}", flush=True)
    ph2 = list(iter_pairs(args.ph2)) if Path(args.ph2).is_dir() else []
    if ph2:
        base = score_pairs((otsu_baseline(img), m) for _, img, m in ph2)
        print(f"Otsu baseline PH2: dice {base['dice']:.4f} jaccard {base['jaccard']:.4f}", flush=True)

    if args.init:
        model = init_from(args.init)
        model.preprocess = default_preprocess(args.size)
    else:
        torch.manual_seed(0)   # reproducible starting weights (TrainConfig's seed covers order and augmentation)
        model = build_model("unet", default_preprocess(args.size), width=args.width, depth=args.depth)
    model.meta.update({"name": "default", "training_data": "ISIC 2017 Challenge Part 1 training set "
                       "(1800 train / 200 validation, split seed 0)"
                       + (f" + {args.synthetic} synthetic images (package generator, seeds from "
                          f"{SYNTHETIC_SEED0})" if args.synthetic else ""), "init": args.init})
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, loss=args.loss,
                      warmup_epochs=0.5 if args.init else 1.0,
                      augment=AugmentConfig(fill_prob=args.fill_prob, ink_prob=args.ink_prob,
                                            sticker_prob=args.sticker_prob, skin_prob=args.skin_prob))

    def progress(d):
        if d["stage"] == "val":
            line = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items() if k != "best"}
            if ph2 and (d["epoch"] % args.ph2_every == 0 or d["epoch"] == args.epochs):
                from napari_nevus_seg.inference.pipeline import segment

                s = score_pairs((segment(img, model=model, device="cpu") > 0, m) for _, img, m in ph2)
                model.net.train()
                line["ph2_dice"] = round(s["dice"], 4)
            print(json.dumps(line), flush=True)
            log.write(json.dumps(line) + "\n")
            log.flush()
        elif d["stage"] == "resume":
            print(f"resuming at epoch {d['epoch'] + 1}", flush=True)

    res = train(model, tr, va, cfg, device="auto", progress=progress, checkpoint_dir=run, resume=True)
    print(f"done in {res.seconds / 60:.1f} min; best {res.best_val}", flush=True)


if __name__ == "__main__":
    main()
