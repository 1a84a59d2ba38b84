"""Ruler finding on the ISIC 2017 training images: what :func:`napari_nevus_seg.find_ruler` reports on each,
and contact sheets to check it by eye.

    python benchmarks/ruler_isic.py scan [--ids LABELS.csv] [--data DIR] [--out F.json]
    python benchmarks/ruler_isic.py sheets F.json --ids A,B,... --out DIR    # the lines found, to look at
    python benchmarks/ruler_isic.py score F.json LABELS.csv                  # tally against the looks

``scan`` runs the finder (regularity threshold 0, so every answer and its regularity is kept) on every
image, or on those of a labels CSV, and writes one JSON record per image. ``sheets`` crops each image
around the line found and draws a pair of dots either side of every tick it predicts, to be looked at.
``score`` reads the looks (``id,ruler,verdict``): ``ruler`` 1 where the image shows a ruler; ``verdict``
for the answer at the shipped threshold: ``mm`` (the dots sit on every millimetre tick: every tick of a
ruler of equal ticks, the tall ones of a half-millimetre ruler), ``half`` (on every tick of a
half-millimetre ruler), ``double`` (on every second tick), ``wrong`` (not on ticks) or ``none`` (no
answer). The labels of the figures in docs/measurements.md are in benchmarks/results/ruler_isic_*.csv.
The images stay in the data folder; sheets go to a folder outside the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from skimage import io

from napari_nevus_seg.measurements.ruler import MIN_REGULARITY, find_ruler

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2017-train"


def scan(data: Path, out: Path, ids: Path | None = None) -> None:
    records = []
    names = None if ids is None else {row["id"] for row in csv.DictReader(ids.open())}
    for path in sorted((data / "images").glob("*.jpg")):
        if names is not None and path.stem not in names:
            continue
        found = find_ruler(io.imread(path), min_regularity=0.0)
        records.append({"id": path.stem, "found": None if found is None else {
            "start": found.start, "end": found.end, "spacings": found.spacings, "spacing_px": found.spacing_px,
            "angle_deg": found.angle_deg, "regularity": found.regularity}})
    out.write_text(json.dumps(records))
    print(f"{len(records)} images, {sum(r['found'] is not None for r in records)} with a candidate -> {out}")


def sheets(results: Path, ids: list[str], data: Path, out: Path, per_sheet: int = 6, size: int = 560) -> None:
    """Contact sheets of the found lines: each image cropped around its line and enlarged, with a dot
    pair either side of every tick the finder predicts (magenta every fifth), the tick itself between."""
    found = {r["id"]: r["found"] for r in json.loads(results.read_text())}
    out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for name in ids:
        image = io.imread(data / "images" / f"{name}.jpg")[..., :3]
        f = found.get(name)
        tiles.append(_crop_with_ticks(image, f, size) if f else _pad(image, size, size))
    for i in range(0, len(tiles), per_sheet):
        group = tiles[i:i + per_sheet]
        group += [np.zeros_like(tiles[0])] * (-len(group) % 3)
        rows = [np.concatenate(group[j:j + 3], 1) for j in range(0, len(group), 3)]
        io.imsave(out / f"sheet_{i // per_sheet:02d}.png", np.concatenate(rows, 0), check_contrast=False)
        (out / f"sheet_{i // per_sheet:02d}.txt").write_text("\n".join(ids[i:i + per_sheet]) + "\n")
    print(f"{len(tiles)} images on {-(-len(tiles) // per_sheet)} sheets in {out}")


def _crop_with_ticks(image: np.ndarray, f: dict, size: int) -> np.ndarray:
    start, end = np.asarray(f["start"]), np.asarray(f["end"])
    lo = np.floor(np.minimum(start, end) - 20).astype(int).clip(0)
    hi = np.ceil(np.maximum(start, end) + 21).astype(int)
    crop = image[lo[0]:hi[0], lo[1]:hi[1]]
    zoom = max(1, int(size // max(crop.shape[:2])))
    big = np.repeat(np.repeat(crop, zoom, 0), zoom, 1).copy()
    step = (end - start) / max(1, f["spacings"])
    across = np.array([step[1], -step[0]]) / max(1e-9, np.hypot(*step))
    for k in range(f["spacings"] + 1):
        p = (start + step * k - lo) * zoom + (zoom - 1) / 2
        for side in (-1, 1):
            _dot(big, p + side * across * 9 * zoom / 2, (0, 255, 0) if k % 5 else (255, 0, 255), zoom)
    return _pad(big, size, size)


def score(results: Path, labels: Path) -> dict:
    """Tally the looks in ``labels`` for the answers in ``results`` at the shipped threshold."""
    found = {r["id"]: r["found"] for r in json.loads(results.read_text())}
    looks = list(csv.DictReader(labels.open()))
    answered = {r["id"] for r in looks
                if found.get(r["id"]) and found[r["id"]]["regularity"] >= MIN_REGULARITY}
    missing = [r["id"] for r in looks if (r["id"] in answered) != (r["verdict"] != "none")]
    if missing:
        raise SystemExit(f"the looks do not match these answers (scan again, or look again): {missing}")
    rulers = [r for r in looks if r["ruler"] == "1"]
    table = {"images": len(looks), "rulers": len(rulers),
             "answers_on_rulers": sum(r["id"] in answered for r in rulers),
             "answers_on_images_without": sum(r["id"] in answered for r in looks if r["ruler"] != "1")}
    for verdict in ("mm", "half", "double", "wrong"):
        table[verdict] = sum(r["verdict"] == verdict for r in looks)
    print(json.dumps(table, indent=1))
    return table


def _dot(image: np.ndarray, p: np.ndarray, colour, radius: int = 1) -> None:
    r, c = int(np.rint(p[0])), int(np.rint(p[1]))
    if not (0 <= r < image.shape[0] and 0 <= c < image.shape[1]):
        return
    image[max(0, r - radius):r + radius + 1, max(0, c - radius):c + radius + 1] = colour


def _pad(tile: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w, 3), np.uint8)
    out[:min(h, tile.shape[0]), :min(w, tile.shape[1])] = tile[:h, :w]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("scan")
    p.add_argument("--ids", type=Path, help="a labels CSV: scan only its images")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ruler_isic_scan.json"))
    p = sub.add_parser("sheets")
    p.add_argument("results", type=Path)
    p.add_argument("--ids", required=True)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=Path("/tmp/ruler-sheets"))
    p = sub.add_parser("score")
    p.add_argument("results", type=Path)
    p.add_argument("labels", type=Path)
    args = parser.parse_args(argv)
    if args.what == "scan":
        scan(args.data, args.out, args.ids)
    elif args.what == "sheets":
        sheets(args.results, args.ids.split(","), args.data, args.out)
    else:
        score(args.results, args.labels)


if __name__ == "__main__":
    main()
