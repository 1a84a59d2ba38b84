"""Probe: m2 encoder frozen, decoder trained on tightened (refine_outline) ISIC+HAM masks; PH2-adapt at full res.

Exploratory (2026-12-07, issue 17; results in docs/benchmarks.md):
    python scripts/probes/tight_probe.py runs/m2-w16-ep12.pt freeze EPOCHS LR
"""
import json
import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src")); sys.path.insert(0, str(ROOT / "scripts"))
import torch
from train_default import tightened
from train_model2 import campaign_sets, concat

from napari_nevus_seg.inference.metrics import score_pairs
from napari_nevus_seg.inference.pipeline import segment
from napari_nevus_seg.io.datasets import iter_pairs
from napari_nevus_seg.model.networks import default_preprocess, save_model
from napari_nevus_seg.training.augment import AugmentConfig
from napari_nevus_seg.training.loop import TrainConfig, evaluate, init_from, train
from napari_nevus_seg.training.replay import synthetic_pairs

torch.set_num_threads(2)
init, mode, epochs, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
t = time.time()
d = campaign_sets(str(ROOT.parent / "shared/data") + "/isic2017-train", str(ROOT.parent / "shared/data") + "/ham10000", 192, synthetic=0)
cache = "/tmp/tight_cache.pt"
try:
    tr = torch.load(cache)
    tr = type(d.isic_tr)(tr["images"], tr["masks"], tr["names"])
except FileNotFoundError:
    tr = tightened(concat(d.isic_tr, d.ham_tr))
    torch.save({"images": tr.images, "masks": tr.masks, "names": tr.names}, cache)
tr = concat(tr, synthetic_pairs(200, 192))
print("loaded+tightened", time.time() - t, len(tr), flush=True)
ph2 = list(iter_pairs(str(ROOT.parent / "shared/data") + "/ph2-adapt"))
m = init_from(init); m.preprocess = default_preprocess(192)
def ph2score(refine=True):
    return score_pairs((segment(img, model=m, device="cpu", refine=refine) > 0, mk) for _, img, mk in ph2)["dice"]
print("before ph2", ph2score(), ph2score(False), flush=True)
cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, warmup_epochs=0.2, freeze_encoder=(mode == "freeze"),
                  augment=AugmentConfig(fill_prob=0.4, ink_prob=0.15, sticker_prob=0.05, skin_prob=0.1))
def prog(p):
    if p["stage"] == "val":
        print(json.dumps({k: p.get(k) for k in ("epoch", "seconds", "loss", "val_dice", "val_jaccard")}),
              "ph2 refined/unrefined", ph2score(), ph2score(False), "ham", evaluate(m, d.ham_va)["dice"], flush=True)
        m.net.train()
        save_model(m, f"/tmp/tight_{mode}_ep{p['epoch']}.pt")
train(m, tr, d.isic_va, cfg, device="cpu", progress=prog)
