"""Training and fine-tuning: data preparation, losses, the training loop, checkpoints and resume.

Images go through :mod:`napari_nevus_seg.preprocess` exactly as at inference (whole image resized to
the model's square input size), are kept in memory as uint8 tensors, and are augmented per batch
(:mod:`napari_nevus_seg.augment`). The loop reports progress through a callback, stops within one
batch when a cancel event is set, writes ``last.pt`` after every epoch (resume) and ``best.pt`` at the
best validation Dice.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.inference.preprocess import mask_input, model_input, normalise
from napari_nevus_seg.io.datasets import discover_cases
from napari_nevus_seg.io.images import read_image
from napari_nevus_seg.io.mask_files import read_mask
from napari_nevus_seg.model.devices import autocast_dtype, resolve_device, use_all_cpu_threads
from napari_nevus_seg.model.networks import LesionModel, model_from_checkpoint, read_checkpoint, save_checkpoint
from napari_nevus_seg.training.augment import AugmentConfig, augment_batch

ProgressCallback = Callable[[dict[str, Any]], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class TrainingCancelled(RuntimeError):
    """Raised when training or fine-tuning was cancelled. :func:`train` trains in place, so its model is left
    partly trained (with ``checkpoint_dir``, ``last.pt`` keeps the last whole epoch); :func:`fine_tune` trains
    a copy and leaves its base model unchanged."""


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    loss: str = "bce+dice"          # "bce", "dice" or "bce+dice"
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01      # cosine decay down to lr * min_lr_ratio
    steps_per_epoch: int | None = None  # default: one pass over the training images
    patience: int | None = None     # early stopping: epochs without a better validation Dice
    freeze_encoder: bool = False
    freeze_norm: bool = False       # keep normalisation statistics fixed (few-image fine-tuning)
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = asdict(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        aug = d.pop("augment", {}) or {}
        if "scale" in aug:
            aug["scale"] = tuple(aug["scale"])
        return cls(augment=AugmentConfig(**aug), **d)


@dataclass
class PairSet:
    """Training pairs at the model's input size: images (N, 3, S, S) uint8, masks (N, 1, S, S) uint8."""

    images: torch.Tensor
    masks: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: Sequence[int]) -> "PairSet":
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        return PairSet(self.images[idx_t], self.masks[idx_t], [self.names[i] for i in idx])


# ----------------------------------------------------------------------------------------- data
def _prepare_one(img: np.ndarray, mask: np.ndarray, size: int,
                 where: str = "pair") -> tuple[torch.Tensor, torch.Tensor]:
    img = np.asarray(img)
    m = lesion_mask(mask, img.shape[:2], where)   # (H, W, 3) colour masks too; ValueError naming ``where``
    try:
        x = torch.from_numpy(model_input(img, size).copy()).permute(2, 0, 1)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    y = torch.from_numpy(mask_input(m, size).copy())[None]
    return x, y


def describe_pair(i: int, images: Sequence, masks: Sequence, names: Sequence[str] | None = None) -> str:
    """How error messages name pair ``i``: by its files when the sequences know them (a ``paths``
    attribute, as lazy file-reading sequences have), else by its name, else by its number."""
    ipaths, mpaths = getattr(images, "paths", None), getattr(masks, "paths", None)
    if ipaths is not None and mpaths is not None and i < len(ipaths) and i < len(mpaths):
        return f"pair {i} (image {ipaths[i]}, mask {mpaths[i]})"
    if names is not None and i < len(names):
        return f"pair {i} ({names[i]!r})"
    return f"pair {i}"


