"""Fine-tuning a segmentation model on a few of the user's corrected images.

::

    from napari_nevus_seg import fine_tune, load_model, save_model
    tuned = fine_tune(images, masks, base=load_model(), progress=print, cancel=threading.Event())
    tuned.meta["fine_tune"]      # {"before_dice": 0.86, "after_dice": 0.90, "improved": True, ...}
    save_model(tuned, "my_dermoscope.pt")

    settings = FineTuneSettings(epochs=12, blend=0.5)      # the tunables, checked when made
    tuned = fine_tune(images, masks, settings=settings)

The same preprocessing (:func:`~napari_nevus_seg.training.data.prepare_pairs`) and training loop
(:func:`~napari_nevus_seg.training.loop.train`, with the milder :meth:`AugmentConfig.light` augmentation)
as full training are used, on a copy of the base model: the base model is never modified.

Held-out pairs: with at least :data:`MIN_PAIRS_FOR_HOLDOUT` pairs, a share ``holdout`` of them
(20 %, at least one) is set aside, chosen at random with ``seed`` among the pairs whose image the base
model was not trained on. A tuned model records the images it was trained on (short content hashes in
``meta["trained_images"]``, its base's and its own), so a second round of fine-tuning, from a model
kept from the first, never scores on a pair the base learnt while another pair is left; when too few
are left, the report says how many held-out pairs the base was trained on (optimistic scores). They pick the
epoch whose weights are kept (and, with ``patience``, when to stop early) and are scored at full resolution with the base
model (refined as it says) and with the tuned model, refined and not (:mod:`~napari_nevus_seg.training.scoring`):
the tuned model keeps the better setting as ``meta["refine"]`` (the user's outline convention, which the
refinement could otherwise undo), and the "before" and "after" Dice that the widget shows are those of the
base's and the kept setting. With fewer pairs every pair is used for training and the
scores are taken on the training pairs (flagged ``"scored_on": "training pairs"``: optimistic).

Blending: the returned weights are ``base + blend * (tuned - base)`` (weight-space ensembling, "WiSE-FT",
Wortsman et al., CVPR 2022), ``blend=0.5`` by default, with ``replay=20`` synthetic images of the base
models' own training mixed into the pairs (:mod:`~napari_nevus_seg.training.replay`): together they keep
most of the gain on the user's kind of images and the base model's skill on other images (the HAM10000
protocol behind the defaults is in docs/fine_tuning.md). ``blend=1.0`` gives the fully tuned weights.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.inference.options import DEFAULT
from napari_nevus_seg.model.devices import resolve_device
from napari_nevus_seg.model.loading import load_model
from napari_nevus_seg.model.networks import LesionModel
from napari_nevus_seg.training.augment import AugmentConfig
from napari_nevus_seg.training.data import CancelToken, PairSet, ProgressCallback, describe_pair, prepare_pairs
from napari_nevus_seg.training.finetune_defaults import DEFAULTS, check_settings
from napari_nevus_seg.training.finetune_report import MEASURABLE_POINTS, FineTuneResult, compare, fine_tune_record
from napari_nevus_seg.training.holdout import (
    MIN_PAIRS_FOR_HOLDOUT,
    PickedPairs,
    choose_holdout,
    holdout_count,
    image_key,
    is_share,
    pair_names,
)
from napari_nevus_seg.training.loop import TrainConfig, TrainingCancelled, TrainResult, evaluate, init_from, train
from napari_nevus_seg.training.replay import concat_pairs, synthetic_pairs
from napari_nevus_seg.training.scoring import choose_refine, score_both

# FineTuneResult, compare and MEASURABLE_POINTS are defined in finetune_report and importable from here too
__all__ = ["DEFAULTS", "MEASURABLE_POINTS", "MIN_PAIRS_FOR_HOLDOUT", "FineTuneResult", "FineTuneSettings", "compare",
           "fine_tune", "holdout_count", "image_key"]

@dataclass(frozen=True)
class FineTuneSettings:
    """The tunables of :func:`fine_tune`, checked when made (``ValueError`` naming the setting and its range).

    Attributes
    ----------
    epochs, steps_per_epoch, batch_size : int
        Training runs ``epochs`` x ``steps_per_epoch`` steps of ``batch_size`` augmented pairs at most (>= 1).
    lr : float
        The learning rate (positive).
    patience : int or None
        Stop after this many epochs without a better held-out Dice (>= 0; None: never early).
    freeze_encoder : bool
        Train the decoder only.
    freeze_norm : bool
        Keep the base model's normalisation statistics.
    holdout : float, int or None
        Share (a float in [0, 1)) or number (an int >= 0) of pairs held out; 0 or None: none.
    blend : float
        Share of the fine-tuning update kept, in (0, 1]: ``base + blend * (tuned - base)``.
    replay : int
        Synthetic images the base models were trained on, mixed into the training pairs against forgetting
        (:mod:`~napari_nevus_seg.training.replay`; >= 0, 0: none).
    augment : AugmentConfig, optional
        The augmentation (default :meth:`AugmentConfig.light`).
    seed : int
        Chooses the held-out pairs and the batches.
    """

    epochs: int = DEFAULTS["epochs"]
    steps_per_epoch: int = DEFAULTS["steps_per_epoch"]
    batch_size: int = DEFAULTS["batch_size"]
    lr: float = DEFAULTS["lr"]
    patience: int | None = DEFAULTS["patience"]
    freeze_encoder: bool = DEFAULTS["freeze_encoder"]
    freeze_norm: bool = DEFAULTS["freeze_norm"]
    holdout: float | int | None = DEFAULTS["holdout"]
    blend: float = DEFAULTS["blend"]
    replay: int = DEFAULTS["replay"]
    augment: AugmentConfig | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_settings(self.holdout, self.epochs, self.steps_per_epoch, self.batch_size, self.lr, self.patience,
                       self.blend, self.replay)

    def train_config(self, early_stopping: bool) -> TrainConfig:
        """The :class:`TrainConfig` of the fine-tuning recipe (early stopping only with held-out pairs)."""
        return TrainConfig(epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, batch_size=self.batch_size,
                           lr=self.lr, weight_decay=1e-4, warmup_epochs=0.5, min_lr_ratio=0.1,
                           patience=self.patience if early_stopping else None, freeze_encoder=self.freeze_encoder,
                           freeze_norm=self.freeze_norm, seed=self.seed, augment=self.augment or AugmentConfig.light())

    def record(self) -> dict[str, Any]:
        """The settings as plain Python numbers (NumPy scalars would make a saved model unreadable with
        ``weights_only=True``), as ``meta["fine_tune"]["settings"]`` stores them."""
        holdout = self.holdout
        return {"epochs": int(self.epochs), "steps_per_epoch": int(self.steps_per_epoch),
                "batch_size": int(self.batch_size), "lr": float(self.lr),
                "patience": None if self.patience is None else int(self.patience),
                "freeze_encoder": bool(self.freeze_encoder), "freeze_norm": bool(self.freeze_norm),
                "holdout": None if holdout is None else float(holdout) if is_share(holdout) else int(holdout),
                "blend": float(self.blend), "replay": int(self.replay), "seed": int(self.seed)}


def fine_tune(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              base: LesionModel | str | os.PathLike | None = None, device: str | torch.device = "auto",
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
              holdout: float | None = DEFAULT, epochs: int = DEFAULT, steps_per_epoch: int = DEFAULT,
              batch_size: int = DEFAULT, lr: float = DEFAULT, patience: int | None = DEFAULT,
              freeze_encoder: bool = DEFAULT, freeze_norm: bool = DEFAULT, blend: float = DEFAULT,
              replay: int = DEFAULT, augment: AugmentConfig | None = DEFAULT, seed: int = DEFAULT,
              names: Sequence[str] | None = None, settings: FineTuneSettings | None = None) -> LesionModel:
    """Fine-tune ``base`` on the user's (image, corrected mask) pairs; returns a new model.

    Parameters
    ----------
    images : sequence of (H, W, 3) arrays
        RGB images of any sizes and dtypes; a lazy sequence (read when indexed) stays lazy.
    masks : sequence of (H, W) arrays
        Bool or label masks (non-zero is lesion; (H, W, 3) colour masks are read as training reads them).
        NaN is refused; an all-empty mask is accepted with a warning (the model learns "no lesion").
    base : LesionModel, path or None
        The model to start from (None: the default model); never modified.
    device : str or torch.device
    progress : callable, optional
        Receives dicts with ``stage`` ("prepare", "score_before", "train", "val", "score_after", "done"),
        ``step``, ``steps`` (for "train": over the whole run), ``loss``, ``eta_s``. "val" (after each epoch,
        with held-out pairs) carries ``val_dice``, ``val_jaccard`` and ``best`` of the weights before
        blending at the network's input ``size`` on the ``n_val`` held-out pairs, and ``blend``.
    cancel : object with ``is_set()``, optional
        When it turns true, :class:`TrainingCancelled` is raised within one training step, one scored image
        or one pair read.
    holdout, epochs, steps_per_epoch, batch_size, lr, patience, freeze_encoder, freeze_norm, blend, replay, augment, seed
        The tunables (see :class:`FineTuneSettings`); each one given overrides ``settings``.
    names : sequence of str, optional
        The pairs' names, for the report and error messages (default: the image files' stems when
        ``images`` has a ``paths`` attribute).
    settings : FineTuneSettings, optional
        The tunables (default :data:`DEFAULTS`).

    Returns
    -------
    LesionModel
        The tuned model; its report is in ``meta["fine_tune"]`` (see :class:`FineTuneResult`), where
        ``"improved"`` and ``"worse"`` flag a change of the mean Dice of at least :data:`MEASURABLE_POINTS`.

    Raises
    ------
    ValueError
        Before anything is read, for settings out of range (naming the setting) or no or unmatched pairs;
        for a mask that does not fit its image (naming the pair, and its files when the sequences have
        ``paths``). (:class:`TrainingCancelled` when cancelled.)
    """
    t0 = time.perf_counter()
    images, masks = _as_pairs(images, masks)
    given = {"holdout": holdout, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
             "lr": lr, "patience": patience, "freeze_encoder": freeze_encoder, "freeze_norm": freeze_norm,
             "blend": blend, "replay": replay, "augment": augment, "seed": seed}
    s = dataclasses.replace(settings or FineTuneSettings(), **{k: v for k, v in given.items() if v is not DEFAULT})
    names = pair_names(images, names, len(images))
    keys = _check_pairs(images, masks, names, progress, cancel)
    dev = resolve_device(device)
    _stop_if_cancelled(cancel, "cancelled before training")
    model, base_state, seen = _copy_of_base(base)
    hold_idx, train_idx = choose_holdout(len(images), holdout_count(len(images), s.holdout), keys, seen, s.seed)
    train_set, val_set = _prepare_sets(images, masks, names, train_idx, hold_idx, model.input_size, cancel)
    if s.replay:
        train_set = concat_pairs(train_set, synthetic_pairs(int(s.replay), model.input_size))
    score_idx = hold_idx or train_idx
    score_imgs, score_masks = PickedPairs(images, score_idx), PickedPairs(masks, score_idx)
    _stop_if_cancelled(cancel, "cancelled before training")
    try:
        base_refines = model.refines
        before = _score(model, score_imgs, score_masks, dev, cancel, progress, "score_before")[base_refines]
        result = _train(model, train_set, val_set, s, dev, progress, cancel)
        if s.blend < 1.0:
            _blend(model, base_state, s.blend, val_set, result, dev)
        both = _score(model, score_imgs, score_masks, dev, cancel, progress, "score_after")
        model.meta["refine"] = choose_refine(both, base_refines)   # what its outlines scored better with
        after = both[model.meta["refine"]]
    finally:
        _release(model, dev)
    _record(model, base, s, names, keys, seen, train_idx, hold_idx, before, after, result,
            time.perf_counter() - t0, dev)
    model.meta["fine_tune"]["refine"] = {"chosen": model.meta["refine"], "base": base_refines,
                                         **{k: float(np.mean(both[v])) for k, v in (("refined_dice", True),
                                                                                     ("unrefined_dice", False))}}
    if progress:
        ft = model.meta["fine_tune"]
        progress({"stage": "done", "step": 1, "steps": 1, "before_dice": ft["before_dice"],
                  "after_dice": ft["after_dice"]})
    return model


def _as_pairs(images: Sequence, masks: Sequence) -> tuple[Sequence, Sequence]:
    """The pairs as sequences (lists, or lazy ones that read files when indexed: never all in memory)."""
    images = images if isinstance(images, Sequence) else list(images)
    masks = masks if isinstance(masks, Sequence) else list(masks)
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if not images:
        raise ValueError("fine-tuning needs at least one (image, mask) pair")
    return images, masks


def _stop_if_cancelled(cancel: CancelToken | None, message: str) -> None:
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled(message)


def _check_pairs(images: Sequence, masks: Sequence, names: list[str] | None, progress: ProgressCallback | None,
                 cancel: CancelToken | None) -> list[str]:
    """Check that every mask fits its image (warning about empty ones); returns the images' :func:`image_key`."""
    empty, keys = [], []
    for i in range(len(images)):
        _stop_if_cancelled(cancel, "cancelled while checking the pairs")   # reading large images takes a while
        img, m = images[i], masks[i]
        # (H, W, 3) colour masks as training reads them; a wrong size or NaN names the pair (its files if known)
        if not lesion_mask(m, np.shape(img)[:2], describe_pair(i, images, masks, names)).any():
            empty.append(i)
        keys.append(image_key(img))
        if progress:
            progress({"stage": "prepare", "step": i + 1, "steps": len(images)})
    if empty:
        more = " ..." if len(empty) > 5 else ""
        which = ", ".join(describe_pair(i, images, masks, names) for i in empty[:5]) + more
        warnings.warn(f"{len(empty)} of {len(images)} masks are empty ({which}): the model will learn that "
                      "these images show no lesion. That is right for images of healthy skin; otherwise "
                      "draw the lesion first", UserWarning, stacklevel=3)
    return keys


