"""Experiment: one U-Net for three outline conventions, told which one by extra input planes.

Why: the model-2 campaign showed the archives pulling the network in different directions (probes in
docs/benchmarks.md): fine-tuning model 2 on ISIC alone lifts the ISIC held-out Jaccard from 0.810 to 0.839
(at input size) while HAM10000 drops 0.925 -> 0.913; a decoder trained on masks moved onto the pigment
edge lifts ph2-adapt from 0.917 to 0.927 while HAM drops to 0.904. Here the network sees, beside the RGB
image, three constant planes (one-hot): 0 = as drawn in ISIC 2017, 1 = as drawn in HAM10000 (Tschandl et al.
2020), 2 = tight (the drawn mask moved onto the pigment edge by ``refine_outline``, the PH2 convention
models 1.2-1.5 were trained on last). Each training pair is seen with its archive's convention and, tightened,
with the tight one, so that the whole network, encoder included, can serve each convention.

Starts from a 3-channel model (the new input planes' weights start at zero, so the start is that model
for every convention), resumes from ``--run``/last.pt (saved every ``--save-every`` steps and per epoch),
and logs per-epoch scores per convention to ``--log``:

    python scripts/train_conditioned.py --run runs/cond --log docs/training_logs/cond.csv \
        --init runs/m2-w16-ep12.pt --epochs 4 --steps 750 --lr 3e-4

``--widen 24`` first grows the initial width-16 network to width 24 (Net2WiderNet, same output at the
start: ``napari_nevus_seg.training.widen``), for the capacity comparison at equal training time.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from train_model2 import DATA, campaign_sets, concat, log_row, tightened_cached

from napari_nevus_seg.inference.metrics import score_pairs
from napari_nevus_seg.inference.preprocess import normalise
from napari_nevus_seg.io.datasets import iter_pairs
from napari_nevus_seg.model.devices import autocast_dtype, resolve_device
from napari_nevus_seg.model.networks import LesionModel, build_model, default_preprocess, load_checkpoint, save_model
from napari_nevus_seg.training.augment import AugmentConfig, augment_batch
from napari_nevus_seg.training.data import PairSet
from napari_nevus_seg.training.loop import evaluate
from napari_nevus_seg.training.losses import segmentation_loss
from napari_nevus_seg.training.replay import synthetic_pairs
from napari_nevus_seg.training.widen import widen_unet

CONVENTIONS = ("isic", "ham", "tight")
#: shown by the Segment widget's "Outline convention" choice (meta["convention_descriptions"])
DESCRIPTIONS = {"isic": "as the ISIC 2017 experts drew them: a little outside the pigment",
                "ham": "as drawn for HAM10000 (Tschandl et al. 2020): a little outside the pigment",
                "tight": "on the visible pigment edge, as PH2's experts drew them"}
#: refinement per convention (meta["convention_refine"]): what scored better on each convention's own
#: held-out set with the epoch-5 conditioned model (docs/benchmarks.md): ISIC Jaccard 0.831 unrefined vs
#: 0.818 refined, HAM Dice 0.920 vs 0.896, PH2 Dice 0.931 unrefined vs 0.941 refined
REFINE = {"isic": False, "ham": False, "tight": True}
#: the diagnoses ``--rare-repeat`` shows more often: the weakest in HAM10000 (issue 17's bcc + akiec target)
RARE = ("bcc", "akiec")


def from_plain(path: str, width: int | None = None) -> LesionModel:
    """A U-Net with one input plane per convention that starts as the 3-channel model in ``path`` for
    every convention (the new planes' weights are zero); with ``width`` above the model's, grown to that
    width by :func:`~napari_nevus_seg.training.widen.widen_unet` (same output, copies jittered by 1 %)."""
    plain = load_checkpoint(path)
    cfg = {k: v for k, v in plain.config.items() if k in ("width", "depth", "norm")}
    model = build_model("unet", default_preprocess(plain.input_size), conventions=len(CONVENTIONS), **cfg)
    state = dict(plain.net.state_dict())
    w = state["down.0.0.weight"]
    state["down.0.0.weight"] = torch.cat([w, torch.zeros(w.shape[0], len(CONVENTIONS), *w.shape[2:])], 1)
    model.net.load_state_dict(state)
    if width is not None and width != model.net.down[0][0].out_channels:
        model.net = widen_unet(model.net, width, noise=0.01)
        model.config["width"] = width
    return model


def as_convention(model: LesionModel, convention: int, meta: dict | None = None) -> LesionModel:
    """A copy of ``model`` that draws ``convention`` unless told another (``LesionModel.with_convention``,
    the Segment widget's "Outline convention", ``nevus-seg segment --convention``), with the conventions'
    names, descriptions and refinement settings in its metadata."""
    net = copy.deepcopy(model.net).eval()
    net.convention = convention
    return LesionModel(net, "unet", {**model.config, "convention": convention}, dict(model.preprocess),
                       {**model.meta, **(meta or {}), "conventions": list(CONVENTIONS),
                        "convention_descriptions": dict(DESCRIPTIONS), "convention_refine": dict(REFINE)})


def _state(saved: dict) -> dict:
    """The network's weights from a run checkpoint (early ones wrapped the U-Net as ``unet.``)."""
    return {k.removeprefix("unet."): v for k, v in saved["net"].items()}


def export(run_file: Path, out: Path, convention: str, init: str) -> None:
    """Write the network of ``run_file`` fixed to ``convention`` as a model file ``load_model`` reads."""
    saved = torch.load(run_file, weights_only=True)
    model = from_plain(init, saved.get("config", {}).get("width"))
    model.net.load_state_dict(_state(saved))
    fixed = as_convention(model, CONVENTIONS.index(convention), {
        "name": f"conditioned-{convention}", "init": init, "run_checkpoint": str(run_file),
        "training_data": "ISIC 2017 Challenge Part 1 training set (1800 train / 200 validation, split seed 0) + "
                         "HAM10000 with the Tschandl et al. 2020 masks (10 % of lesions per diagnosis held out, "
                         "seed 0), each pair as drawn and moved onto the pigment edge, + synthetic images"})
    save_model(fixed, out)
    print(f"written {out} ({convention})")


def training_pool(data, run: Path, size: int, isic_repeat: int, synthetic: int, rare_repeat: int = 1):
    """(images, masks, conventions) of every training pair under each convention it is trained with; the HAM
    pairs of the diagnoses in ``RARE`` ``rare_repeat`` times."""
    drawn = concat(data.isic_tr, data.ham_tr)
    tight = tightened_cached(drawn, run / "tightened_masks.pt")
    n_isic = len(data.isic_tr)
    isic_t, ham_t = tight.subset(range(n_isic)), tight.subset(range(n_isic, len(tight)))
    parts: list[tuple[PairSet, int]] = []
    parts += [(data.isic_tr, 0)] * isic_repeat + [(data.ham_tr, 1)]
    parts += [(isic_t, 2)] * isic_repeat + [(ham_t, 2)]
    if rare_repeat > 1:
        rare = [i for i, n in enumerate(data.ham_tr.names) if data.meta[n][1] in RARE]
        parts += [(data.ham_tr.subset(rare), 1), (ham_t.subset(rare), 2)] * (rare_repeat - 1)
    if synthetic:
        syn = synthetic_pairs(synthetic, size)
        parts += [(syn, c) for c in range(len(CONVENTIONS))]
    images = torch.cat([p.images for p, _ in parts])
    masks = torch.cat([p.masks for p, _ in parts])
    conv = torch.cat([torch.full((len(p),), c, dtype=torch.long) for p, c in parts])
    return images, masks, conv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--init", required=True, help="the 3-channel model to start from")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=750, help="steps per epoch (batches drawn from the whole pool)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--isic-repeat", type=int, default=2)
    ap.add_argument("--synthetic", type=int, default=200)
    ap.add_argument("--rare-repeat", type=int, default=1, help="each HAM training pair of bcc and akiec this "
                    "many times per pool (they are 8 %% of HAM's training pairs)")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--widen", type=int, default=None, help="grow the initial network to this width first "
                    "(Net2WiderNet: same output at the start; e.g. 24 from a width-16 model)")
    ap.add_argument("--export", default=None, help="a run checkpoint to write as a model file (with --out, "
                    "--convention) instead of training")
    ap.add_argument("--out", default=None)
    ap.add_argument("--convention", choices=CONVENTIONS, default="tight")
    args = ap.parse_args()
    if args.export:
        export(Path(args.export), Path(args.out), args.convention, args.init)
        return

    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = campaign_sets(DATA / "isic2017-train", DATA / "ham10000", args.size, synthetic=0, limit=args.limit)
    images, masks, conv = training_pool(data, run, args.size, args.isic_repeat, args.synthetic, args.rare_repeat)
    ph2 = [(img, m) for _, img, m in iter_pairs(DATA / "ph2-adapt")]
    print(f"pool {len(images)} pairs, loaded in {time.time() - t0:.0f} s", flush=True)

    dev = resolve_device("auto")
    amp = autocast_dtype(dev)
    if args.widen is None and (run / "last.pt").is_file():   # a widened run resumes at its own width
        args.widen = torch.load(run / "last.pt", weights_only=True).get("config", {}).get("width")
    model = from_plain(args.init, args.widen)
    net = model.net.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    total, warm = args.epochs * args.steps, max(1, args.steps // 4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (
        0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))
    step = 0
    if (run / "last.pt").is_file():
        ck = torch.load(run / "last.pt", weights_only=True)
        net.load_state_dict(_state(ck))
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        step = int(ck["step"])
        print(f"resumed at step {step}", flush=True)

    def save(name: str) -> None:
        tmp = run / (name + ".tmp")
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                    "config": {**model.config, "size": args.size, "conventions_named": list(CONVENTIONS)}}, tmp)
        tmp.replace(run / name)

    aug = AugmentConfig(fill_prob=0.4, ink_prob=0.15, sticker_prob=0.05, skin_prob=0.1)
    log = Path(args.log)
    fields = ["epoch", "step", "seconds", "loss", "isic_dice", "isic_jaccard", "ham_dice", "ham_bcc_akiec_dice",
              "isic_as_tight_jaccard", "ham_as_tight_dice", "ph2_tight_refined", "ph2_tight_unrefined"]
    ham_dx = [i for i, n in enumerate(data.ham_va.names) if data.meta[n][1] in ("bcc", "akiec")]
    running, n_run, t_start = 0.0, 0, time.time()
    while step < total:
        net.train()
        g = torch.Generator().manual_seed(step)
        idx = torch.randint(len(images), (args.batch,), generator=g)
        x = images[idx].to(dev).float() / 255.0
        y = masks[idx].to(dev).float()
        x, y = augment_batch(x, y, aug, g)
        x = normalise(x, [0.5] * 3, [0.25] * 3)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(x, conv[idx].to(dev))
        loss = segmentation_loss(logits.float(), y, "bce+dice")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        running, n_run = running + loss.item(), n_run + 1
        if step % args.save_every == 0:
            save("last.pt")
        if step % args.steps == 0:
            from napari_nevus_seg.inference.pipeline import segment

            net.eval()
            row = {"epoch": step // args.steps, "step": step, "seconds": round(time.time() - t_start, 1),
                   "loss": round(running / n_run, 4)}
            isic, ham, tight = (as_convention(model, k) for k in range(len(CONVENTIONS)))
            s = evaluate(isic, data.isic_va)
            row.update(isic_dice=s["dice"], isic_jaccard=s["jaccard"])
            row["ham_dice"] = evaluate(ham, data.ham_va)["dice"]
            row["ham_bcc_akiec_dice"] = evaluate(ham, data.ham_va.subset(ham_dx))["dice"]
            row["isic_as_tight_jaccard"] = evaluate(tight, data.isic_va)["jaccard"]
            row["ham_as_tight_dice"] = evaluate(tight, data.ham_va)["dice"]
            for refine in (True, False):
                row[f"ph2_tight_{'refined' if refine else 'unrefined'}"] = score_pairs(
                    (segment(img, model=tight, device="cpu", refine=refine) > 0, m) for img, m in ph2)["dice"]
            log_row(log, fields, row)
            save("last.pt")
            save(f"epoch{row['epoch']}.pt")
            running, n_run = 0.0, 0
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
