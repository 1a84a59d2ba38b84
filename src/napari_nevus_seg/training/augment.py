"""Batch augmentation for dermoscopy, on tensors (fast on CPU and GPU).

Geometric: horizontal/vertical flips, 90-degree turns, free rotation, scale and shift (one affine
warp per image, applied identically to image and mask). Photometric: brightness, contrast, saturation,
per-channel gain (white balance of another dermoscope), gamma, Gaussian blur, cartoon-like flattening
(blur + posterise). Optional hair-like dark curves, a dark, noisy round dermoscope field of view
(vignette), skin-marker rings drawn around the lesion and coloured stickers at the frame. Dermoscopy has no "up", so every orientation is equally plausible. The zoom range
reaches 1.8x so that lesions filling most of the field (common at
the 20x magnification of some dermoscopes) are seen in training; ``fill_prob`` goes further and crops
some images inside their lesion, so that lesions larger than the field of view (no skin visible at
all) are seen too: the ISIC 2017 masks never cover more than 95 % of an image. ``skin_prob`` crops
some images to lesion-free skin (target: nothing), since every training image shows a lesion and the
network otherwise outlines something in any image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate: bool = True          # free rotation in [-180, 180) degrees (includes 90-degree turns)
    flip: bool = True
    scale: tuple[float, float] = (0.7, 1.8)     # zoom factor (>1 zooms in)
    shift: float = 0.1           # fraction of the image size
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    channel_gain: float = 0.1
    gamma: float = 0.2
    hair_prob: float = 0.2       # probability that an image gets 1-4 synthetic hairs
    blur_prob: float = 0.25      # probability of a Gaussian blur (soft focus, flat-looking lesions)
    flatten_prob: float = 0.15   # probability of a cartoon-like copy (blur + posterise: no texture, crisp edges)
    vignette_prob: float = 0.25  # probability of a dark circular dermoscope field of view (lesion cut off by it)
    fill_prob: float = 0.0       # probability of a crop inside the lesion (lesion larger than the field of view)
    ink_prob: float = 0.0        # probability of a skin-marker ring drawn around the lesion (not lesion)
    sticker_prob: float = 0.0    # probability of a flat coloured disc (label, ruler sticker) at the frame
    skin_prob: float = 0.0       # probability of a crop of lesion-free skin (target: no lesion at all)

    @classmethod
    def light(cls) -> "AugmentConfig":
        """Milder settings for fine-tuning on a handful of images."""
        return cls(scale=(0.85, 1.15), shift=0.05, brightness=0.1, contrast=0.1, saturation=0.1,
                   channel_gain=0.05, gamma=0.1, hair_prob=0.1, blur_prob=0.0, flatten_prob=0.0,
                   vignette_prob=0.0)


FILL_MIN_HALF = 0.4   # a fill crop spans at least 40 % of the image per side (at most 2.5x zoom)


def _quantile_span(profile: torch.Tensor, q: float) -> tuple[float, float]:
    """The [q, 1 - q] quantile span of a 1-D mass profile, in normalised [-1, 1] coordinates."""
    cdf = profile.cumsum(0) / profile.sum()
    lo = int(torch.searchsorted(cdf, torch.tensor([q], dtype=cdf.dtype))[0])
    hi = int(torch.searchsorted(cdf, torch.tensor([1 - q], dtype=cdf.dtype))[0])
    n = profile.numel()
    return (lo + 0.5) / n * 2 - 1, (hi + 0.5) / n * 2 - 1


def _fill_boxes(y: torch.Tensor, prob: float, g: torch.Generator) -> list[tuple[int, float, float, float, float]]:
    """(index, centre x, centre y, half width, half height) of the crops inside a lesion, in [-1, 1] units.

    An image is drawn with probability ``prob``; its box is the [q, 1 - q] quantile span (q in
    0.10-0.25) of its lesion pixels along each axis, so the crop lies almost entirely inside the lesion.
    Images whose box would be narrower than :data:`FILL_MIN_HALF` (small lesions: the crop would be a
    blur of a few pixels) keep the ordinary warp.
    """
    boxes = []
    drawn = torch.rand(y.shape[0], generator=g) < prob
    quantiles = 0.10 + 0.15 * torch.rand(y.shape[0], generator=g)
    for i in torch.nonzero(drawn).flatten().tolist():
        m = y[i, 0].float().cpu()
        if m.sum() < 1:
            continue
        x0, x1 = _quantile_span(m.sum(0), float(quantiles[i]))
        y0, y1 = _quantile_span(m.sum(1), float(quantiles[i]))
        hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
        if min(hx, hy) >= FILL_MIN_HALF:
            boxes.append((i, (x0 + x1) / 2, (y0 + y1) / 2, hx, hy))
    return boxes


SKIN_MIN_SIDE = 0.3   # a skin crop spans at least 30 % of the image side (at most 3.3x zoom)
SKIN_MARGIN = 0.03    # and keeps this far (fraction of the side) from the lesion


def _skin_boxes(y: torch.Tensor, prob: float, g: torch.Generator) -> list[tuple[int, float, float, float, float]]:
    """(index, centre x, centre y, half width, half height) of lesion-free square crops, in [-1, 1] units.

    An image is drawn with probability ``prob``; the candidates are the largest squares anchored at the
    four corners and the four edge midpoints that keep :data:`SKIN_MARGIN` away from the lesion; one of
    those spanning at least :data:`SKIN_MIN_SIDE` is picked at random (images whose lesion leaves no such
    square keep the ordinary warp).
    """
    boxes = []
    n, _, h, w = y.shape
    drawn = torch.rand(n, generator=g) < prob
    pick = torch.rand(n, generator=g)
    side = min(h, w)
    grow = max(1, round(SKIN_MARGIN * side))
    for i in torch.nonzero(drawn).flatten().tolist():
        m = (F.max_pool2d(y[i:i + 1].float().cpu(), 2 * grow + 1, stride=1, padding=grow)[0, 0] > 0.5).float()
        integral = F.pad(m.cumsum(0).cumsum(1), (1, 0, 1, 0))

        def free(r0: int, c0: int, s: int) -> bool:
            r1, c1 = r0 + s, c0 + s
            return float(integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) == 0.0

        found = []
        for ay, ax in ((0, 0), (0, 1), (1, 0), (1, 1), (0, 0.5), (1, 0.5), (0.5, 0), (0.5, 1)):
            lo, hi = 0, side            # largest free square at this anchor (free-ness shrinks with size)
            while lo < hi:
                s = (lo + hi + 1) // 2
                r0, c0 = round(ay * (h - s)), round(ax * (w - s))
                lo, hi = (s, hi) if free(r0, c0, s) else (lo, s - 1)
            if lo >= SKIN_MIN_SIDE * side:
                found.append((round(ay * (h - lo)), round(ax * (w - lo)), lo))
        if found:
            r0, c0, s = found[min(len(found) - 1, int(float(pick[i]) * len(found)))]
            boxes.append((i, (c0 + s / 2) / w * 2 - 1, (r0 + s / 2) / h * 2 - 1, s / w, s / h))
    return boxes


def _affine(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[0]
    dev = x.device
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.pi if cfg.rotate else torch.zeros(n)
    lo, hi = cfg.scale
    zoom = torch.exp(torch.empty(n).uniform_(math.log(lo), math.log(hi), generator=g))
    flip_x = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(n)
    tx, ty = ((torch.rand(2, n, generator=g) * 2 - 1) * cfg.shift * 2)
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([
        torch.stack([cos * flip_x, -sin, tx], dim=1),
        torch.stack([sin * flip_x, cos, ty], dim=1),
    ], dim=1)
    if cfg.fill_prob > 0:  # axis-aligned crops inside the lesion (flips still apply)
        for i, cx, cy, hx, hy in _fill_boxes(y, cfg.fill_prob, g):
            theta[i] = torch.tensor([[hx * float(flip_x[i]), 0.0, cx], [0.0, hy, cy]])
    if cfg.skin_prob > 0:  # crops of lesion-free skin (flips still apply)
        for i, cx, cy, hx, hy in _skin_boxes(y, cfg.skin_prob, g):
            theta[i] = torch.tensor([[hx * float(flip_x[i]), 0.0, cx], [0.0, hy, cy]])
    theta = theta.to(dev, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # reflection keeps the skin texture at the borders instead of black corners
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x, y


def _photometric(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]

    def u(amount: float, shape=(n, 1, 1, 1)) -> torch.Tensor:
        return (1 + (torch.rand(shape, generator=g) * 2 - 1) * amount).to(x.device, x.dtype)

    x = x * u(cfg.brightness)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(cfg.contrast) + mean
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * u(cfg.saturation) + gray
    x = x * u(cfg.channel_gain, (n, 3, 1, 1))
    x = x.clamp(0, 1) ** u(cfg.gamma)
    return x.clamp(0, 1)


def _blur(x: torch.Tensor, prob: float, g: torch.Generator, sigmas: tuple[float, float] = (0.5, 2.5)) -> torch.Tensor:
    """Gaussian blur (sigma in ``sigmas`` px) of some images: soft focus, and lesions without visible texture."""
    for i in range(x.shape[0]):
        if torch.rand(1, generator=g).item() >= prob:
            continue
        sigma = sigmas[0] + (sigmas[1] - sigmas[0]) * torch.rand(1, generator=g).item()
        k = torch.arange(-7, 8, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (k / sigma) ** 2)
        k = k / k.sum()
        img = x[i:i + 1]
        img = F.conv2d(F.pad(img, (7, 7, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        img = F.conv2d(F.pad(img, (0, 0, 7, 7), mode="reflect"), k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
        x[i] = img[0]
    return x


def _flatten(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Cartoon-like copies of some images: strong blur, then each channel posterised to 3-6 levels.

    Texture disappears and colour regions get crisp edges, so the network must also recognise a lesion by
    its colour and shape, not only by its texture (a shape-bias augmentation in the spirit of stylised
    training images). Without it, a network trained on real dermoscopy alone misses flat, sharply drawn
    lesions.
    """
    chosen = torch.rand(x.shape[0], generator=g) < prob
    if not chosen.any():
        return x
    idx = chosen.nonzero()[:, 0]
    flat = _blur(x[idx].clone(), 1.0, g, sigmas=(1.5, 3.5))
    levels = torch.randint(3, 7, (len(idx), 1, 1, 1), generator=g).to(x.device, x.dtype)
    x = x.clone()
    x[idx] = torch.round(flat * levels) / levels
    return x


