"""The training loop: :func:`train` (with checkpoints, resume, early stopping and cancel) and :func:`evaluate`.

::

    pairs = load_pairs("ISIC2017/", size=model.input_size)     # training.data
    train_set, val_set = split_pairs(pairs)
    result = train(model, train_set, val_set, TrainConfig(epochs=60), checkpoint_dir="runs/a")
    result.best_val                                              # {"dice": ..., "jaccard": ..., "epoch": ...}

Batches are augmented on the device (:mod:`napari_nevus_seg.training.augment`). The loop reports progress
through a callback, stops within one batch when a cancel event is set, writes ``last.pt`` after every epoch
(for a resume) and ``best.pt`` at the best validation Dice.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch

from napari_nevus_seg.inference.preprocess import normalise
from napari_nevus_seg.model.devices import autocast_dtype, resolve_device, use_all_cpu_threads
from napari_nevus_seg.model.networks import LesionModel, model_from_checkpoint, read_checkpoint, save_checkpoint
from napari_nevus_seg.training.augment import AugmentConfig, augment_batch
from napari_nevus_seg.training.data import CancelToken, PairSet, ProgressCallback
from napari_nevus_seg.training.losses import segmentation_loss


class TrainingCancelled(RuntimeError):
    """Raised when training or fine-tuning was cancelled. :func:`train` trains in place, so its model is left
    partly trained (with ``checkpoint_dir``, ``last.pt`` keeps the last whole epoch); :func:`fine_tune` trains
    a copy and leaves its base model unchanged."""


@dataclass
class TrainConfig:
    """The settings of a training run (stored in checkpoints with :meth:`to_dict`)."""

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
        """The settings as plain data (the augmentation settings nested)."""
        d = asdict(self)
        d["augment"] = asdict(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The settings from :meth:`to_dict`'s dictionary."""
        d = dict(d)
        aug = d.pop("augment", {}) or {}
        if "scale" in aug:
            aug["scale"] = tuple(aug["scale"])
        return cls(augment=AugmentConfig(**aug), **d)


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
    """What :func:`train` returns."""

    model: LesionModel            # the best model (highest validation Dice; last epoch if no validation)
    history: list[dict[str, Any]]
    best_val: dict[str, float] | None
    seconds: float


@dataclass
class _Run:
    """The state that the steps of one :func:`train` run share (and ``last.pt`` keeps for a resume)."""

    net: torch.nn.Module
    device: torch.device
    amp: torch.dtype | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    batch_size: int
    steps: int                    # optimiser steps per epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch: int = 0
    bad_epochs: int = 0           # epochs since the best one (early stopping)
    step_times: list[float] = field(default_factory=list)
    t0: float = 0.0


