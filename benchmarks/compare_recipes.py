"""Short, equal-budget comparison of training recipes on the ISIC validation split.

Each recipe trains from scratch for the same number of epochs at a small input size, and is scored on
the same 200 held-out ISIC images (validation Dice/Jaccard at the input size). This is how the loss
(BCE vs Dice vs BCE + Dice) and the architecture (U-Net vs SegNet) of the default model were chosen,
and how bfloat16 mixed-precision training on a CPU with native bf16 was checked against fp32;
the figures are in docs/model_card.md.

    python benchmarks/compare_recipes.py --epochs 6 --size 96
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_nevus_seg.model import devices  # noqa: E402
from napari_nevus_seg.model.networks import build_model, default_preprocess  # noqa: E402
from napari_nevus_seg.training.data import load_pairs, split_pairs  # noqa: E402
from napari_nevus_seg.training.loop import TrainConfig, train  # noqa: E402

RECIPES = {  # name: (architecture, loss, CPU precision: "auto" = bf16 where the CPU has it natively)
    "unet bce": ("unet", "bce", "auto"),
    "unet dice": ("unet", "dice", "auto"),
    "unet bce+dice": ("unet", "bce+dice", "auto"),
    "segnet bce+dice": ("segnet", "bce+dice", "auto"),
    "unet bce+dice fp32": ("unet", "bce+dice", "fp32"),
}


def _set_precision(precision: str) -> str:
    """Force fp32 on the CPU (NEVUS_SEG_CPU_BF16=0) or restore auto-detection; returns what is used."""
    if precision == "fp32":
        os.environ["NEVUS_SEG_CPU_BF16"] = "0"
    else:
        os.environ.pop("NEVUS_SEG_CPU_BF16", None)
    devices.cpu_has_native_bf16.cache_clear()
    return "bf16" if devices.cpu_has_native_bf16() else "fp32"


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
        arch, loss, precision = RECIPES[name]
        used = _set_precision(precision)
        model = build_model(arch, default_preprocess(args.size), width=16, depth=4)
        t0 = time.time()
        res = train(model, tr, va, TrainConfig(epochs=args.epochs, loss=loss), device="auto")
        rows.append((name, used, model.n_parameters(), res.best_val["dice"], res.best_val["jaccard"],
                     time.time() - t0))
        print(f"{name:20s} {used} params {rows[-1][2]:>9,d}  val dice {rows[-1][3]:.4f}  "
              f"jaccard {rows[-1][4]:.4f}  {rows[-1][5] / 60:.1f} min", flush=True)
    _set_precision("auto")
    print("\n| recipe | CPU precision | parameters | val Dice | val Jaccard | minutes |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:.4f} | {r[4]:.4f} | {r[5] / 60:.1f} |")


if __name__ == "__main__":
    main()
