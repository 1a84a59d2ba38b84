"""What a fine-tuning run reports: the record in ``model.meta["fine_tune"]`` and :class:`FineTuneResult`.

::

    report = FineTuneResult.of(tuned)
    report.summary()       # "Dice 0.861 -> 0.902 (+4.1 points, 2 held-out pairs)"
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from napari_nevus_seg.io.text import plural
from napari_nevus_seg.model.networks import LesionModel

#: the smallest change of the mean Dice, in points (hundredths), that is called better or worse: the
#: change is shown to one decimal, and a change shown as "-0.0 points" must not be called worse
MEASURABLE_POINTS = 0.05


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


def scored_on(n_holdout: int, n_holdout_seen: int) -> str:
    """What the before/after scores were taken on, as ``meta["fine_tune"]["scored_on"]`` says it."""
    if not n_holdout:
        return "training pairs"
    return "held-out pairs" if not n_holdout_seen else "held-out pairs, some seen by the base model in training"


def fine_tune_record(*, base: str, base_training_data: Any, n_pairs: int, hold_idx: list[int],
                     train_idx: list[int], names: list[str] | None, n_holdout_seen: int, before: list[float],
                     after: list[float], history: list[dict[str, Any]], tuned_val: dict[str, Any] | None,
                     seconds: float, device: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The report that :func:`~napari_nevus_seg.training.finetune.fine_tune` stores in ``meta["fine_tune"]``.

    Parameters
    ----------
    base : str
        How the base model is named.
    base_training_data : any
        The base model's ``meta["training_data"]``.
    n_pairs : int
        All pairs given.
    hold_idx, train_idx : list of int
        The held-out and training pairs.
    names : list of str, optional
        The pairs' names.
    n_holdout_seen : int
        Held-out pairs whose image the base model was trained on.
    before, after : list of float
        Per-pair Dice of the base and of the returned model on the scored pairs.
    history : list of dict
        :func:`train`'s per-epoch records.
    tuned_val : dict, optional
        The best held-out scores of the weights before blending, at the network's input size.
    seconds : float
        The run's duration.
    device : str
        Where it ran.
    settings : dict
        The settings used, as plain Python numbers.
    """
    b, a = float(np.mean(before)), float(np.mean(after))
    last_epoch = history[-1]["epoch"] if history else 0
    best_epoch = tuned_val.get("epoch") if tuned_val else last_epoch
    k = len(hold_idx)
    return {
        "base": base,
        "base_training_data": base_training_data,
        "n_pairs": n_pairs, "n_train": len(train_idx), "n_holdout": k,
        "holdout_index": hold_idx, "holdout_names": [names[i] for i in hold_idx] if names else None,
        "scored_index": list(hold_idx or train_idx),   # the pairs of before_per_pair / after_per_pair, in order
        "n_holdout_seen": n_holdout_seen,   # held-out pairs whose image the base model was trained on
        "scored_on": scored_on(k, n_holdout_seen),
        "before_dice": b, "after_dice": a,
        "before_per_pair": [float(x) for x in before], "after_per_pair": [float(x) for x in after],
        "improved": compare(b, a)[0], "worse": compare(b, a)[1],
        "stopped_epoch": int(last_epoch), "best_epoch": int(best_epoch) if best_epoch else None,
        "tuned_val": tuned_val,  # network-input-size scores of the weights before blending
        "seconds": round(seconds, 2), "device": device,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
    }
