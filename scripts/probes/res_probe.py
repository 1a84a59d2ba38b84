"""Probe: does a larger input size lift ISIC? m2 ep12 fine-tuned on ISIC+HAM (ISIC x4) at SIZE; full-res ISIC val J unrefined.

Exploratory (2026-12-07, issue 17; results in docs/benchmarks.md):
    python scripts/probes/res_probe.py runs/m2-w16-ep12.pt SIZE EPOCHS LR isic|isic+hamN|all
"""
import json
import sys

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src")); sys.path.insert(0, str(ROOT / "scripts"))
import torch
from train_model2 import campaign_sets

from napari_nevus_seg.inference.metrics import score_pairs
from napari_nevus_seg.inference.pipeline import segment
from napari_nevus_seg.io.datasets import iter_pairs
from napari_nevus_seg.model.networks import default_preprocess, save_model
from napari_nevus_seg.training.augment import AugmentConfig
from napari_nevus_seg.training.loop import TrainConfig, evaluate, init_from, train

torch.set_num_threads(2)
init, size, epochs, lr, which = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
d = campaign_sets(str(ROOT.parent / "shared/data") + "/isic2017-train", str(ROOT.parent / "shared/data") + "/ham10000", size, synthetic=0)
va = set(d.isic_va.names)
isic_full = [(img, mk) for n, img, mk in iter_pairs(str(ROOT.parent / "shared/data") + "/isic2017-train") if n in va]
print("isic val full", len(isic_full), flush=True)
m = init_from(init); m.preprocess = default_preprocess(size)
def full():
    s = score_pairs((segment(img, model=m, device="cpu", refine=False, zoom_small=False) > 0, mk) for img, mk in isic_full)
    return round(s["dice"], 4), round(s["jaccard"], 4)
print("before full-res isic (unrefined, no zoom)", full(), flush=True)
if which == "isic":
    tr = d.isic_tr
elif which.startswith("isic+ham"):
    from train_model2 import concat
    k = int(which[len("isic+ham"):])
    g = torch.Generator().manual_seed(0)
    tr = concat(d.isic_tr, d.ham_tr.subset(torch.randperm(len(d.ham_tr), generator=g)[:k].tolist()))
else:
    tr = d.train
print("train pairs", len(tr), flush=True)
cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, warmup_epochs=0.2,
                  augment=AugmentConfig(fill_prob=0.4, ink_prob=0.15, sticker_prob=0.05, skin_prob=0.1))
def prog(p):
    if p["stage"] == "val":
        print(json.dumps({k: p.get(k) for k in ("epoch", "seconds", "loss", "val_dice", "val_jaccard")}),
              "full isic", full(), "ham", evaluate(m, d.ham_va)["dice"], flush=True)
        m.net.train()
        save_model(m, f"/tmp/res{size}_{which}_ep{p['epoch']}.pt")
train(m, tr, d.isic_va, cfg, device="cpu", progress=prog)
