"""Fine-tuning a segmentation model on a few of the user's corrected images.

::

    from napari_nevus_seg import fine_tune, load_model, save_model
    tuned = fine_tune(images, masks, base=load_model(), progress=print, cancel=threading.Event())
    tuned.meta["fine_tune"]      # {"before_dice": 0.86, "after_dice": 0.90, "improved": True, ...}
    save_model(tuned, "my_dermoscope.pt")

The same preprocessing (:func:`training.prepare_pairs`) and augmentation code as full training are
used (:func:`training.train`, with the milder :meth:`AugmentConfig.light` settings), from a copy of the
base model (:func:`training.init_from`): the base model is never modified.

Held-out pairs: with at least :data:`MIN_PAIRS_FOR_HOLDOUT` pairs, a share ``holdout`` of them
(20 %, at least one) is set aside, chosen at random with ``seed`` among the pairs whose image the base
model was not trained on. A tuned model records the images it was trained on (short content hashes in
``meta["trained_images"]``, its base's and its own), so a second round of fine-tuning, from a model
kept from the first, never scores on a pair the base learnt while another pair is left; when too few
are left, the report says how many held-out pairs the base was trained on (optimistic scores). They decide when to stop
(early stopping, the best epoch is kept) and are scored at full resolution through
:func:`inference.segment` with the base model and with the tuned model: the "before" and "after"
Dice that the widget shows. With fewer pairs every pair is used for training and the scores are
taken on the training pairs (flagged ``"scored_on": "training pairs"``: optimistic).

Blending: the returned weights are ``base + blend * (tuned - base)`` with ``blend=0.3`` by default
(weight-space ensembling, Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). On
PH2 the fully tuned weights gained the most on the user's kind of images but lost Dice points on ISIC
images; 30 % of the update kept most of the gain and lost less than a point on ISIC (figures in
docs/fine_tuning.md). ``blend=1.0`` gives the fully tuned weights.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.inference.metrics import dice
from napari_nevus_seg.inference.pipeline import segment
from napari_nevus_seg.io.intensity import to_rgb_uint8
from napari_nevus_seg.model.devices import resolve_device
from napari_nevus_seg.model.loading import load_model
from napari_nevus_seg.model.networks import LesionModel
from napari_nevus_seg.training.augment import AugmentConfig
from napari_nevus_seg.training.data import CancelToken, ProgressCallback, describe_pair, prepare_pairs
from napari_nevus_seg.training.loop import TrainConfig, TrainingCancelled, evaluate, init_from, train

MIN_PAIRS_FOR_HOLDOUT = 4

# Few-image defaults, chosen by measurement on PH2 (see docs/fine_tuning.md and
# benchmarks/bench_finetune_ph2.py).
DEFAULTS: dict[str, Any] = {"epochs": 8, "steps_per_epoch": 6, "batch_size": 8, "lr": 3e-4, "patience": 3,
                            "freeze_encoder": False, "freeze_norm": True, "holdout": 0.2, "blend": 0.3}


#: the smallest change of the mean Dice, in points (hundredths), that is called better or worse: the
#: change is shown to one decimal, and a change shown as "-0.0 points" must not be called worse
MEASURABLE_POINTS = 0.05


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``"1 pair"``, ``"2 pairs"`` (``nouns``: the plural when it is not ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def compare(before: float, after: float) -> tuple[bool, bool]:
    """(improved, worse): a change of the mean Dice of at least :data:`MEASURABLE_POINTS` points either way."""
    delta = 100 * (after - before)
    return bool(delta >= MEASURABLE_POINTS), bool(delta <= -MEASURABLE_POINTS)


@dataclass(frozen=True)
class FineTuneResult:
    """What a fine-tuning run reports (``model.meta["fine_tune"]``), read back with :meth:`of`."""

    base: str
    n_pairs: int
    n_holdout: int
    before_dice: float | None
    after_dice: float | None
    improved: bool
    worse: bool
    scored_on: str
    seconds: float
    date: str
    stopped_epoch: int | None = None
    n_holdout_seen: int | None = None   # held-out pairs whose image the base model was trained on
    holdout_names: list[str] | None = None

    @classmethod
    def of(cls, model: LesionModel) -> FineTuneResult:
        """The fine-tuning report of ``model`` (``KeyError`` when it was not fine-tuned)."""
        return cls.from_report(model.meta["fine_tune"])

    @classmethod
    def from_report(cls, ft: dict[str, Any]) -> FineTuneResult:
        """The report from a ``meta["fine_tune"]`` dictionary (a saved model's metadata, as listed)."""
        fields = {k: ft.get(k) for k in cls.__dataclass_fields__}
        if fields["before_dice"] is not None and fields["after_dice"] is not None:
            # the rule of compare(), for models saved when any drop over 1e-9 was called worse
            fields["improved"], fields["worse"] = compare(fields["before_dice"], fields["after_dice"])
        return cls(**fields)

    @property
    def basis(self) -> str:
        """What the before/after Dice were taken on: ``"2 held-out pairs"``, ``"3 training pairs, optimistic"``."""
        if self.n_holdout:
            held = plural(self.n_holdout, "held-out pair")
            if not self.n_holdout_seen:
                return held
            which = "" if self.n_holdout == 1 else f"{self.n_holdout_seen} of them "
            return f"{held}, {which}seen by the base model in training: optimistic"
        return f"{plural(self.n_pairs or 0, 'training pair')}, optimistic"

    @property
    def change(self) -> str:
        """The change of the mean Dice as shown: ``"+4.1 points"``, or ``"no measurable change"``."""
        if self.before_dice is None or self.after_dice is None:
            return "no score"
        delta = 100 * (self.after_dice - self.before_dice)
        return f"{delta:+.1f} points" if abs(delta) >= MEASURABLE_POINTS else "no measurable change"

    def summary(self) -> str:
        """One line for people: ``"Dice 0.861 -> 0.902 (+4.1 points, 2 held-out pairs)"``."""
        if self.before_dice is None or self.after_dice is None:
            return f"fine-tuned on {plural(self.n_pairs or 0, 'pair')} (no score)"
        verdict = "" if not self.worse else " - WORSE than the base model, consider discarding it"
        return (f"Dice {self.before_dice:.3f} -> {self.after_dice:.3f} ({self.change}, {self.basis})"
                f"{verdict}")


def holdout_count(n_pairs: int, holdout: float | None = DEFAULTS["holdout"]) -> int:
    """How many of ``n_pairs`` pairs are held out (the rule of the module docstring)."""
    if not holdout or n_pairs < MIN_PAIRS_FOR_HOLDOUT:
        return 0
    if _is_share(holdout):   # a float of any kind (np.float32 too) is a share, as _check_settings reads it
        k = max(1, round(float(holdout) * n_pairs))
    else:
        k = int(holdout)
    return min(k, n_pairs - 1)


def image_key(image: np.ndarray) -> str:
    """A short content hash of an image's pixels (as 8-bit RGB): how a tuned model records the images it
    was trained on (``meta["trained_images"]``), so that later rounds hold out other pairs."""
    arr = np.asarray(image)
    try:
        arr = to_rgb_uint8(arr, min_side=1)   # the same picture as uint8, float or RGBA hashes alike
    except ValueError:                        # refused later with its own message; hash the raw pixels
        arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{arr.shape}{arr.dtype.str}".encode())
    h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return h.hexdigest()


def _pair_names(images: Sequence, names: Sequence[str] | None, n: int) -> list[str] | None:
    """The pairs' names: ``names`` if given, else the image files' stems when the sequence reads files."""
    if names is not None:
        names = [str(x) for x in names]
        if len(names) != n:
            raise ValueError(f"{len(names)} names for {n} pairs")
        return names
    paths = getattr(images, "paths", None)
    if paths is not None and len(paths) == n:
        return [Path(p).stem for p in paths]
    return None


def _choose_holdout(n: int, k: int, keys: list[str], seen: set[str], seed: int) -> tuple[list[int], list[int]]:
    """``k`` held-out indices, at random (``seed``) among the pairs whose image the base model has not seen,
    then (only when too few are left) among the others; returns (held-out, training) indices, sorted."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    ranked = [i for i in order if keys[i] not in seen] + [i for i in order if keys[i] in seen]
    return sorted(ranked[:k]), sorted(ranked[k:])


def _base_label(base: LesionModel | str | os.PathLike | None, model: LesionModel) -> str:
    if base is None:
        return "default"
    if isinstance(base, LesionModel):
        return str(base.meta.get("name", "unnamed"))
    return str(base)


def _blend_weights(model: LesionModel, base_state: dict[str, torch.Tensor], blend: float) -> None:
    """Move ``model``'s weights back towards ``base_state``: base + blend * (tuned - base)."""
    tuned = model.net.state_dict()
    mixed = {k: torch.lerp(base_state[k].to(v.device, v.dtype), v, blend) if v.is_floating_point() else v
             for k, v in tuned.items()}
    model.net.load_state_dict(mixed)


class _Picked(Sequence):
    """Items ``idx`` of a sequence, taken from it when asked for (a lazy sequence stays lazy).

    With ``cancel``, each item asked for after ``cancel.is_set()`` raises :class:`TrainingCancelled`
    instead of being read: preparing pairs read from disk stops within one pair."""

    def __init__(self, seq: Sequence, idx: Sequence[int], cancel: CancelToken | None = None):
        self.seq, self.idx, self.cancel = seq, list(idx), cancel

    def __len__(self) -> int:
        return len(self.idx)

    def _get(self, j: int):
        if self.cancel is not None and self.cancel.is_set():
            raise TrainingCancelled("cancelled while reading the pairs")
        return self.seq[j]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in self.idx[i]]
        return self._get(self.idx[i])

    @property
    def paths(self) -> list | None:
        """The files of the items, when the sequence reads files (for error messages)."""
        paths = getattr(self.seq, "paths", None)
        return None if paths is None else [paths[j] for j in self.idx]