def prepare_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], size: int,
                  names: Sequence[str] | None = None) -> PairSet:
    """Turn lists of (H, W, 3) images and (H, W) masks (bool or labels; non-zero is lesion) into a PairSet.

    A pair that does not fit (mask size, NaN mask) raises ``ValueError`` naming it (its files when the
    sequences have ``paths``, else its name).
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if len(images) == 0:
        raise ValueError("no training pairs given")
    xs, ys = zip(*(_prepare_one(images[i], masks[i], size, describe_pair(i, images, masks, names))
                   for i in range(len(images))))
    return PairSet(torch.stack(xs), torch.stack(ys), list(names or [f"pair{i}" for i in range(len(xs))]))


def load_pairs(root: str | os.PathLike, size: int, limit: int | None = None,
               progress: ProgressCallback | None = None, workers: int = 4) -> PairSet:
    """Read every image/mask pair of a data-set folder (any layout :func:`discover_cases` knows).

    A pair that cannot be used raises ``ValueError`` naming its image and mask files.
    """
    cases = [c for c in discover_cases(root) if c.mask is not None][:limit]
    if not cases:
        raise ValueError(f"{root}: no image/mask pairs found")

    def work(case):
        # read errors name their file already; a mask that does not fit its image names both
        return _prepare_one(read_image(case.image), read_mask(case.mask), size,
                            f"image {case.image}, mask {case.mask}")

    xs, ys = [], []
    with ThreadPoolExecutor(workers) as pool:
        for i, (x, y) in enumerate(pool.map(work, cases)):
            xs.append(x)
            ys.append(y)
            if progress and (i % 100 == 0 or i == len(cases) - 1):
                progress({"stage": "load", "step": i + 1, "steps": len(cases)})
    return PairSet(torch.stack(xs), torch.stack(ys), [c.name for c in cases])


def split_pairs(pairs: PairSet, val_fraction: float = 0.1, seed: int = 0) -> tuple[PairSet, PairSet]:
    """Deterministic random split into (train, validation)."""
    n = len(pairs)
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 and n > 1 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return pairs.subset(sorted(order[n_val:])), pairs.subset(sorted(order[:n_val]))


# --------------------------------------------------------------------------------------- losses
def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    dims = (1, 2, 3)
    inter = (p * target).sum(dims)
    return (1 - (2 * inter + eps) / (p.sum(dims) + target.sum(dims) + eps)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce+dice") -> torch.Tensor:
    logits = logits.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "dice":
        return soft_dice_loss(logits, target)
    if kind == "bce+dice":
        return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)
    raise ValueError(f"unknown loss {kind!r}: use 'bce', 'dice' or 'bce+dice'")


# ----------------------------------------------------------------------------------- evaluation
def _batch_input(model: LesionModel, images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = images_u8.to(device, non_blocking=True).float() / 255.0
    x = normalise(x, model.preprocess["mean"], model.preprocess["std"])
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def evaluate(model: LesionModel, pairs: PairSet, device: str | torch.device = "auto", batch_size: int = 32,
             threshold: float = 0.5) -> dict[str, float]:
    """Mean per-image Dice and Jaccard at the model's input size (fast; used for model selection)."""
    dev = resolve_device(device)
    net = model.net.to(dev).eval()
    amp = autocast_dtype(dev)
    dices, jacs = [], []
    for i in range(0, len(pairs), batch_size):
        x = _batch_input(model, pairs.images[i:i + batch_size], dev)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(x)
        pred = torch.sigmoid(logits.float()) > threshold
        truth = pairs.masks[i:i + batch_size].to(dev) > 0
        tp = (pred & truth).sum((1, 2, 3)).float()
        fp = (pred & ~truth).sum((1, 2, 3)).float()
        fn = (~pred & truth).sum((1, 2, 3)).float()
        d = torch.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.ones_like(tp))
        j = torch.where(tp + fp + fn > 0, tp / (tp + fp + fn).clamp(min=1), torch.ones_like(tp))
        dices.append(d.cpu())
        jacs.append(j.cpu())
    if not dices:
        return {"dice": float("nan"), "jaccard": float("nan")}
    return {"dice": float(torch.cat(dices).mean()), "jaccard": float(torch.cat(jacs).mean())}


# --------------------------------------------------------------------------------------- training
_NORMS = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.InstanceNorm2d)


def _encoder_modules(model: LesionModel) -> list[torch.nn.Module]:
    """What ``freeze_encoder`` keeps fixed: the contracting path, and the U-Net's bottleneck."""
    net = model.net
    return [m for m in (getattr(net, "down", None) or getattr(net, "enc", None), getattr(net, "bottom", None))
            if m is not None]


def _encoder_parameters(model: LesionModel):
    return [p for m in _encoder_modules(model) for p in m.parameters()]


def _set_train_mode(model: LesionModel, cfg: TrainConfig) -> None:
    model.net.train()
    frozen = list(model.net.modules()) if cfg.freeze_norm else \
        [m for e in _encoder_modules(model) for m in e.modules()] if cfg.freeze_encoder else []
    for m in frozen:   # normalisation statistics of frozen parts are not updated either
        if isinstance(m, _NORMS):
            m.eval()


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


@dataclass
class TrainResult:
    model: LesionModel            # the best model (highest validation Dice; last epoch if no validation)
    history: list[dict[str, Any]]
    best_val: dict[str, float] | None
    seconds: float