def _copy_of_base(base: LesionModel | str | os.PathLike | None) -> tuple[LesionModel, dict, set[str]]:
    """A copy of the base model to train, its starting weights (on the CPU) and the images it was trained on."""
    base_model = load_model(base) if not isinstance(base, LesionModel) else base
    model = init_from(base_model)           # a copy: the base model is never touched
    base_state = {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
    return model, base_state, set(base_model.meta.get("trained_images") or [])


def _prepare_sets(images: Sequence, masks: Sequence, names: list[str] | None, train_idx: list[int],
                  hold_idx: list[int], size: int, cancel: CancelToken | None) -> tuple[PairSet, PairSet | None]:
    """The training and held-out pairs at the network's input size (no held-out set when ``hold_idx`` is empty)."""
    label = names or [f"pair{i}" for i in range(len(images))]

    def pairs(idx: list[int]) -> PairSet:
        picked = PickedPairs(images, idx, cancel), PickedPairs(masks, idx, cancel)
        return prepare_pairs(*picked, size, [label[i] for i in idx])

    return pairs(train_idx), pairs(hold_idx) if hold_idx else None


def _train(model: LesionModel, train_set: PairSet, val_set: PairSet | None, s: FineTuneSettings,
           dev: torch.device, progress: ProgressCallback | None, cancel: CancelToken | None) -> TrainResult:
    """Train ``model`` with the fine-tuning recipe, its progress reported over the whole run."""
    n_val = len(val_set) if val_set is not None else 0

    def on_train(d: dict[str, Any]) -> None:
        if not progress:
            return
        if d.get("stage") == "train":
            steps = d["steps"]
            progress({"stage": "train", "step": (d["epoch"] - 1) * steps + d["step"],
                      "steps": d["epochs"] * steps, "epoch": d["epoch"], "epochs": d["epochs"],
                      "loss": d["loss"], "eta_s": d["eta_s"]})
        elif d.get("stage") == "val":
            # scores of the fully tuned weights (before blending) on the held-out pairs at the network's
            # input size: what picks the best epoch; "n_val", "size" and "blend" say so to displays
            progress({"stage": "val", "epoch": d["epoch"], "epochs": d["epochs"], "loss": d.get("loss"),
                      "val_dice": d.get("val_dice"), "val_jaccard": d.get("val_jaccard"), "best": d.get("best"),
                      "n_val": n_val, "size": model.input_size, "blend": float(s.blend)})

    return train(model, train_set, val_set, s.train_config(early_stopping=bool(n_val)), dev, progress=on_train,
                 cancel=cancel)


def _blend(model: LesionModel, base_state: dict[str, torch.Tensor], blend: float, val_set: PairSet | None,
           result: TrainResult, dev: torch.device) -> None:
    """Move ``model``'s weights back towards ``base_state``, ``base + blend * (tuned - base)``; the model's
    ``best_val`` becomes the blend's own score."""
    tuned = model.net.state_dict()
    model.net.load_state_dict({k: torch.lerp(base_state[k].to(v.device, v.dtype), v, blend)
                               if v.is_floating_point() else v for k, v in tuned.items()})
    # train() recorded the scores of the unblended weights: the model returned is the blend
    tuned_val = result.best_val
    model.meta["best_val"] = (dict(evaluate(model, val_set, dev), epoch=tuned_val.get("epoch"))
                              if val_set is not None and tuned_val else None)


def _release(model: LesionModel, dev: torch.device) -> None:
    """Move the model back to the CPU and free the GPU memory of the run."""
    model.net.to("cpu")
    if dev.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def _record(model: LesionModel, base, s: FineTuneSettings, names: list[str] | None, keys: list[str],
            seen: set[str], train_idx: list[int], hold_idx: list[int], before: list[float], after: list[float],
            result: TrainResult, seconds: float, dev: torch.device) -> None:
    """Write the report (``meta["fine_tune"]``) and the tuned model's name, lineage and trained images."""
    meta = model.meta
    n = len(keys)
    meta["fine_tune"] = fine_tune_record(
        base=_base_label(base), base_training_data=meta.get("training_data"), n_pairs=n, hold_idx=hold_idx,
        train_idx=train_idx, names=names, n_holdout_seen=sum(keys[i] in seen for i in hold_idx), before=before,
        after=after, history=result.history, tuned_val=result.best_val, seconds=seconds, device=str(dev),
        settings=s.record())
    # cumulative over rounds: the next fine-tuning from this model holds out other pairs
    meta["trained_images"] = sorted(seen | {keys[i] for i in train_idx})
    meta["init"] = meta["fine_tune"]["base"]
    meta["name"] = f"{meta['fine_tune']['base']}+fine-tuned"
    meta["training_data"] = f"{meta.get('training_data') or 'base model data'}; fine-tuned on {n} user pairs"


def _base_label(base: LesionModel | str | os.PathLike | None) -> str:
    if base is None:
        return "default"
    if isinstance(base, LesionModel):
        return str(base.meta.get("name", "unnamed"))
    return str(base)


def _score(model: LesionModel, images, masks, dev, cancel, progress, stage) -> dict[bool, list[float]]:
    """Dice on each pair with and without the refinement (one network pass per image)."""
    def check(i: int) -> None:
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(f"cancelled while scoring ({stage})")
        if progress and i:
            progress({"stage": stage, "step": i, "steps": len(images)})

    scores = score_both(model, images, masks, dev, check)
    if progress:
        progress({"stage": stage, "step": len(images), "steps": len(images)})
    return scores


