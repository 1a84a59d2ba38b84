"""Procedurally generated dermoscopy-like images with exact lesion masks.

Used for the sample data, the tests and the demos, so that nothing depends on real data-set images.
Everything is deterministic given ``seed`` and vectorised (a 512x384 image takes a few tens of ms).

What an image contains:

- a skin-toned background with low-frequency blotches and fine grain;
- one or more pigmented lesions with irregular borders (a radius perturbed by a few random Fourier
  terms) that never overlap, each painted with several of the six dermoscopic colours of the ABCD rule
  (:data:`DERMOSCOPIC_COLOURS`), every colour region covering at least ~10 % of its lesion;
- hairs: thin dark curves drawn over skin and lesions alike (the labels ignore them, as an expert would);
- the dark circular vignette of a contact dermoscope in the corners.

``look`` imitates another dermoscope: ``"bluish"`` shifts the colour balance towards blue,
``"dim"`` lowers brightness and contrast. The labels are the same for every look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

# Reference RGB used to paint each dermoscopic colour (names as in Stolz's ABCD rule). They are
# realistic tones chosen so that each is nearest to its own entry of the normalised-RGB references of
# Kasmi & Mokrani (2016): white (1,1,1), red (.8,.2,.2), light brown (.6,.4,0), dark brown (.2,0,0),
# blue-gray (.2,.6,.6), black (0,0,0).
DERMOSCOPIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (232, 226, 220),
    "red": (200, 62, 60),
    "light_brown": (162, 106, 44),
    "dark_brown": (92, 48, 28),
    "blue_gray": (92, 122, 138),
    "black": (28, 22, 22),
}
LOOKS = ("dermoscopy", "bluish", "dim")
_SKIN = np.array([214.0, 166.0, 142.0], np.float32)
_HAIR = np.array([38.0, 28.0, 24.0], np.float32)
# default colour choice: browns are common, the others rarer (white and red would lighten the lesion)
_WEIGHTS = {"light_brown": 0.9, "dark_brown": 0.8, "black": 0.35, "blue_gray": 0.35, "red": 0.15, "white": 0.1}


@dataclass
class SyntheticCase:
    """A synthetic dermoscopy image and its exact ground truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) int32, 0 background, lesions 1..n
    mask: np.ndarray  # (H, W) bool, labels > 0
    pixel_size_mm: float | None = None
    colours: list[list[str]] = field(default_factory=list)  # per lesion, the colour names painted


