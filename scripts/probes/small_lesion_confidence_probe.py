"""Probe: does the per-lesion confidence rank small lesions? Read on the first map (as shipped) or on the
zoomed crop's own map. Exploratory (2026-12-07; results in docs/model_card.md, "Per-lesion confidence").

Needs a per-image results file of compare_models.py (``--partial``) for the lesion fractions::

    python scripts/probes/small_lesion_confidence_probe.py PARTIAL.jsonl
"""
import json, sys
import numpy as np
from scipy import ndimage as ndi
from scipy.stats import spearmanr
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT / "src"))
import compare_models as cm
from napari_nevus_seg import segment, dice
from napari_nevus_seg.inference.zoom import zoom_window, CONTEXT, MIN_WINDOW
from napari_nevus_seg.model.loading import load_model
m = load_model(None)
root = cm.data_root(None)
cases = cm.isic_held_out(root / "isic2017-train") + cm.ham_held_out(root / "ham10000")[0]
frac = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["set"] in ("isic", "ham"):
        frac[r["name"]] = r["result"]["_image"]["lesion_fraction"]
small = [c for c in cases if frac.get(c.name, 1) < 0.05]
rows = []
for c in small:
    img, truth = cm.read_pair(c)
    lab, conf = segment(img, model=m, return_confidence=True)
    if not lab.any():
        continue
    ov = np.bincount(lab[truth > 0], minlength=lab.max() + 1)[1:]
    v = int(np.argmax(ov)) + 1 if ov.any() else 1
    les = lab == v
    d = dice(les, truth)
    box = ndi.find_objects(les.astype(int))[0]
    side = max(MIN_WINDOW, int(round(CONTEXT * max(box[0].stop - box[0].start, box[1].stop - box[1].start))))
    y0, x0, h, w = zoom_window(box, les.shape, side)
    crop = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
    cl, cc = segment(crop, model=m, return_confidence=True, zoom_small=False, drop_edge_fragments=False)
    sub = les[y0:y0 + h, x0:x0 + w]
    ov2 = np.bincount(cl[sub], minlength=cl.max() + 1)[1:] if cl.any() else np.zeros(0)
    c2 = cc[int(np.argmax(ov2)) + 1] if ov2.size and ov2.any() else np.nan
    rows.append((conf[v], c2, d, les.mean()))
r = np.array(rows, float)
ok = np.isfinite(r[:, 1])
print(f"n {len(r)} (crop conf for {ok.sum()})")
print(f"first map: expected {r[:,0].mean():.3f} actual {r[:,2].mean():.3f} rho {spearmanr(r[:,0], r[:,2]).statistic:.2f}")
print(f"crop map : expected {r[ok,1].mean():.3f} actual {r[ok,2].mean():.3f} rho {spearmanr(r[ok,1], r[ok,2]).statistic:.2f}")
print(f"size vs dice rho {spearmanr(r[:,3], r[:,2]).statistic:.2f}")
bad = r[:, 2] < 0.8
for k, nm in ((0, "first"), (1, "crop")):
    flag = r[:, k] < 0.8
    print(nm, "flagged", flag.sum(), "bad", bad.sum(), "both", (flag & bad).sum())
