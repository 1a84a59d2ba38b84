"""Short, equal-budget comparison of training recipes on the ISIC validation split.

Each recipe trains from scratch for the same number of epochs at a small input size, and is scored on
the same 200 held-out ISIC images (validation Dice/Jaccard at the input size). This is how the loss
(BCE vs Dice vs BCE + Dice) and the architecture (U-Net vs SegNet) of the default model were chosen;
the figures are in docs/model_card.md.

    python benchmarks/compare_recipes.py --epochs 6 --size 96
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_nevus_seg.model import build_model, default_preprocess  # noqa: E402
from napari_nevus_seg.training import TrainConfig, load_pairs, split_pairs, train  # noqa: E402

RECIPES = {
    "unet bce": ("unet", "bce"),
    "unet dice": ("unet", "dice"),
    "unet bce+dice": ("unet", "bce+dice"),
    "segnet bce+dice": ("segnet", "bce+dice"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/isic2017-train"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--recipes", nargs="*", default=list(RECIPES))
    args = ap.parse_args()
    pairs = load_pairs(args.data, args.size)
    tr, va = split_pairs(pairs, 0.1, seed=0)
    rows = []
    for name in args.recipes:
        arch, loss = RECIPES[name]
        model = build_model(arch, default_preprocess(args.size), width=16, depth=4)
        t0 = time.time()
        res = train(model, tr, va, TrainConfig(epochs=args.epochs, loss=loss), device="auto")
        rows.append((name, model.n_parameters(), res.best_val["dice"], res.best_val["jaccard"], time.time() - t0))
        print(f"{name:18s} params {rows[-1][1]:>9,d}  val dice {rows[-1][2]:.4f}  jaccard {rows[-1][3]:.4f}  "
              f"{rows[-1][4] / 60:.1f} min", flush=True)
    print("\n| recipe | parameters | val Dice | val Jaccard | minutes |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:,} | {r[2]:.4f} | {r[3]:.4f} | {r[4] / 60:.1f} |")


if __name__ == "__main__":
    main()
