"""Segmentation losses on logits: binary cross-entropy, soft Dice, or their sum (the default)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bce", "dice", "bce+dice")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """One minus the soft Dice of ``sigmoid(logits)`` and ``target`` (N, 1, H, W), per image, averaged.

    ``eps`` smooths the ratio, so that an empty prediction of an empty mask has no loss.
    """
    p = torch.sigmoid(logits)
    dims = (1, 2, 3)
    inter = (p * target).sum(dims)
    return (1 - (2 * inter + eps) / (p.sum(dims) + target.sum(dims) + eps)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce+dice") -> torch.Tensor:
    """The training loss ``kind`` (one of :data:`LOSSES`) of ``logits`` against a {0, 1} ``target``.

    Computed in float32 whatever the logits' dtype (mixed precision); an unknown ``kind`` raises
    ``ValueError``.
    """
    logits = logits.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "dice":
        return soft_dice_loss(logits, target)
    if kind == "bce+dice":
        return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)
    raise ValueError(f"unknown loss {kind!r}: use 'bce', 'dice' or 'bce+dice'")
