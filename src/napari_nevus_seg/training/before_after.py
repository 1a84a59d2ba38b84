"""Before and after fine-tuning, side by side: the base model's and the tuned model's outlines on one pair.

::

    tuned = fine_tune(images, masks, base=base)
    example = before_after_example(images, masks, tuned, base)
    example.picture()     # (H, 2W + gap, 3) uint8: base outline (left), tuned outline (right), yours on both

The pair shown is the scored pair (held-out when there are any, see :mod:`~napari_nevus_seg.training.finetune`)
whose Dice changed most, so the picture shows what fine-tuning changed where it changed most; its Dice
before and after are the report's per-pair values. Each outline is drawn as the model would outline it
in the Segment widget (refined as the model says).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from napari_nevus_seg.inference.masks import lesion_mask
from napari_nevus_seg.inference.pipeline import segment
from napari_nevus_seg.io.intensity import to_rgb_uint8
from napari_nevus_seg.model.networks import LesionModel

PANEL_SIDE = 512                  # px: each half of the picture at most this long
GAP = 8                           # px of white between the halves
YOURS = (255, 0, 255)             # the user's corrected outline (magenta, as the expert mask elsewhere)
MODEL = (0, 255, 255)             # the model's outline (cyan, the first result colour)


@dataclass(frozen=True)
class BeforeAfter:
    """One pair outlined by the base and the tuned model, with the user's outline and the two Dice."""

    name: str
    image: np.ndarray        # (H, W, 3) uint8
    corrected: np.ndarray    # (H, W) bool: the user's outline
    before: np.ndarray       # (H, W) bool: the base model's
    after: np.ndarray        # (H, W) bool: the tuned model's
    before_dice: float
    after_dice: float
    held_out: bool = True    # a pair set aside (False: a training pair, with too few pairs to hold any out)

    def caption(self) -> str:
        """One line for people: which pair, and its Dice before and after."""
        kind = "" if self.held_out else " (a training pair: too few pairs to set one aside)"
        return (f"{self.name}{kind}: before {self.before_dice:.3f} (left), after {self.after_dice:.3f} (right); "
                "your outline magenta, the model's cyan")

    def picture(self, side: int = PANEL_SIDE) -> np.ndarray:
        """The two outlined halves side by side, each at most ``side`` px long, labelled "before" and "after"."""
        f = min(1.0, side / max(self.image.shape[:2]))
        halves = [_outlined(self.image, self.corrected, m, f, f"{t} {d:.3f}")
                  for m, t, d in ((self.before, "before", self.before_dice), (self.after, "after", self.after_dice))]
        gap = np.full((halves[0].shape[0], GAP, 3), 255, np.uint8)
        return np.concatenate([halves[0], gap, halves[1]], axis=1)


def before_after_example(images: Sequence, masks: Sequence, tuned: LesionModel, base: LesionModel,
                         device: str = "cpu") -> BeforeAfter:
    """The scored pair whose Dice changed most by fine-tuning, outlined by ``base`` and by ``tuned``.

    ``images`` and ``masks`` are the pairs given to :func:`~napari_nevus_seg.fine_tune` (lists or lazy
    sequences); ``tuned`` its result. ``KeyError`` when ``tuned`` was not fine-tuned.
    """
    ft = tuned.meta["fine_tune"]
    before, after = ft["before_per_pair"], ft["after_per_pair"]
    # the pairs the per-pair Dice belong to (older reports lack "scored_index": held-out pairs, else all of them)
    idx = ft.get("scored_index") or ft.get("holdout_index") or list(range(len(before)))
    k = int(np.argmax(np.abs(np.subtract(after, before))))
    i = idx[k]
    img = to_rgb_uint8(np.asarray(images[i]))
    corrected = lesion_mask(masks[i], img.shape[:2], f"pair {i}")
    names = ft.get("holdout_names") if idx == ft.get("holdout_index") else None
    name = names[k] if names else f"pair {i + 1}"
    return BeforeAfter(name, img, corrected, segment(img, model=base, device=device) > 0,
                       segment(img, model=tuned, device=device) > 0, float(before[k]), float(after[k]),
                       held_out=bool(ft.get("n_holdout")))


def _outlined(img: np.ndarray, yours: np.ndarray, model: np.ndarray, f: float, label: str) -> np.ndarray:
    """``img`` scaled by ``f`` with both outlines drawn (about 2 px wide) and ``label`` in the corner."""
    size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
    out = np.array(Image.fromarray(img).resize(size, Image.BILINEAR)) if f < 1 else img.copy()
    for mask, colour in ((yours, YOURS), (model, MODEL)):
        m = mask if f >= 1 else np.array(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
        edge = m & ~ndi.binary_erosion(m, iterations=2, border_value=0)
        out[edge] = colour
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    box = draw.textbbox((4, 4), label)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((4, 4), label, fill=(255, 255, 255))
    return np.array(pil)
