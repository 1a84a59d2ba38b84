"""Two network capacities trained for the same time on the model-2 campaign's data, then scored side by side.

Each width (``--widths``, U-Net of depth 4 at the 192 px input) is trained from scratch with the same recipe
(``TrainConfig`` defaults: bce+dice, AdamW, warm-up then cosine decay; the campaign's augmentation) on the
campaign's training pairs (``train_model2.campaign_sets``: ISIC 2017 + HAM10000 split by lesion +
synthetic images). *Equal training time* means an equal number of seconds of optimisation on this CPU:
before training, ``--probe-steps`` steps of each width are timed one after the other (in the same
conditions), and each width gets ``budget / seconds-per-step`` steps, spread over ``--epochs`` epochs; the
budget is ``--budget-min`` or, with ``--base-steps N``, the probe's time of N steps of the first width. The step count is fixed
beforehand, so a run slowed by other work later still does the same amount of training. Validation during
training (for the kept epoch) uses the 200 ISIC held-out images only; afterwards every width is scored at
the input size on the ISIC and HAM held-out images (per diagnosis), on the 20 ph2-adapt cases at full
resolution with ``segment``, and timed end to end on 768x576 and 4000x3000 synthetic images.

Resumable: each width trains in ``--runs/w<width>`` (``last.pt`` every epoch); a width whose result is in
``--out`` already is skipped.

    python scripts/compare_capacity.py --widths 16 32 --budget-min 15 --out docs/training_logs/capacity.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from train_model2 import DATA, DIAGNOSES, campaign_sets  # noqa: E402

from napari_nevus_seg.inference.metrics import score_pairs  # noqa: E402
from napari_nevus_seg.inference.pipeline import segment  # noqa: E402
from napari_nevus_seg.io.datasets import iter_pairs  # noqa: E402
from napari_nevus_seg.io.synthetic import synthetic_lesion_image  # noqa: E402
from napari_nevus_seg.model.networks import build_model, default_preprocess, save_model  # noqa: E402
from napari_nevus_seg.training.augment import AugmentConfig  # noqa: E402
from napari_nevus_seg.training.loop import TrainConfig, evaluate, train  # noqa: E402


def fresh_model(width: int, size: int):
    torch.manual_seed(0)
    return build_model("unet", default_preprocess(size), width=width, depth=4)


def recipe(epochs: int, steps: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, steps_per_epoch=steps, batch_size=16, lr=2e-3, loss="bce+dice",
                       warmup_epochs=0.5, augment=AugmentConfig(fill_prob=0.4, ink_prob=0.15, sticker_prob=0.05,
                                                                skin_prob=0.1))


def seconds_per_step(width: int, size: int, tr, steps: int) -> float:
    """Training seconds per step of a fresh model of ``width``: a run of 1 + ``steps`` steps minus a run of
    one step (which cancels each run's fixed start-up), after one untimed warm-up run."""
    model = fresh_model(width, size)
    train(model, tr, None, recipe(1, 1), device="cpu")
    times = []
    for n in (1, 1 + steps):
        t0 = time.perf_counter()
        train(model, tr, None, recipe(1, n), device="cpu")
        times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / steps


def speed_ms(model, shape: tuple[int, int], repeats: int = 5) -> float:
    from PIL import Image

    base = synthetic_lesion_image(seed=0, shape=(576, 768)).image
    img = base if shape == (576, 768) else np.asarray(Image.fromarray(base).resize(shape[::-1], Image.BICUBIC))
    segment(img, model=model, device="cpu")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        segment(img, model=model, device="cpu")
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def score(model, data, ph2: list, path: Path) -> dict:
    isic = evaluate(model, data.isic_va)
    out = {"isic_dice": isic["dice"], "isic_jaccard": isic["jaccard"], "ham_dice": evaluate(model, data.ham_va)["dice"]}
    for dx in DIAGNOSES:
        sub = data.ham_va.subset([i for i, n in enumerate(data.ham_va.names) if data.meta[n][1] == dx])
        out[f"ham_{dx}_dice"] = evaluate(model, sub)["dice"] if len(sub) else None
    ba = data.ham_va.subset([i for i, n in enumerate(data.ham_va.names) if data.meta[n][1] in ("bcc", "akiec")])
    out["ham_bcc_akiec_dice"] = evaluate(model, ba)["dice"]
    if ph2:
        out["ph2_adapt_dice"] = score_pairs((segment(img, model=model, device="cpu") > 0, m) for _, img, m in ph2)["dice"]
    out["ms_768x576"] = speed_ms(model, (576, 768))
    out["ms_4000x3000"] = speed_ms(model, (3000, 4000))
    out["file_mb"] = path.stat().st_size / 1e6
    out["parameters"] = sum(p.numel() for p in model.net.parameters())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--budget-min", type=float, default=15.0, help="training minutes per width (this CPU, alone)")
    ap.add_argument("--base-steps", type=int, default=None, help="instead of --budget-min: the first width trains "
                    "this many steps and every other width the steps that take the same time by the probe")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--probe-steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "capacity"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "training_logs" / "capacity.json"))
    ap.add_argument("--limit", type=int, default=None, help="at most this many pairs per archive (smoke runs)")
    args = ap.parse_args()

    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    data = campaign_sets(DATA / "isic2017-train", DATA / "ham10000", args.size, limit=args.limit)
    ph2_dir = DATA / "ph2-adapt"
    ph2 = list(iter_pairs(ph2_dir)) if ph2_dir.is_dir() else []
    probe = results.get("_probe")
    if probe is None or sorted(probe["seconds_per_step"]) != sorted(str(w) for w in args.widths):
        load = os.getloadavg()[0]
        probe = {"seconds_per_step": {str(w): seconds_per_step(w, args.size, data.train, args.probe_steps)
                                      for w in args.widths}, "loadavg_before": load, "steps": args.probe_steps}
        results["_probe"] = probe
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
    print("seconds per step:", probe["seconds_per_step"], flush=True)
    for width in args.widths:
        key = f"w{width}"
        if key in results:
            continue
        per_step = probe["seconds_per_step"][str(width)]
        if args.base_steps:
            budget_s = args.base_steps * probe["seconds_per_step"][str(args.widths[0])]
        else:
            budget_s = args.budget_min * 60
        steps = max(1, int(budget_s / per_step / args.epochs))
        model = fresh_model(width, args.size)
        run = Path(args.runs) / key
        t0 = time.time()
        res = train(model, data.train, data.isic_va, recipe(args.epochs, steps), device="cpu",
                    checkpoint_dir=run, resume=True)
        path = run / "model.pt"
        save_model(model, path)
        results[key] = {"width": width, "epochs": args.epochs, "steps_per_epoch": steps, "batch_size": 16,
                        "images_seen": args.epochs * steps * 16, "training_seconds": res.seconds,
                        "wall_seconds": time.time() - t0, "best_epoch": (res.best_val or {}).get("epoch"),
                        **score(model, data, ph2, path)}
        print(json.dumps(results[key]), flush=True)
        out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
