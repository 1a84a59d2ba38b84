"""Segmentation benchmark: quality (PH2, ISIC validation split) and speed/memory, side by side in one run.

Quality: mean Dice, Jaccard and thresholded Jaccard (ISIC challenge: a per-image Jaccard below 0.65
counts as 0), scored at the images' full resolution against the expert masks read from the original
files, for the default model (as ``segment`` runs it by default: outline refinement on, all lesions kept;
also with test-time augmentation, with the largest lesion only, and with the network's own outline
unrefined) and for the classical Otsu baseline (``benchmarks/baseline.py``):

- the 20 PH2 cases of ``ph2-adapt`` (never used for training);
- the 200 held-out ISIC 2017 validation images (``training.split_pairs(pairs, 0.1, seed=0)``, the
  split the default model was selected on, never trained on);
- the same validation images cropped inside their lesion (the 15-85 % quantile box of the lesion's
  pixels along each axis, where the lesion covers at least 15 % of the image and the box is at least
  64 px wide): lesions larger than the field of view, as high-magnification dermoscopes show them and
  as ISIC itself hardly contains (no ISIC 2017 mask covers more than 95 % of its image).

Speed: end-to-end milliseconds of ``segment`` (RGB array in, instance labels out) for 768x576 and
3000x2000 synthetic images, per device, beside a naive reference in the same run (the same network in
fp32, no channels-last, no inference mode, no folding, the full-resolution image resized with plain
torch, full-resolution scipy post-processing). Peak memory (``ru_maxrss`` of a fresh process) for 6000x4000.

    python benchmarks/bench_segment.py                         # everything, printed
    python benchmarks/bench_segment.py --markdown docs/benchmarks.md
    python benchmarks/bench_segment.py --skip-quality --devices cpu cuda
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from baseline import otsu_baseline  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from napari_nevus_seg import (  # noqa: E402
    available_devices,
    dice,
    load_model,
    read_image,
    read_mask,
    score_pairs,
    segment,
    synthetic_lesion_image,
)
from napari_nevus_seg.inference.preprocess import normalise  # noqa: E402
from napari_nevus_seg.io.datasets import discover_cases  # noqa: E402

SPEED_SHAPES = [(576, 768), (2000, 3000)]
MEMORY_SHAPE = (4000, 6000)


def data_root(arg: str | None) -> Path:
    return Path(arg or os.environ.get("NEVUS_SEG_DATA") or ROOT.parent / "shared" / "data")


# ------------------------------------------------------------------------------------------ quality
def isic_validation_cases(isic_root: Path) -> list:
    """The held-out ISIC validation cases, exactly as the training campaign split them."""
    from napari_nevus_seg.training.data import load_pairs, split_pairs

    names = set(split_pairs(load_pairs(isic_root, 16), 0.1, seed=0)[1].names)  # tiny size: names only
    return [c for c in discover_cases(isic_root) if c.name in names and c.mask is not None]


def inside_lesion_crop(img: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Image and mask cropped to the 15-85 % quantile box of the lesion (None when too small)."""
    if truth.mean() < 0.15:
        return None
    ys, xs = np.nonzero(truth)
    y0, y1 = np.percentile(ys, [15, 85]).astype(int)
    x0, x1 = np.percentile(xs, [15, 85]).astype(int)
    if min(y1 - y0, x1 - x0) < 64:
        return None
    return img[y0:y1, x0:x1], truth[y0:y1, x0:x1]


def read_cases(cases: list, crop: bool = False):
    """Yield (image, expert mask) per case; with ``crop``, the inside-lesion crops only."""
    for case in cases:
        pair = read_image(case.image), read_mask(case.mask)
        if crop:
            pair = inside_lesion_crop(*pair)
        if pair is not None:
            yield pair


def methods(model, device: str) -> dict:
    return {
        "default model": lambda img: segment(img, model=model, device=device) > 0,
        "network outline (no refinement)": lambda img: segment(img, model=model, device=device, refine=False) > 0,
        "default model + TTA": lambda img: segment(img, model=model, device=device, tta=True) > 0,
        "default model, largest lesion": lambda img: segment(img, model=model, device=device, largest_only=True) > 0,
        "Otsu baseline": otsu_baseline,
    }