def _unit_grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates spanning [-1, 1] over an (h, w) image."""
    return torch.meshgrid(torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device),
                          indexing="ij")


def _drawn(n: int, prob: float, g: torch.Generator):
    """Indices of the images (of ``n``) that get an augmentation of probability ``prob``, drawn lazily."""
    for i in range(n):
        if torch.rand(1, generator=g).item() < prob:
            yield i


def _hairs(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    yy, xx = _unit_grid(h, w, x.device)
    for i in _drawn(n, prob, g):
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            a, b, c, bend = (torch.rand(4, generator=g) * 2 - 1).tolist()
            # distance to a gently curved line a*x + b*y + c + bend*x^2 = 0
            d = (a * xx + b * yy + c + bend * 0.5 * xx * yy).abs() / math.hypot(a, b, 1e-3)
            width = 0.006 + 0.01 * torch.rand(1, generator=g).item()
            alpha = torch.clamp(1 - d / width, 0, 1) * 0.8
            x[i] = x[i] * (1 - alpha) + 0.08 * alpha
    return x


INK_COLOURS = ((0.30, 0.16, 0.38), (0.22, 0.20, 0.45), (0.15, 0.12, 0.15), (0.35, 0.12, 0.22))  # purple, blue, black, red-violet
STICKER_COLOURS = ((0.95, 0.85, 0.15), (0.95, 0.95, 0.92), (0.95, 0.55, 0.15), (0.35, 0.75, 0.35))


def _ink(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """A surgical skin-marker ring drawn around the lesion (a wobbly ellipse, sometimes an arc only).

    Clinicians circle lesions before excision; the ink is dark, purple or blue, textured, and must not
    be taken for lesion: the mask is left as it is.
    """
    n, _, h, w = x.shape
    yy, xx = _unit_grid(h, w, x.device)
    for i in _drawn(n, prob, g):
        cx, cy = ((torch.rand(2, generator=g) * 2 - 1) * 0.2).tolist()
        rx, ry = (0.45 + 0.45 * torch.rand(2, generator=g)).tolist()
        k, phase, wobble = int(torch.randint(2, 6, (1,), generator=g)), 6.28 * torch.rand(1, generator=g).item(), \
            0.12 * torch.rand(1, generator=g).item()
        theta = torch.atan2((yy - cy) / ry, (xx - cx) / rx)
        r = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        radius = 1 + wobble * torch.sin(k * theta + phase)
        width = 0.07 + 0.08 * torch.rand(1, generator=g).item()   # 2.5-7 % of the image side
        on = torch.clamp(1.5 - 1.5 * (r - radius).abs() / width, 0, 1)
        if torch.rand(1, generator=g).item() < 0.4:   # an open arc: part of the ring is missing
            start = 6.28 * torch.rand(1, generator=g).item() - 3.14
            on = on * (torch.remainder(theta - start, 6.28) < 3.5 + 2.5 * torch.rand(1, generator=g).item())
        texture = 0.6 + 0.4 * torch.rand((h, w), generator=g).to(x.device)
        alpha = (on * texture * (0.7 + 0.3 * torch.rand(1, generator=g).item())).clamp(0, 1)
        colour = torch.tensor(INK_COLOURS[int(torch.randint(len(INK_COLOURS), (1,), generator=g))],
                              device=x.device, dtype=x.dtype)[:, None, None]
        x[i] = x[i] * (1 - alpha) + colour * alpha
    return x


def _stickers(x: torch.Tensor, y: torch.Tensor, prob: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat coloured disc entering from the frame (a label or ruler sticker); the mask is cut there."""
    n, _, h, w = x.shape
    yy, xx = _unit_grid(h, w, x.device)
    for i in _drawn(n, prob, g):
        side = float(torch.randint(4, (1,), generator=g))
        along = (torch.rand(1, generator=g).item() * 2 - 1) * 0.8
        radius = 0.25 + 0.3 * torch.rand(1, generator=g).item()
        out = 1.0 + radius * (torch.rand(1, generator=g).item() * 0.8 - 0.4)   # centre near the frame
        cx, cy = [(out, along), (-out, along), (along, out), (along, -out)][int(side)]
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2).to(x.dtype)
        colour = torch.tensor(STICKER_COLOURS[int(torch.randint(len(STICKER_COLOURS), (1,), generator=g))],
                              device=x.device, dtype=x.dtype)[:, None, None]
        shade = 0.85 + 0.15 * torch.rand(1, generator=g).item()
        flat = colour * shade + 0.02 * torch.randn(x[i].shape, generator=g).to(x.device)
        x[i] = x[i] * (1 - inside) + flat.clamp(0, 1) * inside
        y[i] = y[i] * (1 - inside)
    return x, y