def train(model: LesionModel, train_set: PairSet, val_set: PairSet | None = None,
          config: TrainConfig | None = None, device: str | torch.device = "auto",
          progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """Train ``model`` in place on ``train_set``; returns the best model by validation Dice.

    Parameters
    ----------
    model : LesionModel
        Trained in place (a copy first with :func:`init_from` to keep the original).
    train_set, val_set : PairSet
        Pairs at the model's input size; without a validation set the last epoch is kept.
    config : TrainConfig, optional
        The run's settings (default ``TrainConfig()``).
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    progress : callable, optional
        Receives dicts with ``stage`` ("resume", "train" or "val"), ``epoch``, ``epochs``, ``step``,
        ``steps``, ``loss``, ``lr``, ``eta_s``; "val" also the validation scores (``val_dice``, ...) and
        ``best``.
    cancel : object with ``is_set()``, optional
        When it turns true, training stops within one batch and :class:`TrainingCancelled` is raised
        (``last.pt`` keeps the last whole epoch).
    checkpoint_dir : path, optional
        Where ``last.pt`` (every epoch) and ``best.pt`` (each better validation Dice) are written.
    resume : bool
        Continue from ``checkpoint_dir/last.pt`` when it exists.

    Returns
    -------
    TrainResult
    """
    cfg = config or TrainConfig()
    dev = resolve_device(device)
    if dev.type == "cpu":
        use_all_cpu_threads()
    size = model.input_size
    if train_set.images.shape[-1] != size:
        raise ValueError(f"training pairs are {train_set.images.shape[-1]} px but the model expects {size} px")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    with _frozen_encoder(model, cfg):   # a cancelled or failed run leaves the encoder trainable again
        run = _start_run(model, cfg, len(train_set), dev)
        if resume and ckpt_dir and (ckpt_dir / "last.pt").is_file():
            _resume_state(run, model, ckpt_dir, cfg, progress)
        run.t0 = time.perf_counter()
        earlier = float(run.history[-1].get("seconds", 0.0)) if run.history else 0.0   # training time before a resume
        for epoch in range(run.start_epoch, cfg.epochs):
            loss = _train_epoch(run, model, train_set, cfg, epoch, progress, cancel)
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": loss,
                                      "seconds": earlier + time.perf_counter() - run.t0}
            if val_set is not None and len(val_set):
                _validate(run, model, val_set, epoch, record)
            run.history.append(record)
            model.meta["history"] = run.history
            if progress:
                progress({"stage": "val", **record, "epochs": cfg.epochs, "best": run.best})
            if ckpt_dir:
                _save_checkpoints(run, model, cfg, epoch, ckpt_dir)
            if cfg.patience is not None and run.bad_epochs >= cfg.patience:
                break
    return _finish(run, model, cfg)


@contextmanager
def _frozen_encoder(model: LesionModel, cfg: TrainConfig) -> Iterator[None]:
    """With ``cfg.freeze_encoder``, the encoder's parameters need no gradient while the block runs."""
    if cfg.freeze_encoder:
        for p in _encoder_parameters(model):
            p.requires_grad_(False)
    try:
        yield
    finally:
        if cfg.freeze_encoder:
            for p in _encoder_parameters(model):
                p.requires_grad_(True)


def _start_run(model: LesionModel, cfg: TrainConfig, n: int, dev: torch.device) -> _Run:
    """The network on ``dev``, its optimiser (trainable parameters only), schedule and gradient scaler."""
    amp = autocast_dtype(dev)
    net = model.net.to(dev).to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, n)
    steps = cfg.steps_per_epoch or max(1, n // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    return _Run(net, dev, amp, opt, sched, scaler, bs, steps)


def _resume_state(run: _Run, model: LesionModel, ckpt_dir: Path, cfg: TrainConfig,
                  progress: ProgressCallback | None) -> None:
    """Load the weights, optimiser, schedule, history and best scores of ``ckpt_dir/last.pt`` into ``run``."""
    ck = read_checkpoint(ckpt_dir / "last.pt")
    try:
        run.net.load_state_dict(ck["state_dict"])
    except RuntimeError:
        raise ValueError(
            f"{ckpt_dir / 'last.pt'} holds a {ck['arch']} {ck['config']} at {ck['preprocess'].get('size')} px, "
            f"this run builds a {model.arch} {model.config} at {model.input_size} px: resume with the same "
            "settings, or train in another checkpoint folder") from None
    st = ck["train_state"]
    run.opt.load_state_dict(st["optimizer"])
    run.sched.load_state_dict(st["scheduler"])
    run.history = list(st["history"])
    run.best = st.get("best")
    run.start_epoch = int(st["epoch"]) + 1
    if run.best is not None and (ckpt_dir / "best.pt").is_file():  # (a best.pt of another run is no best of this one)
        run.best_state = read_checkpoint(ckpt_dir / "best.pt")["state_dict"]
    # early stopping's count carries over a resume
    run.bad_epochs = run.start_epoch - int(run.best["epoch"]) if run.best and run.start_epoch else 0
    if progress:
        progress({"stage": "resume", "epoch": run.start_epoch, "epochs": cfg.epochs})


def _train_epoch(run: _Run, model: LesionModel, train_set: PairSet, cfg: TrainConfig, epoch: int,
                 progress: ProgressCallback | None, cancel: CancelToken | None) -> float:
    """One epoch of ``run.steps`` augmented batches; returns the mean loss."""
    _set_train_mode(model, cfg)
    n, bs, steps = len(train_set), run.batch_size, run.steps
    g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(steps * bs / n))])
    running = 0.0
    for step in range(steps):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(f"cancelled at epoch {epoch + 1}, step {step + 1}")
        ts = time.perf_counter()
        running += _train_step(run, model, train_set, order[step * bs:(step + 1) * bs], cfg, g, epoch)
        run.step_times.append(time.perf_counter() - ts)
        if progress:
            recent = run.step_times[-20:]
            left = (cfg.epochs - epoch - 1) * steps + (steps - step - 1)
            progress({"stage": "train", "epoch": epoch + 1, "epochs": cfg.epochs, "step": step + 1,
                      "steps": steps, "loss": running / (step + 1), "lr": run.sched.get_last_lr()[0],
                      "eta_s": left * sum(recent) / len(recent)})
    return running / steps


