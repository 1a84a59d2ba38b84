"""Speed of :func:`napari_nevus_seg.measure` on synthetic images with 1, 10 and 100 lesions, and one large
lesion in a 6000 x 4000 image.

Prints, for each case, the image size, the lesions' mean area, and the time for the full measurement
(with the image: colours and border abruptness included) and for the shape-only measurement (no
image), as the median of ``--repeat`` runs. Run::

    python benchmarks/bench_measure.py [--repeat 3] [--size 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_nevus_seg import measure, synthetic_lesion_image


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="side of the square image for 10 and 100 lesions")
    args = ap.parse_args(argv)
    cases = [(1, (576, 768)), (10, (args.size, args.size)), (100, (2 * args.size, 2 * args.size)),
             (1, (4000, 6000))]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(f"{'lesions':>7s} {'image':>11s} {'mean area px':>13s} {'full ms':>9s} {'ms/lesion':>10s} "
          f"{'shape-only ms':>14s}")
    for n, shape in cases:
        case = synthetic_lesion_image(seed=1, shape=shape, n_lesions=n, pixel_size_mm=0.02)
        labels, image = case.labels, case.image
        measure(labels[:64, :64], image[:64, :64])  # warm-up (imports)
        full = timed(lambda lab=labels, img=image: measure(lab, img, 0.02), args.repeat)
        shape_only = timed(lambda lab=labels: measure(lab, None, 0.02), args.repeat)
        area = np.bincount(labels.ravel())[1:].mean()
        print(f"{n:7d} {shape[1]:>5d}x{shape[0]:<5d} {area:13.0f} {full * 1e3:9.0f} {full * 1e3 / n:10.1f} "
              f"{shape_only * 1e3:14.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