def _vignette(x: torch.Tensor, y: torch.Tensor, prob: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Darken everything outside a (slightly shifted) circle, as a dermoscope's round field of view does.

    The radius (0.85-1.35 half-sides) leaves the corners, and sometimes the sides, dark; the mask is cut
    at the same circle (an expert outline stops where the image goes black). This teaches the network
    that dark corners are not lesion, whatever their shape.
    """
    n, _, h, w = x.shape
    yy, xx = _unit_grid(h, w, x.device)
    for i in _drawn(n, prob, g):
        cx, cy = ((torch.rand(2, generator=g) * 2 - 1) * 0.1).tolist()
        radius = 0.85 + 0.5 * torch.rand(1, generator=g).item()
        soft = 0.02 + 0.08 * torch.rand(1, generator=g).item()
        level = 0.08 * torch.rand(1, generator=g).item()
        noise = 0.01 + 0.04 * torch.rand(1, generator=g).item()
        # near-black with sensor noise, never perfectly flat: flatness must not mean "outside the field"
        dark = (level + noise * torch.randn(x[i].shape, generator=g).to(x.device)).clamp(0, 1)
        r = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        inside = torch.clamp((radius - r) / soft + 0.5, 0, 1)
        x[i] = x[i] * inside + dark * (1 - inside)
        y[i] = y[i] * (inside > 0.5)
    return x, y


def augment_batch(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: ``x`` (N, 3, H, W) float in [0, 1], ``y`` (N, 1, H, W) float mask in {0, 1}.

    Returns new tensors; the mask stays aligned with the image and is re-binarised at 0.5.
    """
    cfg = cfg or AugmentConfig()
    g = generator or torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
    if cfg.flip:
        vflip = torch.rand(x.shape[0], generator=g) < 0.5
        if vflip.any():
            x = x.clone()
            y = y.clone()
            x[vflip] = x[vflip].flip(-2)
            y[vflip] = y[vflip].flip(-2)
    x, y = _affine(x, y, cfg, g)
    x = _photometric(x, cfg, g)
    if cfg.blur_prob > 0:
        x = _blur(x, cfg.blur_prob, g)
    if cfg.flatten_prob > 0:
        x = _flatten(x, cfg.flatten_prob, g)
    if cfg.hair_prob > 0:
        x = _hairs(x, cfg.hair_prob, g)
    if cfg.ink_prob > 0:
        x = _ink(x, cfg.ink_prob, g)
    if cfg.sticker_prob > 0:
        x, y = _stickers(x, y, cfg.sticker_prob, g)
    if cfg.vignette_prob > 0:
        x, y = _vignette(x, y, cfg.vignette_prob, g)
    return x, (y > 0.5).to(x.dtype)