def _train_step(run: _Run, model: LesionModel, train_set: PairSet, idx: torch.Tensor, cfg: TrainConfig,
                g: torch.Generator, epoch: int) -> float:
    """One optimiser step on the pairs ``idx`` (augmented with ``g``); returns the batch's loss."""
    dev, amp = run.device, run.amp
    x = train_set.images[idx].to(dev).float() / 255.0
    y = train_set.masks[idx].to(dev).float()
    x, y = augment_batch(x, y, cfg.augment, g)
    x = normalise(x, model.preprocess["mean"], model.preprocess["std"]).contiguous(
        memory_format=torch.channels_last)
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = run.net(x)
    loss = segmentation_loss(logits, y, cfg.loss)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}")
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()
    return loss.item()


def _validate(run: _Run, model: LesionModel, val_set: PairSet, epoch: int, record: dict[str, Any]) -> None:
    """Score the validation set into ``record`` (``val_dice``, ...); keep the weights when the Dice is the best."""
    scores = evaluate(model, val_set, run.device)
    record.update({f"val_{k}": v for k, v in scores.items()})
    if run.best is None or scores["dice"] > run.best["dice"]:
        run.best = dict(scores, epoch=epoch + 1)
        run.best_state = {k: v.detach().cpu().clone() for k, v in run.net.state_dict().items()}
        run.bad_epochs = 0
    else:
        run.bad_epochs += 1


def _save_checkpoints(run: _Run, model: LesionModel, cfg: TrainConfig, epoch: int, ckpt_dir: Path) -> None:
    """Write ``best.pt`` when this epoch is the best so far, and ``last.pt`` (with the state to resume from)."""
    if run.best_state is not None and run.best and run.best.get("epoch") == epoch + 1:
        model.meta["best_val"] = run.best
        save_checkpoint(model, ckpt_dir / "best.pt")
    save_checkpoint(model, ckpt_dir / "last.pt", extra={"train_state": {
        "epoch": epoch, "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "history": run.history, "best": run.best, "config": cfg.to_dict()}})


def _finish(run: _Run, model: LesionModel, cfg: TrainConfig) -> TrainResult:
    """Keep the best weights, record the run in ``model.meta`` and return the result."""
    if run.best_state is not None:
        run.net.load_state_dict(run.best_state)
    run.net.eval()
    model.meta.update({"history": run.history, "best_val": run.best, "train_config": cfg.to_dict(),
                       "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "train_device": str(run.device)})
    if run.device.type == "cuda":
        torch.cuda.empty_cache()
    return TrainResult(model, run.history, run.best, time.perf_counter() - run.t0)


def init_from(source: LesionModel | str | os.PathLike) -> LesionModel:
    """A fresh copy of a model (from an object or a file) to train further without touching the original."""
    if isinstance(source, LesionModel):
        return model_from_checkpoint(source.to_checkpoint())
    return model_from_checkpoint(read_checkpoint(source))
