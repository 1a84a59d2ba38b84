"""The defaults of :func:`~napari_nevus_seg.fine_tune` (what the widget's one click and ``nevus-seg train --init``
run) and the check of their ranges, in a module without torch so that the command line's help can show them.

Chosen by the HAM10000 protocol of ``benchmarks/finetune_protocol.py``; the measurements and the
reasons are in docs/fine_tuning.md ("Why these defaults" and "Measured on HAM10000").
"""

from __future__ import annotations

from typing import Any

import numpy as np

# 20 rounds of 6 steps of 8 augmented pairs (120 steps), all run (the held-out pairs pick the round kept),
# half of the update kept, 20 of the base models' synthetic training images mixed in. Until 2026-12-07:
# 8 rounds with early stopping after 3 without progress, 30 %, no replay (chosen on PH2; on HAM10000 it
# gained bcc +5.0, akiec +5.0, bkl +3.1, vasc +0.4 points where these gain +6.0, +5.9, +3.8, +0.8).
DEFAULTS: dict[str, Any] = {"epochs": 20, "steps_per_epoch": 6, "batch_size": 8, "lr": 3e-4, "patience": None,
                            "freeze_encoder": False, "freeze_norm": True, "holdout": 0.2, "blend": 0.5,
                            "replay": 20}


def is_share(holdout: Any) -> bool:
    """A ``holdout`` given as a share of the pairs: a real float (Python's or NumPy's), not a whole number."""
    return isinstance(holdout, (float, np.floating)) and not isinstance(holdout, (bool, np.bool_))


def _whole(value: Any, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def check_settings(holdout, epochs, steps_per_epoch, batch_size, lr, patience, blend, replay) -> None:
    """Refuse fine-tuning settings outside their range, naming the argument and the range."""
    _whole(epochs, "epochs", 1)
    _whole(steps_per_epoch, "steps_per_epoch", 1)
    _whole(batch_size, "batch_size", 1)
    _whole(replay, "replay", 0)
    if patience is not None:
        _whole(patience, "patience", 0)
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive learning rate, got {lr!r}")
    if holdout is not None:
        share = is_share(holdout)
        if isinstance(holdout, (bool, np.bool_)) or not (share or isinstance(holdout, (int, np.integer))) \
                or (share and not 0.0 <= holdout < 1.0) or (not share and holdout < 0):
            raise ValueError(f"holdout must be a share of the pairs in [0, 1) (a float), a number of pairs >= 0 "
                             f"(an int) or None, got {holdout!r}")
    if isinstance(blend, (bool, np.bool_)) or not isinstance(blend, (int, float, np.integer, np.floating)) \
            or not 0.0 < blend <= 1.0:
        raise ValueError(f"blend must lie in (0, 1], got {blend!r}")