def _is_share(holdout: Any) -> bool:
    """A ``holdout`` given as a share of the pairs: a real float (Python's or NumPy's), not a whole number."""
    return isinstance(holdout, (float, np.floating)) and not isinstance(holdout, (bool, np.bool_))


def _whole(value: Any, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _check_settings(holdout, epochs, steps_per_epoch, batch_size, lr, patience, blend) -> None:
    """Refuse fine-tuning settings outside their range, naming the argument and the range."""
    _whole(epochs, "epochs", 1)
    _whole(steps_per_epoch, "steps_per_epoch", 1)
    _whole(batch_size, "batch_size", 1)
    if patience is not None:
        _whole(patience, "patience", 0)
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive learning rate, got {lr!r}")
    if holdout is not None:
        share = _is_share(holdout)
        if isinstance(holdout, (bool, np.bool_)) or not (share or isinstance(holdout, (int, np.integer))) \
                or (share and not 0.0 <= holdout < 1.0) or (not share and holdout < 0):
            raise ValueError(f"holdout must be a share of the pairs in [0, 1) (a float), a number of pairs >= 0 "
                             f"(an int) or None, got {holdout!r}")
    if isinstance(blend, (bool, np.bool_)) or not isinstance(blend, (int, float, np.integer, np.floating)) \
            or not 0.0 < blend <= 1.0:
        raise ValueError(f"blend must lie in (0, 1], got {blend!r}")


def _score(model: LesionModel, images, masks, dev, cancel, progress, stage) -> list[float]:
    out = []
    for i, (img, m) in enumerate(zip(images, masks)):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(f"cancelled while scoring ({stage})")
        out.append(dice(segment(img, model=model, device=dev) > 0, lesion_mask(m)))
        if progress:
            progress({"stage": stage, "step": i + 1, "steps": len(images)})
    return out


def fine_tune(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              base: LesionModel | str | os.PathLike | None = None, device: str | torch.device = "auto",
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
              holdout: float | None = DEFAULTS["holdout"], epochs: int = DEFAULTS["epochs"],
              steps_per_epoch: int = DEFAULTS["steps_per_epoch"], batch_size: int = DEFAULTS["batch_size"],
              lr: float = DEFAULTS["lr"], patience: int | None = DEFAULTS["patience"],
              freeze_encoder: bool = DEFAULTS["freeze_encoder"], freeze_norm: bool = DEFAULTS["freeze_norm"],
              blend: float = DEFAULTS["blend"], augment: AugmentConfig | None = None,
              seed: int = 0, names: Sequence[str] | None = None) -> LesionModel:
    """Fine-tune ``base`` on the user's (image, corrected mask) pairs; returns a new model.

    ``images``: (H, W, 3) RGB arrays of any sizes and dtypes; ``masks``: matching (H, W) bool or label
    arrays (non-zero is lesion; (H, W, 3) colour masks are read as training reads them, NaN is refused,
    an all-empty mask is accepted with a warning: the model learns "no lesion" for that image).
    ``base``: a model, a model file, or None for the default model; it is never modified. ``holdout``:
    share (float < 1) or number (int) of pairs held out for early stopping and before/after scores,
    used from :data:`MIN_PAIRS_FOR_HOLDOUT` pairs on (0 or None: none), chosen among pairs whose image the
    base model was not trained on (its ``meta["trained_images"]``) while there are enough. ``names``: the
    pairs' names, for the report and error messages (default: the image files' stems when ``images`` has a
    ``paths`` attribute).
    Training runs ``epochs`` x ``steps_per_epoch`` steps of ``batch_size`` augmented pairs at most,
    stopping after ``patience`` epochs without a better held-out Dice; ``freeze_encoder`` trains only
    the decoder; ``freeze_norm`` keeps the base model's normalisation statistics. ``blend``: share of
    the fine-tuning update that is kept, ``base + blend * (tuned - base)`` (weight-space ensembling,
    "WiSE-FT"): 1.0 gives the fully tuned weights, lower values keep more of the base model's skill on
    images unlike the user's.

    ``progress(dict)`` receives ``stage`` ("prepare", "score_before", "train", "val", "score_after",
    "done"), ``step``, ``steps`` (for "train": over the whole run), ``loss``, ``eta_s``; "val" (after each
    epoch, with held-out pairs) ``val_dice``, ``val_jaccard`` and ``best`` (``{"dice", "jaccard", "epoch"}``)
    of the fully tuned weights before blending, scored on the ``n_val`` held-out pairs at the network's
    input ``size``, and ``blend``. When
    ``cancel.is_set()`` (e.g. a :class:`threading.Event`) turns true, :class:`TrainingCancelled` is raised
    within one training step, one scored image or one pair read (from disk, for lazy sequences). The report lands in ``model.meta["fine_tune"]``
    (see :class:`FineTuneResult`); ``"improved"`` and ``"worse"`` flag a change of the mean Dice of at least
    :data:`MEASURABLE_POINTS` points (a smaller one is no measurable change).

    Settings out of range (``epochs``, ``steps_per_epoch``, ``batch_size`` below 1, ``patience`` below 0,
    ``lr`` not positive, a float ``holdout`` (NumPy's too) outside [0, 1), ``blend`` outside (0, 1], a bool
    where a number is meant) raise ``ValueError``
    before anything is read; a mask that does not fit its image raises one naming the pair (and its files when
    the sequences have a ``paths`` attribute).
    """
    t0 = time.perf_counter()
    # sequences (lists, or lazy ones that read files when indexed) are used as they are: never all in memory
    images = images if isinstance(images, Sequence) else list(images)
    masks = masks if isinstance(masks, Sequence) else list(masks)
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if not images:
        raise ValueError("fine-tuning needs at least one (image, mask) pair")
    _check_settings(holdout, epochs, steps_per_epoch, batch_size, lr, patience, blend)
    names = _pair_names(images, names, len(images))

    def report(d: dict[str, Any]) -> None:
        if progress:
            progress(d)

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    empty, keys = [], []
    for i in range(len(images)):
        if cancelled():   # checked per pair: reading large images from disk takes a while
            raise TrainingCancelled("cancelled while checking the pairs")
        img, m = images[i], masks[i]
        # (H, W, 3) colour masks as training reads them; a wrong size or NaN names the pair (its files if known)
        if not lesion_mask(m, np.shape(img)[:2], describe_pair(i, images, masks, names)).any():
            empty.append(i)
        keys.append(image_key(img))
        report({"stage": "prepare", "step": i + 1, "steps": len(images)})
    if empty:
        which = ", ".join(describe_pair(i, images, masks, names) for i in empty[:5]) + (" ..." if len(empty) > 5 else "")
        warnings.warn(f"{len(empty)} of {len(images)} masks are empty ({which}): the model will learn that "
                      "these images show no lesion. That is right for images of healthy skin; otherwise "
                      "draw the lesion first", UserWarning, stacklevel=2)
    dev = resolve_device(device)
    if cancelled():
        raise TrainingCancelled("cancelled before training")
    base_model = load_model(base) if not isinstance(base, LesionModel) else base
    model = init_from(base_model)           # a copy: the base model is never touched
    base_state = {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
    seen = set(base_model.meta.get("trained_images") or [])   # images the base model was trained on
    del base_model
    n = len(images)
    k = holdout_count(n, holdout)
    hold_idx, train_idx = _choose_holdout(n, k, keys, seen, seed)
    n_seen_held = sum(keys[i] in seen for i in hold_idx)
    label = names or [f"pair{i}" for i in range(n)]
    size = model.input_size
    train_set = prepare_pairs(_Picked(images, train_idx, cancel), _Picked(masks, train_idx, cancel), size,
                              [label[i] for i in train_idx])
    val_set = (prepare_pairs(_Picked(images, hold_idx, cancel), _Picked(masks, hold_idx, cancel), size,
                             [label[i] for i in hold_idx]) if k else None)
    score_idx = hold_idx if k else train_idx
    score_imgs, score_masks = _Picked(images, score_idx), _Picked(masks, score_idx)
    if cancelled():
        raise TrainingCancelled("cancelled before training")

    try:
        before = _score(model, score_imgs, score_masks, dev, cancel, progress, "score_before")
        cfg = TrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr,
                          weight_decay=1e-4, warmup_epochs=0.5, min_lr_ratio=0.1,
                          patience=patience if k else None, freeze_encoder=freeze_encoder,
                          freeze_norm=freeze_norm, seed=seed, augment=augment or AugmentConfig.light())

        def on_train(d: dict[str, Any]) -> None:
            if d.get("stage") == "train":
                steps = d["steps"]
                report({"stage": "train", "step": (d["epoch"] - 1) * steps + d["step"],
                        "steps": d["epochs"] * steps, "epoch": d["epoch"], "epochs": d["epochs"],
                        "loss": d["loss"], "eta_s": d["eta_s"]})
            elif d.get("stage") == "val":
                # scores of the fully tuned weights (before blending) on the held-out pairs at the network's
                # input size: what picks the best epoch; "n_val", "size" and "blend" say so to displays
                report({"stage": "val", "epoch": d["epoch"], "epochs": d["epochs"], "loss": d.get("loss"),
                        "val_dice": d.get("val_dice"), "val_jaccard": d.get("val_jaccard"), "best": d.get("best"),
                        "n_val": k, "size": size, "blend": float(blend)})

        result = train(model, train_set, val_set, cfg, dev, progress=on_train, cancel=cancel)
        tuned_val = result.best_val
        if blend < 1.0:
            _blend_weights(model, base_state, blend)
            # train() recorded the scores of the unblended weights: the model returned is the blend
            model.meta["best_val"] = (dict(evaluate(model, val_set, dev), epoch=tuned_val.get("epoch"))
                                      if val_set is not None and tuned_val else None)
        after = _score(model, score_imgs, score_masks, dev, cancel, progress, "score_after")
    finally:
        model.net.to("cpu")
        if dev.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()

    b, a = float(np.mean(before)), float(np.mean(after))
    last_epoch = result.history[-1]["epoch"] if result.history else 0
    best_epoch = result.best_val.get("epoch") if result.best_val else last_epoch
    seconds = time.perf_counter() - t0
    meta = model.meta
    meta["fine_tune"] = {
        "base": _base_label(base, model),
        "base_training_data": meta.get("training_data"),
        "n_pairs": n, "n_train": len(train_idx), "n_holdout": k,
        "holdout_index": hold_idx, "holdout_names": [names[i] for i in hold_idx] if names else None,
        "n_holdout_seen": n_seen_held,   # held-out pairs whose image the base model was trained on
        "scored_on": ("training pairs" if not k else "held-out pairs" if not n_seen_held
                      else "held-out pairs, some seen by the base model in training"),
        "before_dice": b, "after_dice": a,
        "before_per_pair": [float(x) for x in before], "after_per_pair": [float(x) for x in after],
        "improved": compare(b, a)[0], "worse": compare(b, a)[1],
        "stopped_epoch": int(last_epoch), "best_epoch": int(best_epoch) if best_epoch else None,
        "tuned_val": tuned_val,  # network-input-size scores of the weights before blending
        "seconds": round(seconds, 2), "device": str(dev),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # plain Python numbers: NumPy scalars would make the file unreadable with weights_only=True
        "settings": {"epochs": int(epochs), "steps_per_epoch": int(steps_per_epoch), "batch_size": int(batch_size),
                     "lr": float(lr), "patience": None if patience is None else int(patience),
                     "freeze_encoder": bool(freeze_encoder), "freeze_norm": bool(freeze_norm),
                     "holdout": None if holdout is None else float(holdout) if _is_share(holdout) else int(holdout),
                     "blend": float(blend), "seed": int(seed)},
    }
    # cumulative over rounds: the next fine-tuning from this model holds out other pairs
    meta["trained_images"] = sorted(seen | {keys[i] for i in train_idx})
    meta["init"] = meta["fine_tune"]["base"]
    meta["name"] = f"{meta['fine_tune']['base']}+fine-tuned"
    meta["training_data"] = f"{meta.get('training_data') or 'base model data'}; fine-tuned on {n} user pairs"
    report({"stage": "done", "step": 1, "steps": 1, "before_dice": b, "after_dice": a})
    return model
