"""The defaults of :func:`~napari_nevus_seg.fine_tune` (what the widget's one click and ``nevus-seg train --init``
run), in a module without torch so that the command line's help can show them.

Chosen by the HAM10000 protocol of ``benchmarks/finetune_protocol.py``; the measurements and the
reasons are in docs/fine_tuning.md ("Choosing the defaults").
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {"epochs": 8, "steps_per_epoch": 6, "batch_size": 8, "lr": 3e-4, "patience": 3,
                            "freeze_encoder": False, "freeze_norm": True, "holdout": 0.2, "blend": 0.3,
                            "replay": 0}