def quality(root: Path, model, device: str, limit: int | None) -> list[dict]:
    sets = {}
    ph2 = root / "ph2-adapt"
    if ph2.is_dir():
        sets["PH2 (20 cases)"] = [c for c in discover_cases(ph2) if c.mask is not None]
    isic = root / "isic2017-train"
    if isic.is_dir():
        sets["ISIC 2017 validation"] = isic_validation_cases(isic)[:limit]
        sets["ISIC 2017 validation, inside-lesion crops"] = sets["ISIC 2017 validation"]
    rows = []
    for set_name, cases in sets.items():
        preds = {m: [] for m in methods(model, device)}
        seconds = dict.fromkeys(preds, 0.0)
        for img, truth in read_cases(cases, crop="crops" in set_name):
            for m, fn in methods(model, device).items():
                t0 = time.perf_counter()
                preds[m].append((fn(img), truth))
                seconds[m] += time.perf_counter() - t0
        for m, pairs in preds.items():
            s = score_pairs(pairs)
            ms = 1000 * seconds[m] / max(1, len(pairs))
            rows.append({"set": set_name, "method": m, "ms": ms, **s})
            print(f"{set_name:24s} {m:22s} n={s['n']:3d}  Dice {s['dice']:.4f}  Jaccard {s['jaccard']:.4f}  "
                  f"thr-Jaccard {s['thresholded_jaccard']:.4f}  {ms:.0f} ms/image", flush=True)
    if not sets:
        print(f"no data under {root}: quality skipped (set --data or NEVUS_SEG_DATA)")
    return rows


# -------------------------------------------------------------------------------------------- speed
def naive_net(model, device: str) -> torch.nn.Module:
    """A plain fp32 copy of the model's network on ``device`` (the model itself is left alone)."""
    return copy.deepcopy(model.net).to(device).eval()


def naive_segment(img: np.ndarray, model, device: str, net: torch.nn.Module | None = None,
                  threshold: float = 0.5) -> np.ndarray:
    """Reference: the same network, fp32, no optimisation, full-resolution torch resizing and scipy post-processing."""
    dev = torch.device(device)
    net = net if net is not None else naive_net(model, device)
    size = model.input_size
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img)).to(dev).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = normalise(x, model.preprocess["mean"], model.preprocess["std"])
        prob = torch.sigmoid(net(x))
        prob = F.interpolate(prob, size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
    mask = ndi.binary_fill_holes(prob > threshold)
    lab, n = ndi.label(mask)
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    areas[0] = 0
    keep = [k for k in np.argsort(-areas[1:], kind="stable") + 1 if areas[k] >= max(16, int(0.001 * mask.size))]
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1)
    return remap[lab]


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median ms, min ms, last result) after one warm-up call."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.min(times)), out


def set_threads(n: int | None) -> int:
    """Use ``n`` CPU threads in torch (None: all cores, as the plugin does); returns the count in use."""
    import napari_nevus_seg.inference.pipeline as inf
    from napari_nevus_seg.model.devices import use_all_cpu_threads

    if n is None:
        inf.use_all_cpu_threads = use_all_cpu_threads
        return use_all_cpu_threads()
    torch.set_num_threads(n)
    inf.use_all_cpu_threads = lambda: n  # keep the chosen count inside segment()
    return n


def speed(model, devices: list[str], repeats: int, threads: list[int | None]) -> list[dict]:
    rows = []
    for dev in devices:
        net = naive_net(model, dev)
        for n_threads in threads if dev == "cpu" else [None]:
            used = set_threads(n_threads)
            for h, w in SPEED_SHAPES:
                img = synthetic_lesion_image(seed=0, shape=(h, w)).image
                med, best, _ = timed(lambda: segment(img, model=model, device=dev), repeats)
                u_med, u_best, lab = timed(lambda: segment(img, model=model, device=dev, refine=False), repeats)
                n_med, n_best, n_lab = timed(lambda: naive_segment(img, model, dev, net), repeats)
                agree = dice(lab > 0, n_lab > 0)
                rows.append({"device": dev if dev != "cpu" else f"cpu, {used} thread{'s' * (used > 1)}",
                             "size": f"{w}x{h}", "ms": med, "ms_min": best, "plain_ms": u_med, "plain_ms_min": u_best,
                             "naive_ms": n_med, "naive_ms_min": n_best, "speedup": n_med / u_med, "agreement": agree})
                print(f"{rows[-1]['device']:14s} {w}x{h:<5d} segment {med:8.1f} ms (min {best:7.1f})   unrefined "
                      f"{u_med:8.1f} ms (min {u_best:7.1f})   naive {n_med:8.1f} ms (min {n_best:7.1f})   "
                      f"x{n_med / u_med:4.1f}   Dice(unrefined, naive) {agree:.4f}", flush=True)
    set_threads(None)
    return rows


_MEMORY_CODE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {bench!r}); sys.path.insert(0, {src!r})
    import numpy as np
    from napari_nevus_seg import load_model, segment
    from bench_segment import naive_segment, peak_rss_mb
    model = load_model()
    h, w = {shape}
    img = np.full((h, w, 3), 205, np.uint8)
    xx = ((np.arange(w) - w / 2) / (w / 4)) ** 2
    for y in range(h):  # row by row: no full-size temporaries before the measurement
        img[y, xx + ((y - h / 2) / (h / 4)) ** 2 < 1] = 60
    before = peak_rss_mb()
    lab = segment(img, model=model, device={dev!r}) if {mode!r} == "segment" else naive_segment(img, model, {dev!r})
    assert lab.shape == (h, w) and lab.max() >= 1
    print(before, peak_rss_mb())
