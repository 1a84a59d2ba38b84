"""The defaults of :func:`~napari_nevus_seg.fine_tune` (what the widget's one click and ``nevus-seg train --init``
run), in a module without torch so that the command line's help can show them.

Chosen by the HAM10000 protocol of ``benchmarks/finetune_protocol.py``; the measurements and the
reasons are in docs/fine_tuning.md ("Choosing the defaults").
"""

from __future__ import annotations

from typing import Any

# 20 rounds of 6 steps of 8 augmented pairs (120 steps), all run (the held-out pairs pick the round kept),
# 70 % of the update kept, 20 of the base models' synthetic training images mixed in. Until 2026-12-07:
# 8 rounds with early stopping after 3 without progress, 30 %, no replay (chosen on PH2; on HAM10000 it
# gained 3-5 points where this gains 4-7 for the same forgetting).
DEFAULTS: dict[str, Any] = {"epochs": 20, "steps_per_epoch": 6, "batch_size": 8, "lr": 3e-4, "patience": None,
                            "freeze_encoder": False, "freeze_norm": True, "holdout": 0.2, "blend": 0.7,
                            "replay": 20}
