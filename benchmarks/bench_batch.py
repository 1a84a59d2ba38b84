"""Batch throughput (images per second) and peak memory of ``nevus-seg segment``.

Writes N synthetic 768x576 JPEG images, then segments them (labels written to disk) with:

- a naive loop (read, segment, write, one after the other) as the reference;
- the in-process pipeline of :func:`napari_nevus_seg.segment_folder` (reader threads, inference,
  writer thread), with the outline refinement in the calling thread and in worker processes
  (``refine_workers``; their start-up, about 2 s, is inside the time: it is paid on every run);
- a local Dask cluster of 1 and 2 worker processes (``--workers``), started and warmed up first;
  cluster start-up is reported apart from the steady throughput.

With ``--huge`` it also runs the ``nevus-seg`` command on a 6000x4000 image in a child process and
reports the child's peak resident memory (``getrusage``), with and without ``--measure``.

    python benchmarks/bench_batch.py [--n 40] [--rounds 2] [--workers 1 2] [--huge] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import napari_nevus_seg as nseg  # lazy: PyTorch is imported on first use, not when worker processes

                                  # (refinement, spawned) import this file as their main module


def make_images(folder: Path, n: int, shape=(576, 768)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = nseg.synthetic_lesion_image(seed=i, shape=shape, n_lesions=1 + i % 2).image
        Image.fromarray(img).save(folder / f"case_{i:04d}.jpg", quality=92)


def naive(src: Path, out: Path, device: str) -> float:
    from napari_nevus_seg.batch.work import write_output

    model = nseg.load_model()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for p in sorted(src.glob("*.jpg")):
        write_output(nseg.segment(nseg.read_image(p), model=model, device=device), out / f"{p.stem}.tif")
    return time.perf_counter() - t0


def pipeline(src: Path, out: Path, device: str, refine_workers: int, readers: int = 2) -> float:
    nseg.load_model()   # as in the other runs, the model is already loaded
    t0 = time.perf_counter()
    s = nseg.segment_folder(src, out, device=device, readers=readers, refine_workers=refine_workers)
    assert s.ok and s.done == len(list(src.glob("*.jpg"))), s.report()
    return time.perf_counter() - t0


def dask_run(src: Path, out: Path, warm: Path, workers: int, device: str, rounds: int) -> tuple[list[float], float]:
    from napari_nevus_seg.batch.cluster import open_client

    t0 = time.perf_counter()
    # the same local cluster as `nevus-seg segment --workers N` (each worker gets its share of the cores)
    with open_client(workers=workers) as client:
        # warm-up: every worker imports PyTorch and loads the model once
        nseg.segment_folder(warm, out / "_warm", client=client, device=device)
        startup = time.perf_counter() - t0
        times = []
        for r in range(rounds):
            t1 = time.perf_counter()
            s = nseg.segment_folder(src, out / f"r{r}", client=client, device=device)
            assert s.ok, s.report()
            times.append(time.perf_counter() - t1)
        return times, startup


def huge_rss(tmp: Path) -> list[tuple[str, float, float]]:
    """Peak RSS of `nevus-seg segment` on one 6000x4000 image, in a child process (MB, seconds)."""
    small = nseg.synthetic_lesion_image(seed=1, shape=(1000, 1500), n_lesions=2).image
    big = tmp / "huge"
    big.mkdir()
    Image.fromarray(small).resize((6000, 4000), Image.BILINEAR).save(big / "huge_6000x4000.jpg", quality=90)
    exe = shutil.which("nevus-seg") or str(Path(sys.executable).with_name("nevus-seg"))
    rows = []
    for label, extra in (("segment", []), ("segment --measure", ["--measure", str(tmp / "huge.csv")])):
        out = tmp / f"huge_out_{len(rows)}"
        code = ("import resource, subprocess, sys, time; t=time.perf_counter(); "
                "r=subprocess.run(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter()-t, r.returncode)")
        r = subprocess.run([sys.executable, "-c", code, exe, "segment", str(big), "--out", str(out), "-q", *extra],
                           capture_output=True, text=True)
        kb, secs, rc = r.stdout.split()[-3:]
        if rc != "0":
            raise RuntimeError(r.stdout + r.stderr)
        rows.append((label, int(kb) / 1024, float(secs)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--refine-workers", type=int, nargs="*", default=None,
                    help="refinement processes of the in-process pipeline to time (default: 0 and the automatic choice)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=2, help="repeat each mode (alternating) and keep the best")
    ap.add_argument("--huge", action="store_true", help="also measure peak memory on a 6000x4000 image")
    args = ap.parse_args()
    import torch

    print(f"# nevus-seg batch benchmark: {args.n} synthetic 768x576 JPEG images, labels written as TIFF")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"device {args.device}, CUDA {'yes' if torch.cuda.is_available() else 'no'}; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        make_images(tmp / "in", args.n)
        make_images(tmp / "warm", 4, shape=(576, 768))
        times: dict[str, list[float]] = {}
        startups: dict[str, float] = {}
        from napari_nevus_seg.batch.refine_pool import auto_refine_workers

        ks = args.refine_workers if args.refine_workers is not None else \
            sorted({0, auto_refine_workers(10**6, args.device)})
        pipes = {k: f"in-process pipeline, {k} refinement process{'es' if k != 1 else ''}" for k in ks}
        naive_name = "naive loop (read, segment, write)"
        for r in range(args.rounds):   # alternate the modes: the load of a shared machine drifts
            times.setdefault(naive_name, []).append(naive(tmp / "in", tmp / f"out_naive{r}", args.device))
            for k, name in pipes.items():
                times.setdefault(name, []).append(pipeline(tmp / "in", tmp / f"out_pipe{k}_{r}", args.device, k))
        for w in args.workers:
            try:
                ts, startup = dask_run(tmp / "in", tmp / f"out_dask{w}", tmp / "warm", w, args.device, args.rounds)
            except ImportError:
                print("# dask.distributed is not installed: skipping the cluster runs")
                break
            name = f"Dask LocalCluster, {w} worker process{'es' if w > 1 else ''}"
            times[name], startups[name] = ts, startup
        rows = [(name, min(ts), max(ts), startups.get(name)) for name, ts in times.items()]
        for f in (tmp / "out_naive0").glob("*.tif"):   # every mode wrote the same labels
            ref = np.asarray(Image.open(f))
            for other in [*[tmp / f"out_pipe{k}_0" for k in pipes], *[tmp / f"out_dask{w}" / "r0" for w in args.workers]]:
                if other.is_dir():
                    assert np.array_equal(ref, np.asarray(Image.open(other / f.name))), (f.name, other)
        print(f"\n{'mode (best of %d rounds)' % args.rounds:48s} {'seconds':>8s} {'images/s':>9s} {'worst s':>8s} "
              f"{'vs naive':>9s} {'start-up s':>11s}")
        base = rows[0][1]
        for name, best, worst, startup in rows:
            su = f"{startup:11.1f}" if startup is not None else f"{'-':>11s}"
            print(f"{name:48s} {best:8.1f} {args.n / best:9.2f} {worst:8.1f} {base / best:8.2f}x {su}")
        print(f"# load average at the end {os.getloadavg()[0]:.2f}")
        if args.huge:
            print("\n# peak resident memory of the whole `nevus-seg` process on a 6000x4000 JPEG")
            print(f"{'command':24s} {'peak RSS MB':>12s} {'seconds':>8s}")
            for label, mb, secs in huge_rss(tmp):
                print(f"{label:24s} {mb:12.0f} {secs:8.1f}")
    print(f"\n# this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
