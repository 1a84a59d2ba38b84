"""From an RGB image to a lesion probability map and to instance labels.

The network sees the whole image resized to its input size (see :mod:`preprocess`); its probability
map is brought back to the image's own size by bilinear interpolation (smooth outlines), in horizontal
bands for very large images so that memory stays bounded. Post-processing: threshold, hole filling,
removal of specks, one label per connected lesion, optionally only the largest lesion.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from .devices import autocast_dtype, resolve_device, use_all_cpu_threads
from .model import LesionModel, load_checkpoint
from .preprocess import model_input, to_batch_tensor

DEFAULT_MODEL_FILE = "default.pt"
BAND_PIXELS = 4_000_000  # upsample the probability map in bands of about this many output pixels


# ---------------------------------------------------------------------------------------- models
def default_model_path() -> Path:
    """Path of the default model shipped inside the package."""
    return Path(str(resources.files("napari_nevus_seg") / "weights" / DEFAULT_MODEL_FILE))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> LesionModel:
    return load_checkpoint(path)


def load_model(path: str | os.PathLike | None = None) -> LesionModel:
    """Load the default model shipped with the package, or a saved model file (``.pt``).

    Files are read with ``torch.load(weights_only=True)``: a model file cannot run code.
    Raises :class:`~napari_nevus_seg.model.CheckpointError` for missing, corrupt or unsafe files.
    """
    p = Path(path) if path is not None else default_model_path()
    if path is None and not p.is_file():
        raise FileNotFoundError(f"the default model is missing from the installation ({p})")
    try:
        mtime = p.stat().st_mtime
    except OSError:
        mtime = 0.0
    return _load_cached(str(p.resolve()) if p.exists() else str(p), mtime)


def _resolve_model(model: LesionModel | str | os.PathLike | None) -> LesionModel:
    if isinstance(model, LesionModel):
        return model
    return load_model(model)


# ------------------------------------------------------------------------------------ prediction
def _forward(model: LesionModel, batch_u8: np.ndarray, dev: torch.device, tta: bool) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 1, S, S) probabilities (float32, on ``dev``)."""
    net = model.net
    if next(net.parameters()).device != dev:
        net.to(dev)
    net.eval()
    amp = autocast_dtype(dev)
    x = to_batch_tensor(batch_u8, model.preprocess["mean"], model.preprocess["std"], dev)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        if not tta:
            return torch.sigmoid(net(x).float())
        flips = [(), (-1,), (-2,), (-2, -1)]
        xs = torch.cat([x.flip(f) if f else x for f in flips])
        p = torch.sigmoid(net(xs).float()).split(x.shape[0])
        return sum(pi.flip(f) if f else pi for pi, f in zip(p, flips)) / len(flips)


def _upsample(prob_small: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(1, 1, s, s) -> (H, W) float32 numpy, bilinear, computed in row bands (bounded memory)."""
    h, w = shape
    out = np.empty((h, w), np.float32)
    s = prob_small.shape[-1]
    band = max(1, BAND_PIXELS // max(w, 1))
    src = prob_small.float().cpu()
    # interpolate columns once, then rows band by band (separable bilinear == full bilinear)
    cols = F.interpolate(src, size=(s, w), mode="bilinear", align_corners=False)
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        # source rows needed for output rows r0..r1 (half-pixel centres)
        y = (np.arange(r0, r1) + 0.5) * s / h - 0.5
        y = np.clip(y, 0, s - 1)
        y0 = np.floor(y).astype(np.int64)
        y1 = np.minimum(y0 + 1, s - 1)
        fy = torch.from_numpy((y - y0).astype(np.float32))[:, None]
        c = cols[0, 0]
        out[r0:r1] = (c[y0] * (1 - fy) + c[y1] * fy).numpy()
    return out


def _as_planes(img: np.ndarray) -> tuple[list[np.ndarray], bool]:
    arr = np.asarray(img)
    if arr.ndim == 4:
        return [arr[i] for i in range(arr.shape[0])], True
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return [arr], False
    raise ValueError(f"expected an RGB image (H, W, 3) or a stack (N, H, W, 3); got shape {arr.shape}. "
                     "Convert grayscale or RGBA with napari_nevus_seg.to_rgb_uint8().")


def predict_proba(img: np.ndarray, model: LesionModel | str | os.PathLike | None = None,
                  device: str | torch.device = "auto", tta: bool = False, batch_size: int = 8,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Lesion probability per pixel.

    ``img``: (H, W, 3) RGB (uint8, uint16 or float in [0, 1]) -> (H, W) float32 in [0, 1];
    a stack (N, H, W, 3) -> (N, H, W). ``model``: a loaded model, a file path, or None for the
    default model. ``device``: "auto" (CUDA, then MPS, then CPU), "cuda", "mps" or "cpu".
    ``tta``: average over horizontal and vertical flips. ``progress(done, total)`` is called per plane.
    """
    planes, stacked = _as_planes(img)
    m = _resolve_model(model)
    dev = resolve_device(device)
    if dev.type == "cpu":
        use_all_cpu_threads()
    size = m.input_size
    out = []
    for i in range(0, len(planes), batch_size):
        chunk = planes[i:i + batch_size]
        batch = np.stack([model_input(p, size) for p in chunk])
        probs = _forward(m, batch, dev, tta)
        for p, pr in zip(chunk, probs):
            out.append(_upsample(pr[None], p.shape[:2]))
            if progress:
                progress(len(out), len(planes))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return np.stack(out) if stacked else out[0]


# ------------------------------------------------------------------------------- post-processing
def default_min_size(shape: tuple[int, int]) -> int:
    """Default smallest lesion kept: 0.1 % of the image area (at least 16 pixels)."""
    return max(16, int(0.001 * shape[0] * shape[1]))


def postprocess(prob: np.ndarray, threshold: float = 0.5, min_size: int | None = None,
                fill_holes: bool = True, largest_only: bool = False) -> np.ndarray:
    """(H, W) probabilities -> (H, W) int32 labels: 0 background, 1..N one per lesion.

    Lesions are numbered by decreasing area (label 1 is the largest). ``min_size`` in pixels
    (default :func:`default_min_size`); specks smaller than that are removed.
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"expected a 2-D probability map, got shape {prob.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    mask = prob > threshold
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    lab, n = ndi.label(mask)
    if n == 0:
        return lab.astype(np.int32, copy=False)
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    areas[0] = 0
    min_size = default_min_size(prob.shape) if min_size is None else int(min_size)
    order = np.argsort(-areas[1:], kind="stable") + 1
    keep = [k for k in order if areas[k] >= min_size]
    if largest_only:
        keep = keep[:1]
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return remap[lab]


def segment(img: np.ndarray, model: LesionModel | str | os.PathLike | None = None,
            device: str | torch.device = "auto", threshold: float = 0.5, tta: bool = False,
            min_size: int | None = None, largest_only: bool = False, fill_holes: bool = True,
            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Segment lesions: (H, W, 3) RGB -> (H, W) int32 labels (0 background, 1..N lesions by area).

    A stack (N, H, W, 3) gives (N, H, W), each plane labelled on its own. See :func:`predict_proba`
    for ``model``, ``device`` and ``tta`` and :func:`postprocess` for the rest.
    """
    planes, stacked = _as_planes(img)
    labels = []
    for i, p in enumerate(planes):
        prob = predict_proba(p, model=model, device=device, tta=tta)
        labels.append(postprocess(prob, threshold, min_size, fill_holes, largest_only))
        del prob
        if progress:
            progress(i + 1, len(planes))
    return np.stack(labels) if stacked else labels[0]
