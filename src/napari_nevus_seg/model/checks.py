"""Checks of a checkpoint dictionary before anything is built from it.

A model file may come from anyone (a colleague's export, a download). Loading it is safe
(``weights_only=True`` runs no code), but a well-formed file can still ask for a network too large
to build, name an unknown architecture, carry NaN weights or a zero normalisation that would make
every image "no lesion" silently, or hold metadata nested so deeply that printing it fails. Each
check here raises :class:`ValueError` with a message that says what is wrong; the caller names the
file. Limits (documented in docs/limits.md):

- architecture: one of :data:`~napari_nevus_seg.model.networks.ARCHITECTURES`; configuration keys
  among its keyword arguments; ``in_channels`` 3; ``width`` 1..:data:`MAX_WIDTH`; ``depth``
  1..:data:`MAX_DEPTH`; ``norm`` batch, group, instance or none; ``dropout`` in [0, 1); U-Net outline
  ``conventions`` 0..:data:`MAX_CONVENTIONS` and the ``convention`` used one of them;
- weights: at most :data:`MAX_PARAMETERS` values, all finite, floating point;
- preprocessing: ``size`` :data:`MIN_SIZE`..:data:`MAX_SIZE`; ``mean`` and ``std`` three finite
  numbers each, ``std`` > 0;
- metadata: a dictionary of plain values (str, numbers, bools, None, lists, dicts) nested at most
  :data:`MAX_META_DEPTH` deep with at most :data:`MAX_META_ITEMS` values in all.
"""

from __future__ import annotations

import math
from typing import Any

import torch

MAX_WIDTH = 128
MAX_DEPTH = 6
MAX_CONVENTIONS = 8
MAX_PARAMETERS = 100_000_000
MIN_SIZE, MAX_SIZE = 32, 1024
MAX_META_DEPTH = 32
MAX_META_ITEMS = 1_000_000
NORMS = ("batch", "group", "instance", "none")
CONFIG_KEYS = {"unet": {"in_channels", "width", "depth", "norm", "dropout", "conventions", "convention"},
               "segnet": {"in_channels", "width", "depth", "norm"}}


def _int_in(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not {value!r:.60}")
    return value


def check_config(arch: Any, config: Any) -> None:
    """The architecture name and its configuration are known and within bounds."""
    if not isinstance(arch, str) or arch not in CONFIG_KEYS:
        raise ValueError(f"unknown architecture {arch!r:.60}; this version knows {sorted(CONFIG_KEYS)}")
    if not isinstance(config, dict):
        raise ValueError(f"the configuration must be a dictionary, not {type(config).__name__}")
    extra = sorted(map(str, set(config) - CONFIG_KEYS[arch]))
    if extra:
        raise ValueError(f"unknown configuration keys for {arch}: {', '.join(extra)[:200]}")
    if config.get("in_channels", 3) != 3:
        raise ValueError(f"in_channels must be 3 (RGB), not {config['in_channels']!r:.60}")
    _int_in(config.get("width", 16), 1, MAX_WIDTH, "width")
    _int_in(config.get("depth", 4), 1, MAX_DEPTH, "depth")
    if config.get("norm", "batch") not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {config['norm']!r:.60}")
    conventions = config.get("conventions", 0)
    _int_in(conventions, 0, MAX_CONVENTIONS, "conventions")
    _int_in(config.get("convention", 0), 0, max(0, conventions - 1), "convention")
    dropout = config.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), not {dropout!r:.60}")


def check_preprocess(pre: Any) -> None:
    """Input size and normalisation are usable: finite, positive spread, a sensible size."""
    if not isinstance(pre, dict):
        raise ValueError(f"the preprocessing must be a dictionary, not {type(pre).__name__}")
    _int_in(pre.get("size", 192), MIN_SIZE, MAX_SIZE, "preprocess size")
    for key, positive in (("mean", False), ("std", True)):
        v = pre.get(key, [0.5, 0.5, 0.5] if key == "mean" else [0.25, 0.25, 0.25])
        ok = (isinstance(v, (list, tuple)) and len(v) == 3
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))
        if not ok or (positive and min(v) <= 0):
            need = "three finite numbers above 0" if positive else "three finite numbers"
            raise ValueError(f"preprocess {key} must be {need}, not {v!r:.80}")


def check_weights(state: Any) -> None:
    """A dictionary of finite floating-point tensors, not more than :data:`MAX_PARAMETERS` values."""
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ValueError("the weights must be a dictionary of tensors")
    total = sum(t.numel() for t in state.values())
    if total > MAX_PARAMETERS:
        raise ValueError(f"{total:,} weights is more than the {MAX_PARAMETERS:,} this version accepts")
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"weight {str(name)[:80]!r} holds NaN or infinite values")


def check_meta(meta: Any) -> None:
    """Plain metadata, not nested more than :data:`MAX_META_DEPTH` deep (walked without recursion)."""
    if not isinstance(meta, dict):
        raise ValueError(f"the metadata must be a dictionary, not {type(meta).__name__}")
    stack: list[tuple[Any, int]] = [(meta, 1)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_META_ITEMS:
            raise ValueError(f"the metadata holds more than {MAX_META_ITEMS:,} values")
        if isinstance(value, (dict, list, tuple)):
            if depth > MAX_META_DEPTH:
                raise ValueError(f"the metadata is nested more than {MAX_META_DEPTH} levels deep")
            children = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in children:
                if isinstance(value, dict) and not isinstance(k, str):
                    raise ValueError(f"metadata keys must be text, not {type(k).__name__}")
                stack.append((v, depth + 1))
        elif not (value is None or isinstance(value, (str, int, float, bool))):
            raise ValueError(f"metadata values must be plain (text, numbers, lists), not {type(value).__name__}")


def check_checkpoint(ckpt: dict[str, Any]) -> None:
    """Every check above, in the order that costs least first."""
    check_config(ckpt["arch"], ckpt["config"])
    check_preprocess(ckpt["preprocess"])
    check_meta(ckpt.get("meta", {}))
    check_weights(ckpt["state_dict"])
