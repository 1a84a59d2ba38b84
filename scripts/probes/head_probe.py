"""Probe: is model 2's ISIC gap in the decoder (convention) or the encoder? Fine-tune on ISIC train only.

Exploratory (2026-12-07, issue 17; results in docs/benchmarks.md):
    python scripts/probes/head_probe.py runs/m2-w16-ep12.pt full|freeze|head EPOCHS LR
"""
import json
import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src")); sys.path.insert(0, str(ROOT / "scripts"))
import torch
from train_model2 import campaign_sets

from napari_nevus_seg.model.networks import default_preprocess
from napari_nevus_seg.training.augment import AugmentConfig
from napari_nevus_seg.training.loop import TrainConfig, evaluate, init_from, train

torch.set_num_threads(2)
init, mode, epochs, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
freeze = mode == 'freeze'
t = time.time()
d = campaign_sets(str(ROOT.parent / "shared/data") + "/isic2017-train", str(ROOT.parent / "shared/data") + "/ham10000", 192, synthetic=0)
print("loaded", time.time() - t, flush=True)
m = init_from(init); m.preprocess = default_preprocess(192)
print("before isic", evaluate(m, d.isic_va), "ham", evaluate(m, d.ham_va), flush=True)
if mode == 'head':
    for n_, p_ in m.net.named_parameters(): p_.requires_grad_(n_.startswith('head.'))
cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, warmup_epochs=0.2, freeze_encoder=freeze, freeze_norm=(mode == 'head'),
                  augment=AugmentConfig(fill_prob=0.4, ink_prob=0.15, sticker_prob=0.05, skin_prob=0.1))
def prog(p):
    if p["stage"] == "val":
        print(json.dumps({k: p.get(k) for k in ("epoch", "seconds", "loss", "val_dice", "val_jaccard")}),
              "ham", evaluate(m, d.ham_va), flush=True)
train(m, d.isic_tr, d.isic_va, cfg, device="cpu", progress=prog)
