"""Time :func:`napari_nevus_seg.find_ruler` on synthetic photographs with a drawn ruler (nothing else running).

    python benchmarks/ruler_speed.py

Prints, per image size, the best of three runs and the spacing found against the one drawn.
"""

from __future__ import annotations

import time

from napari_nevus_seg import find_ruler, synthetic_lesion_image
from napari_nevus_seg.io.synthetic_ruler import draw_ruler

CASES = (((256, 341), 16.0), ((576, 768), 50.0), ((3000, 4000), 150.0))


def main() -> None:
    for shape, spacing in CASES:
        image = draw_ruler(synthetic_lesion_image(seed=2, shape=shape).image, start=(shape[0] * 0.9, shape[1] * 0.1),
                           spacing_px=spacing, ticks=int(shape[1] * 0.7 / spacing))
        find_ruler(image)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            found = find_ruler(image)
            times.append(time.perf_counter() - t0)
        print(f"{shape[1]}x{shape[0]}: {min(times) * 1000:.0f} ms, spacing {found.spacing_px:.3f} px (drawn {spacing})")


if __name__ == "__main__":
    main()