""")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: ``VmHWM`` on Linux, else ``ru_maxrss``.

    (On Linux ``ru_maxrss`` of a child starts at its parent's peak, since it survives fork and exec;
    ``VmHWM`` belongs to the process image alone.)
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def memory(devices: list[str]) -> list[dict]:
    rows = []
    for dev in devices:
        for mode in ("segment", "naive"):
            code = _MEMORY_CODE.format(bench=str(ROOT / "benchmarks"), src=str(ROOT / "src"), shape=MEMORY_SHAPE,
                                       dev=dev, mode=mode)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                print(f"memory run {mode} on {dev} failed:\n{out.stderr[-1500:]}")
                continue
            before, peak = (float(v) for v in out.stdout.split()[-2:])
            h, w = MEMORY_SHAPE
            rows.append({"device": dev, "method": mode, "size": f"{w}x{h}", "peak_mb": peak, "base_mb": before})
            print(f"{dev:5s} {mode:8s} {w}x{h}: peak RSS {peak:7.0f} MB (process with model loaded, before the "
                  f"image: {before:.0f} MB)", flush=True)
    return rows


# ------------------------------------------------------------------------------------------- report
def environment(model) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"CPU: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}; "
             f"load average at start {os.getloadavg()[0]:.1f} (other processes share the CPU when it is above 0)"]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    best = model.meta.get("best_val", {})
    lines.append(f"model: {model.meta.get('name', '?')} ({model.arch} {model.config}, input {model.input_size} px, "
                 f"{model.n_parameters():,} parameters); {model.meta.get('note', '')} "
                 f"best validation epoch {best.get('epoch', '?')}")
    return lines


def markdown(env: list[str], q: list[dict], s: list[dict], m: list[dict]) -> str:
    out = ["# Segmentation benchmark", "", "Produced by `python benchmarks/bench_segment.py --markdown ...`.", ""]
    out += [f"- {line}" for line in env] + [""]
    if q:
        out += ["## Quality (full resolution, expert masks)", "",
                "| data set | method | images | Dice | Jaccard | thresholded Jaccard | ms per image |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['set']} | {r['method']} | {r['n']} | {r['dice']:.4f} | {r['jaccard']:.4f} | "
                f"{r['thresholded_jaccard']:.4f} | {r['ms']:.0f} |" for r in q] + [""]
    if s:
        out += ["## Speed (end to end: RGB array in, labels out; median, min)", "",
                "`segment` is the default (outline refinement on); the naive reference has no refinement, so the "
                "speed-up and the agreement compare it with `segment(..., refine=False)` (same network, same outline).",
                "", "| device | image | segment ms | segment, no refinement, ms | naive reference ms | speed-up "
                "(unrefined vs naive) | Dice(unrefined, naive) |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['device']} | {r['size']} | {r['ms']:.1f} ({r['ms_min']:.1f}) | {r['plain_ms']:.1f} "
                f"({r['plain_ms_min']:.1f}) | {r['naive_ms']:.1f} ({r['naive_ms_min']:.1f}) | {r['speedup']:.1f}x | "
                f"{r['agreement']:.4f} |" for r in s] + [""]
    if m:
        out += ["## Peak memory (fresh process: VmHWM on Linux, else ru_maxrss)", "", "| device | method | image | peak MB | before image MB |",
                "|---|---|---|---|---|"]
        out += [f"| {r['device']} | {r['method']} | {r['size']} | {r['peak_mb']:.0f} | {r['base_mb']:.0f} |"
                for r in m] + [""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder holding ph2-adapt/ and isic2017-train/")
    ap.add_argument("--model", default=None, help="model file to score (default: the shipped model)")
    ap.add_argument("--devices", nargs="*", default=None, help="default: every available device")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="CPU thread counts to time; 0 = all cores, as the plugin uses (default: 0)")
    ap.add_argument("--isic-limit", type=int, default=None, help="score only the first N validation images")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--markdown", default=None, help="also write the tables to this markdown file")
    args = ap.parse_args()
    devices = args.devices or available_devices()
    model = load_model(args.model)
    env = environment(model)
    print("\n".join(env), flush=True)
    q = [] if args.skip_quality else quality(data_root(args.data), model, devices[0], args.isic_limit)
    s = [] if args.skip_speed else speed(model, devices, args.repeats, [t or None for t in (args.threads or [0])])
    m = [] if args.skip_memory else memory(devices)
    text = markdown(env, q, s, m)
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text + "\n")
        print(f"written to {args.markdown}")


if __name__ == "__main__":
    main()