# ----------------------------------------------------------------------------------- helpers
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Bilinearly interpolated random grid in [-1, 1]: cheap low-frequency noise."""
    h, w = shape
    gh = max(2, int(round(cells * h / max(h, w))) + 1)
    gw = max(2, int(round(cells * w / max(h, w))) + 1)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    y = np.linspace(0, gh - 1, h, dtype=np.float32)
    x = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(y.astype(int), gh - 2)
    x0 = np.minimum(x.astype(int), gw - 2)
    fy = (y - y0)[:, None]
    fx = (x - x0)[None, :]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx + g10 * fy * (1 - fx) + g11 * fy * fx)


def _normalise_colours(colours, n: int) -> list[list[str]] | None:
    if colours is None:
        return None
    colours = list(colours)
    if colours and all(isinstance(c, str) for c in colours):
        per = [list(colours)] * n
    else:
        per = [list(c) for c in colours]
        if len(per) != n:
            raise ValueError(f"colours gives {len(per)} lists but n_lesions={n}")
    for names in per:
        if not names:
            raise ValueError("each lesion needs at least one colour")
        bad = [c for c in names if c not in DERMOSCOPIC_COLOURS]
        if bad:
            raise ValueError(f"unknown dermoscopic colour(s) {bad}; choose from {sorted(DERMOSCOPIC_COLOURS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"repeated colour in {names}")
    return per


def _pick_colours(rng: np.random.Generator) -> list[str]:
    k = int(rng.integers(2, 5))
    names = list(_WEIGHTS)
    p = np.array([_WEIGHTS[c] for c in names])
    chosen = list(rng.choice(names, size=k, replace=False, p=p / p.sum()))
    if not {"light_brown", "dark_brown"} & set(chosen):
        chosen[0] = "light_brown"
    return [str(c) for c in chosen]


def _place_lesions(rng, shape, n, radius_range, circle_r):
    """Centres and base radii of ``n`` lesions that do not overlap and stay inside the scope circle."""
    h, w = shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    placed: list[tuple[float, float, float]] = []
    r_lo, r_hi = radius_range
    for _ in range(n):
        for attempt in range(400):
            shrink = 0.85 ** (attempt // 50)  # make room if the image is crowded
            r = rng.uniform(r_lo, r_hi) * shrink
            reach = r * 1.45  # the outline stays within 1.4 * base radius
            y = rng.uniform(reach, h - reach) if h > 2 * reach else cy
            x = rng.uniform(reach, w - reach) if w > 2 * reach else cx
            if np.hypot(y - cy, x - cx) + reach > circle_r * 0.97:
                continue
            if all(np.hypot(y - py, x - px) > reach + pr * 1.45 + 4 for py, px, pr in placed):
                placed.append((y, x, r))
                break
        else:
            raise ValueError(f"cannot fit {n} non-overlapping lesions in a {w}x{h} image; "
                             "use a larger shape or fewer lesions")
    return placed


def _paint_lesion(rng, img, labels, label, centre, base_r, names, fine):
    """Draw one lesion into ``img``/``labels`` (in place) and return the colour names present."""
    h, w = labels.shape
    cy, cx = centre
    reach = int(np.ceil(base_r * 1.45)) + 3
    y0, y1 = max(0, int(cy) - reach), min(h, int(cy) + reach + 1)
    x0, x1 = max(0, int(cx) - reach), min(w, int(cx) + reach + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    dist = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    # irregular border: r(theta) = R (1 + sum_k a_k cos(k theta + phi_k)); |sum| <= 0.38
    ks = np.arange(2, 9)
    amps = rng.uniform(0.3, 1.0, ks.size) / ks
    amps *= rng.uniform(0.15, 0.38) / amps.sum()
    phases = rng.uniform(0, 2 * np.pi, ks.size)
    squash = rng.uniform(0.75, 1.0)  # a little elongated
    rot = rng.uniform(0, np.pi)
    pert = (amps[:, None, None] * np.cos(ks[:, None, None] * theta[None] + phases[:, None, None])).sum(0)
    ellipse = 1 / np.sqrt(np.cos(theta - rot) ** 2 + (np.sin(theta - rot) / squash) ** 2)
    r_theta = base_r * (1 + pert) * ellipse * np.sqrt(squash)  # <= 1.38 * base_r
    rho = dist / r_theta
    inside = rho <= 1.0

    # colour regions: Voronoi cells of seeds spread over the lesion, with noise-warped distances
    n = len(names)
    ang0 = rng.uniform(0, 2 * np.pi)
    if n == 1:
        seeds = [(0.0, 0.0)]
    else:
        seeds = [(0.0, 0.0)] if n >= 4 else []  # one region in the middle, the others around it
        m = n - len(seeds)
        for i in range(m):
            a = ang0 + 2 * np.pi * i / m
            seeds.append((0.55 * np.sin(a), 0.55 * np.cos(a)))
    ny, nx = dy / r_theta, dx / r_theta  # position in the lesion's own unit disc
    warp = 0.3
    wy = ny + warp * (_smooth_noise(rng, inside.shape, 4) + 0.4 * _smooth_noise(rng, inside.shape, 11))
    wx = nx + warp * (_smooth_noise(rng, inside.shape, 4) + 0.4 * _smooth_noise(rng, inside.shape, 11))
    d2 = np.stack([(wy - sy) ** 2 + (wx - sx) ** 2 for sy, sx in seeds])
    region = d2.argmin(0)
    # soft transitions between colour regions (a softmax over the warped distances)
    weights = np.exp(-(d2 - d2.min(0)) / 0.015)
    weights /= weights.sum(0)
    palette = np.array([DERMOSCOPIC_COLOURS[c] for c in names], np.float32)
    colour = np.einsum("khw,kc->hwc", weights, palette)
    # texture: a faint pigment network and mottling, modulating brightness by a few percent
    period = rng.uniform(5, 9)
    net = np.abs(np.sin(yy * np.pi / period + 0.7 * np.sin(xx / 13))) * np.abs(np.sin(xx * np.pi / period))
    shade = 1.0 + 0.05 * _smooth_noise(rng, inside.shape, 9) - 0.07 * (net > 0.8) + 0.03 * fine[y0:y1, x0:x1]
    colour = colour * shade[..., None]
    # soft edge over ~2 px (labels stay exact: rho <= 1)
    alpha = np.clip((r_theta - dist) / 2.0 + 0.5, 0, 1)[..., None]
    patch = img[y0:y1, x0:x1]
    patch[:] = patch * (1 - alpha) + colour * alpha
    labels[y0:y1, x0:x1][inside] = label
    counts = np.bincount(region[inside], minlength=n)
    total = max(int(inside.sum()), 1)
    return [c for c, k in zip(names, counts) if k / total >= 0.05]


def _draw_hairs(rng, img, n_hairs):
    """Thin dark quadratic Bezier curves over the whole image (in place)."""
    h, w = img.shape[:2]
    t = np.linspace(0, 1, int(2.5 * (h + w)), dtype=np.float32)[:, None]
    cover = np.zeros((h, w), np.float32)
    for _ in range(n_hairs):
        p0 = rng.uniform([-0.1 * h, -0.1 * w], [1.1 * h, 1.1 * w])
        direction = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 0.9) * max(h, w)
        p2 = p0 + length * np.array([np.sin(direction), np.cos(direction)])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * length, 2)
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        width = rng.choice([1, 1, 2])
        strength = rng.uniform(0.6, 0.9)
        for oy in range(width):
            for ox in range(width):
                py = np.rint(pts[:, 0]).astype(int) + oy
                px = np.rint(pts[:, 1]).astype(int) + ox
                ok = (py >= 0) & (py < h) & (px >= 0) & (px < w)
                np.maximum.at(cover, (py[ok], px[ok]), strength)
    a = cover[..., None]
    img[:] = img * (1 - a) + _HAIR * a


def _apply_look(img: np.ndarray, look: str) -> np.ndarray:
    if look == "bluish":
        return img * np.array([0.84, 0.96, 1.12], np.float32) + np.array([0, 6, 22], np.float32)
    if look == "dim":
        mean = img.mean(axis=(0, 1), keepdims=True)
        return (mean + (img - mean) * 0.8) * 0.72
    return img


# ------------------------------------------------------------------------------------ public
def synthetic_lesion_image(seed: int = 0, shape: tuple[int, int] = (384, 512), n_lesions: int = 1,
                           look: str = "dermoscopy", pixel_size_mm: float | None = None, hair: bool = True,
                           colours: Sequence[str] | Sequence[Sequence[str]] | None = None) -> SyntheticCase:
    """Make a deterministic dermoscopy-like image with exact instance labels.

    Parameters
    ----------
    seed : the random seed; the same arguments always give the same image.
    shape : (height, width) in pixels, each at least 32.
    n_lesions : number of non-overlapping lesions (0 gives skin only). Lesions are smaller when there
        are several; a ``ValueError`` says so when they cannot fit.
    look : ``"dermoscopy"`` (default), ``"bluish"`` or ``"dim"`` (another dermoscope's colour balance,
        brightness and contrast).
    pixel_size_mm : stored in the result (and used by the sample data as the layer scale); it does
        not change the drawing.
    hair : draw a few hairs over the image.
    colours : dermoscopic colour names to paint (keys of :data:`DERMOSCOPIC_COLOURS`), either one list
        for every lesion or one list per lesion; by default 2-4 colours are chosen per lesion.

    Returns
    -------
    SyntheticCase with ``image`` (H, W, 3) uint8, ``labels`` (H, W) int32 numbered 1..n in placement
    order, ``mask`` (labels > 0), ``pixel_size_mm`` and ``colours`` (per lesion, names covering at
    least 5 % of it).
    """
    h, w = (int(shape[0]), int(shape[1]))
    if h < 32 or w < 32:
        raise ValueError(f"shape {shape} is too small; each side must be at least 32 pixels")
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; choose one of {LOOKS}")
    if n_lesions < 0:
        raise ValueError("n_lesions must be >= 0")
    per_lesion = _normalise_colours(colours, n_lesions)
    rng = np.random.default_rng(seed)

    # skin: base tone, blotches and grain
    skin = _SKIN * rng.uniform(0.9, 1.05, 3).astype(np.float32)
    fine = rng.standard_normal((h, w)).astype(np.float32)
    blotch = _smooth_noise(rng, (h, w), 6)
    img = skin * (1 + 0.05 * blotch + 0.02 * fine)[..., None]

    # dermoscope field of view: a circle slightly smaller than the diagonal, so corners go dark
    cy, cx = (h - 1) / 2, (w - 1) / 2
    circle_r = 0.5 * np.hypot(h, w) * rng.uniform(0.86, 0.93)
    labels = np.zeros((h, w), np.int32)
    painted: list[list[str]] = []
    if n_lesions:
        scale = min(h, w) / np.sqrt(n_lesions)
        centres = _place_lesions(rng, (h, w), n_lesions, (0.2 * scale, 0.3 * scale), circle_r)
        for i, (ly, lx, r) in enumerate(centres):
            names = per_lesion[i] if per_lesion else _pick_colours(rng)
            painted.append(_paint_lesion(rng, img, labels, i + 1, (ly, lx), r, names, fine))
    if hair:
        _draw_hairs(rng, img, int(rng.integers(3, 9)))
    img = _apply_look(img, look)
    yy, xx = np.ogrid[:h, :w]
    d = np.hypot(yy - cy, xx - cx).astype(np.float32) / circle_r
    light = (1 - 0.18 * d ** 2) * np.clip((1 - d) / 0.03, 0, 1)  # fall-off, then the dark rim
    img = img * light[..., None] + 8 * (1 - np.clip((1 - d) / 0.03, 0, 1))[..., None]
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return SyntheticCase(image=image, labels=labels, mask=labels > 0, pixel_size_mm=pixel_size_mm, colours=painted)


# ------------------------------------------------------------------------------ test fixtures
DATASET_LAYOUTS = ("ph2", "isic_flat", "isic_folders", "images_masks")


def dataset_folder(root: str | os.PathLike, layout: str = "images_masks", n: int = 3, seed: int = 0,
                   shape: tuple[int, int] = (96, 128)) -> list:
    """Write a small data-set tree of synthetic cases in one of the supported layouts (for tests).

    Layouts:

    - ``"ph2"``: ``root/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` and
      ``IMDxxx_lesion/IMDxxx_lesion.bmp`` (1-bit mask), as distributed;
    - ``"isic_flat"``: ``root/ISIC_xxxxxxx.jpg`` with ``ISIC_xxxxxxx_segmentation.png`` in the same
      folder (every other case uses ``_Segmentation.png``, as in ISIC 2016);
    - ``"isic_folders"``: ``root/ISIC-2017_Training_Data/ISIC_xxxxxxx.jpg`` with
      ``root/ISIC-2017_Training_Part1_GroundTruth/ISIC_xxxxxxx_segmentation.png``;
    - ``"images_masks"``: ``root/images/case_xxx.png`` with ``root/masks/case_xxx.png`` (0/255).

    Returns the list of :class:`napari_nevus_seg.io.datasets.Case` written, in name order.
    """
    from PIL import Image

    from napari_nevus_seg.io.datasets import Case

    if layout not in DATASET_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {DATASET_LAYOUTS}")
    root = Path(root)
    cases = []
    for i in range(n):
        sc = synthetic_lesion_image(seed=seed + i, shape=shape, n_lesions=1)
        rgb = Image.fromarray(sc.image)
        mask255 = Image.fromarray((sc.mask * 255).astype(np.uint8))
        if layout == "ph2":
            name = f"IMD{i + 1:03d}"
            case = root / "PH2 Dataset images" / name
            img_p = case / f"{name}_Dermoscopic_Image" / f"{name}.bmp"
            mask_p = case / f"{name}_lesion" / f"{name}_lesion.bmp"
            mask_img = Image.fromarray(sc.mask)  # mode "1", like the real PH2 masks
        elif layout.startswith("isic"):
            name = f"ISIC_{i:07d}"
            suffix = "_segmentation" if i % 2 == 0 else "_Segmentation"
            if layout == "isic_flat":
                img_p, mask_p = root / f"{name}.jpg", root / f"{name}{suffix}.png"
            else:
                img_p = root / "ISIC-2017_Training_Data" / f"{name}.jpg"
                mask_p = root / "ISIC-2017_Training_Part1_GroundTruth" / f"{name}_segmentation.png"
            mask_img = mask255
        else:
            name = f"case_{i:03d}"
            img_p, mask_p = root / "images" / f"{name}.png", root / "masks" / f"{name}.png"
            mask_img = mask255
        img_p.parent.mkdir(parents=True, exist_ok=True)
        mask_p.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(img_p, quality=95) if img_p.suffix == ".jpg" else rgb.save(img_p)
        mask_img.save(mask_p)
        cases.append(Case(name, img_p, mask_p))
    return sorted(cases, key=lambda c: c.name)