def train(model: LesionModel, train_set: PairSet, val_set: PairSet | None = None,
          config: TrainConfig | None = None, device: str | torch.device = "auto",
          progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """Train ``model`` in place on ``train_set``; returns the best model by validation Dice.

    ``progress`` receives dicts with ``stage`` ("train" or "val"), ``epoch``, ``epochs``, ``step``,
    ``steps``, ``loss``, ``val_dice``, ``eta_s``. When ``cancel.is_set()`` becomes true, training stops
    within one batch and :class:`TrainingCancelled` is raised (``last.pt`` keeps the last whole epoch).
    With ``checkpoint_dir`` and ``resume=True``, training continues from ``checkpoint_dir/last.pt``.
    """
    cfg = config or TrainConfig()
    dev = resolve_device(device)
    if dev.type == "cpu":
        use_all_cpu_threads()
    amp = autocast_dtype(dev)
    size = model.input_size
    if train_set.images.shape[-1] != size:
        raise ValueError(f"training pairs are {train_set.images.shape[-1]} px but the model expects {size} px")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    net = model.net.to(dev).to(memory_format=torch.channels_last)
    if cfg.freeze_encoder:
        for p in _encoder_parameters(model):
            p.requires_grad_(False)
    try:   # a cancelled or failed run leaves the encoder trainable again, as it came
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(train_set)
        bs = min(cfg.batch_size, n)
        steps = cfg.steps_per_epoch or max(1, n // bs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
        scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
        history: list[dict[str, Any]] = []
        best: dict[str, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        start_epoch = 0
        if resume and ckpt_dir and (ckpt_dir / "last.pt").is_file():
            ck = read_checkpoint(ckpt_dir / "last.pt")
            try:
                net.load_state_dict(ck["state_dict"])
            except RuntimeError:
                raise ValueError(
                    f"{ckpt_dir / 'last.pt'} holds a {ck['arch']} {ck['config']} at {ck['preprocess'].get('size')} px, "
                    f"this run builds a {model.arch} {model.config} at {model.input_size} px: resume with the same "
                    "settings, or train in another checkpoint folder") from None
            st = ck["train_state"]
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            history = list(st["history"])
            best = st.get("best")
            start_epoch = int(st["epoch"]) + 1
            if best is not None and (ckpt_dir / "best.pt").is_file():  # (a best.pt of another run is no best of this one)
                best_state = read_checkpoint(ckpt_dir / "best.pt")["state_dict"]
            if progress:
                progress({"stage": "resume", "epoch": start_epoch, "epochs": cfg.epochs})
        t0 = time.perf_counter()
        step_times: list[float] = []
        # epochs since the best one (early stopping's count carries over a resume)
        bad_epochs = start_epoch - int(best["epoch"]) if best and start_epoch else 0
        for epoch in range(start_epoch, cfg.epochs):
            _set_train_mode(model, cfg)
            g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            order = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(steps * bs / n))])
            running = 0.0
            for step in range(steps):
                if cancel is not None and cancel.is_set():
                    raise TrainingCancelled(f"cancelled at epoch {epoch + 1}, step {step + 1}")
                ts = time.perf_counter()
                idx = order[step * bs:(step + 1) * bs]
                x = train_set.images[idx].to(dev).float() / 255.0
                y = train_set.masks[idx].to(dev).float()
                x, y = augment_batch(x, y, cfg.augment, g)
                x = normalise(x, model.preprocess["mean"], model.preprocess["std"]).contiguous(
                    memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    logits = net(x)
                loss = segmentation_loss(logits, y, cfg.loss)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                running += loss.item()
                step_times.append(time.perf_counter() - ts)
                if progress:
                    recent = step_times[-20:]
                    left = (cfg.epochs - epoch - 1) * steps + (steps - step - 1)
                    progress({"stage": "train", "epoch": epoch + 1, "epochs": cfg.epochs, "step": step + 1,
                              "steps": steps, "loss": running / (step + 1), "lr": sched.get_last_lr()[0],
                              "eta_s": left * sum(recent) / len(recent)})
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": running / steps,
                                      "seconds": time.perf_counter() - t0}
            if val_set is not None and len(val_set):
                scores = evaluate(model, val_set, dev)
                record.update({f"val_{k}": v for k, v in scores.items()})
                improved = best is None or scores["dice"] > best["dice"]
                if improved:
                    best = dict(scores, epoch=epoch + 1)
                    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                    bad_epochs = 0
                else:
                    bad_epochs += 1
            history.append(record)
            model.meta["history"] = history
            if progress:
                progress({"stage": "val", **record, "epochs": cfg.epochs, "best": best})
            if ckpt_dir:
                if best_state is not None and best and best.get("epoch") == epoch + 1:
                    model.meta["best_val"] = best
                    save_checkpoint(model, ckpt_dir / "best.pt")
                save_checkpoint(model, ckpt_dir / "last.pt", extra={"train_state": {
                    "epoch": epoch, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "history": history, "best": best, "config": cfg.to_dict()}})
            if cfg.patience is not None and bad_epochs >= cfg.patience:
                break
    finally:
        if cfg.freeze_encoder:
            for p in _encoder_parameters(model):
                p.requires_grad_(True)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    model.meta.update({"history": history, "best_val": best, "train_config": cfg.to_dict(),
                       "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "train_device": str(dev)})
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return TrainResult(model, history, best, time.perf_counter() - t0)


def init_from(source: LesionModel | str | os.PathLike) -> LesionModel:
    """A fresh copy of a model (from an object or a file) to train further without touching the original."""
    if isinstance(source, LesionModel):
        return model_from_checkpoint(source.to_checkpoint())
    return model_from_checkpoint(read_checkpoint(source))
