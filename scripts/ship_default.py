"""Copy a trained checkpoint into the package as the default model.

Convolution weights are stored in float16 (half the file size; they are cast back to float32 on
loading), normalisation statistics stay float32. The script checks that the shipped model's
probabilities match the original's on a synthetic image before writing.

    python scripts/ship_default.py ~/.cache/napari-nevus-seg/campaign/s128/best.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_nevus_seg.inference.pipeline import predict_proba  # noqa: E402
from napari_nevus_seg.io.atomic import atomic_path  # noqa: E402
from napari_nevus_seg.model.networks import model_from_checkpoint, read_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--out", default=str(ROOT / "src/napari_nevus_seg/weights/default.pt"))
    ap.add_argument("--note", default="", help="replaces the checkpoint's note (an empty note removes it)")
    ap.add_argument("--lineage", default="", help="how the weights were obtained (stages), replaces 'init'")
    ap.add_argument("--version", default="", help="model version recorded in the metadata")
    ap.add_argument("--training-data", default="", help="replaces the training-data description")
    ap.add_argument("--last-epoch", action="store_true",
                    help="the checkpoint is a stage's last epoch (not its best): record that epoch's validation score")
    args = ap.parse_args()
    ckpt = read_checkpoint(args.checkpoint)
    ckpt.pop("train_state", None)
    ckpt["state_dict"] = {k: (v.half() if v.is_floating_point() and v.ndim >= 2 else v)
                          for k, v in ckpt["state_dict"].items()}
    meta = ckpt["meta"]
    meta["name"] = "default"
    meta.pop("note", None)
    if args.note:
        meta["note"] = args.note
    if args.version:
        meta["model_version"] = args.version
    if args.training_data:
        meta["training_data"] = args.training_data
    if args.last_epoch and meta.get("history"):
        last = meta["history"][-1]
        meta["best_val"] = {"dice": round(last["val_dice"], 4), "jaccard": round(last["val_jaccard"], 4),
                            "epoch": last["epoch"], "note": "last epoch of the stage (shipped), scored at the input "
                            "size against the original (loose) ISIC validation masks"}
    if args.lineage:
        meta["init"] = args.lineage
    elif meta.get("init"):
        meta["init"] = Path(str(meta["init"])).name  # no path of the training machine in a shipped file
    original = model_from_checkpoint(read_checkpoint(args.checkpoint))
    shipped = model_from_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    img = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    diff = np.abs(predict_proba(img, model=original, device="cpu") - predict_proba(img, model=shipped, device="cpu"))
    print(f"max probability difference after float16 storage: {diff.max():.2e}")
    if diff.max() > 1e-2:
        raise SystemExit("float16 storage changes the predictions too much; not shipping")
    out = Path(args.out)
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
