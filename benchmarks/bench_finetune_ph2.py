"""Fine-tuning on PH2: does a handful of corrected images make the model better on a new dermoscope?

Protocol (issue 5): starting from the default model, fine-tune on 10 of the 20 PH2 cases in
``ph2-adapt`` (the expert masks stand in for a user's corrections), score the other 10 at full
resolution through ``segment``, then swap the halves. Printed:

- mean Dice on the scored halves before (base model) and after (tuned model), per fold and overall,
  and "after, with the keep/discard rule" (a fold whose tuned model scored worse than the base on its
  own held-out pairs keeps the base model, as the widget suggests);
- mean Dice on the ISIC 2017 validation split (the 200 images the default model did not train on:
  ``training.load_pairs`` order split by ``training.split_pairs(pairs, 0.1, seed=0)``) before and
  after, to see how much of the original skill is lost;
- wall time of each ``fine_tune`` call (10 images) on this machine.

Usage::

    python benchmarks/bench_finetune_ph2.py [--data ../shared/data] [--model PATH] [--device auto]
        [--no-isic] [--set lr=1e-4 --set freeze_norm=False ...] [--json results.json]

The data are read from ``--data``, ``$NEVUS_SEG_DATA`` or ``../shared/data``; nothing is copied.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_nevus_seg import dice, fine_tune, iter_pairs, load_model, read_image, read_mask, segment
from napari_nevus_seg.io.datasets import discover_cases
from napari_nevus_seg.training.data import PairSet, split_pairs
from napari_nevus_seg.training.finetune import DEFAULTS, FineTuneResult


def default_data_dir() -> Path:
    env = os.environ.get("NEVUS_SEG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def isic_validation_cases(root: Path):
    """The ISIC validation split of the default model's training (names only, no image is read).

    ``split_pairs`` depends only on the number of pairs and the seed, so a PairSet of placeholders
    in ``load_pairs``'s case order gives the same split as the training script.
    """
    cases = [c for c in discover_cases(root) if c.mask is not None]
    n = len(cases)
    dummy = PairSet(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.zeros(n, 1, 1, 1, dtype=torch.uint8),
                    [c.name for c in cases])
    val_names = set(split_pairs(dummy, 0.1, seed=0)[1].names)
    return [c for c in cases if c.name in val_names]


def set_threads(n: int) -> None:
    """Pin torch to ``n`` threads (the library otherwise raises it to every core before each run)."""
    from napari_nevus_seg.inference import pipeline as inference
    from napari_nevus_seg.training import loop as training

    torch.set_num_threads(n)
    inference.use_all_cpu_threads = training.use_all_cpu_threads = lambda: n


REFINE = True  # score segment()'s default outline (refined); --no-refine scores the network's own outline


def mean_dice(model, images, masks, device) -> list[float]:
    return [dice(segment(img, model=model, device=device, refine=REFINE) > 0, m) for img, m in zip(images, masks)]


def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in DEFAULTS and key not in ("seed",):
            sys.exit(f"unknown setting {key!r}; known: {sorted(DEFAULTS)}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--model", default=None, help="base model file (default: the shipped model)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-isic", action="store_true", help="skip the ISIC validation scores")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"fine_tune setting to override (defaults: {DEFAULTS})")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: all cores). With --threads 1 the CPU-seconds are the "
                         "wall time one idle core would need, a figure other processes hardly disturb")
    ap.add_argument("--no-refine", action="store_true",
                    help="score the network's own outline (segment(..., refine=False)) instead of the refined one")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    global REFINE
    REFINE = not args.no_refine
    if args.threads:
        set_threads(args.threads)

    ph2_root = args.data / "ph2-adapt"
    if not ph2_root.is_dir():
        sys.exit(f"{ph2_root}: PH2 sample not found (use --data or $NEVUS_SEG_DATA)")
    settings = parse_settings(args.set)
    base = load_model(args.model)
    print(f"base model: {args.model or 'default'} ({base.meta.get('name')}, {base.meta.get('note', '')}), "
          f"input {base.input_size} px, torch threads {torch.get_num_threads()}")
    print(f"settings: {dict(DEFAULTS, **settings)}")

    names, imgs, masks = zip(*iter_pairs(ph2_root))
    order = np.random.default_rng(args.split_seed).permutation(len(names))
    halves = [sorted(order[:len(order) // 2].tolist()), sorted(order[len(order) // 2:].tolist())]

    isic_imgs, isic_masks = [], []
    if not args.no_isic:
        cases = isic_validation_cases(args.data / "isic2017-train")
        isic_imgs = [read_image(c.image) for c in cases]
        isic_masks = [read_mask(c.mask) for c in cases]

    folds, before_all, after_all, kept_all = [], [], [], []
    isic_before = float(np.mean(mean_dice(base, isic_imgs, isic_masks, args.device))) if isic_imgs else None
    for f, (tr, te) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        t0, c0 = time.perf_counter(), time.process_time()
        tuned = fine_tune([imgs[i] for i in tr], [masks[i] for i in tr], base=base, device=args.device,
                          **settings)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rep = FineTuneResult.of(tuned)
        te_imgs, te_masks = [imgs[i] for i in te], [masks[i] for i in te]
        before = mean_dice(base, te_imgs, te_masks, args.device)
        after = mean_dice(tuned, te_imgs, te_masks, args.device)
        kept = before if rep.worse else after
        isic_after = float(np.mean(mean_dice(tuned, isic_imgs, isic_masks, args.device))) if isic_imgs else None
        fold = {"fold": f + 1, "train": [names[i] for i in tr], "test": [names[i] for i in te],
                "seconds": wall, "cpu_seconds": cpu, "stopped_epoch": tuned.meta["fine_tune"]["stopped_epoch"],
                "best_epoch": tuned.meta["fine_tune"]["best_epoch"],
                "holdout_before": rep.before_dice, "holdout_after": rep.after_dice, "worse_on_holdout": rep.worse,
                "test_before": float(np.mean(before)), "test_after": float(np.mean(after)),
                "test_after_rule": float(np.mean(kept)), "isic_after": isic_after}
        folds.append(fold)
        before_all += before
        after_all += after
        kept_all += kept
        print(f"fold {f + 1}: fine_tune {wall:6.1f} s wall, {cpu:6.1f} s CPU (stopped at epoch {fold['stopped_epoch']}, best "
              f"{fold['best_epoch']}); held-out pairs {rep.before_dice:.3f} -> {rep.after_dice:.3f}; "
              f"test half Dice {fold['test_before']:.4f} -> {fold['test_after']:.4f}"
              + (f"; ISIC val {isic_before:.4f} -> {isic_after:.4f}" if isic_imgs else ""), flush=True)

    res = {"settings": dict(DEFAULTS, **settings), "base": args.model or "default",
           "base_note": base.meta.get("note"), "device": args.device, "folds": folds,
           "ph2_before": float(np.mean(before_all)), "ph2_after": float(np.mean(after_all)),
           "ph2_after_rule": float(np.mean(kept_all)),
           "ph2_min_delta": float(np.min(np.subtract(after_all, before_all))),
           "isic_before": isic_before,
           "isic_after": float(np.mean([f["isic_after"] for f in folds])) if isic_imgs else None,
           "seconds_mean": float(np.mean([f["seconds"] for f in folds])),
           "cpu_seconds_mean": float(np.mean([f["cpu_seconds"] for f in folds])),
           "load_average": os.getloadavg()[0]}
    print("\n=== PH2, 2 folds of 10 (scored on the half not trained on) ===")
    print(f"mean Dice before {res['ph2_before']:.4f}  after {res['ph2_after']:.4f}  "
          f"({100 * (res['ph2_after'] - res['ph2_before']):+.2f} points; with keep/discard rule "
          f"{res['ph2_after_rule']:.4f}); worst single image {100 * res['ph2_min_delta']:+.1f} points")
    if isic_imgs:
        print(f"ISIC validation ({len(isic_imgs)} images) mean Dice before {isic_before:.4f}  after "
              f"{res['isic_after']:.4f}  ({100 * (res['isic_after'] - isic_before):+.2f} points, mean of 2 tuned models)")
    print(f"fine_tune wall time for 10 images: {res['seconds_mean']:.1f} s (mean of 2) on {args.device} "
          f"({torch.get_num_threads()} threads; {res['cpu_seconds_mean']:.0f} CPU-seconds; load average "
          f"{res['load_average']:.1f}: other processes running make the wall time longer)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
