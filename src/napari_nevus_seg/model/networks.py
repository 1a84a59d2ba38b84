"""Segmentation networks (U-Net, SegNet) and safe checkpoints.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, saved with
:func:`torch.save` and loaded with ``torch.load(..., weights_only=True)`` only, so that a model file
can never run code when it is opened. It holds::

    {"format": "napari-nevus-seg/1",
     "arch": "unet" | "segnet",
     "config": {...},            # keyword arguments of the architecture
     "preprocess": {...},        # input size and normalisation (see inference.Preprocess)
     "meta": {...},              # training data, recipe, metrics, date, version, base model ...
     "state_dict": {...}}
"""

from __future__ import annotations

import copy
import io
import numbers
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_nevus_seg.io.atomic import atomic_path
from napari_nevus_seg.model.checks import check_checkpoint

CHECKPOINT_FORMAT = "napari-nevus-seg/1"
_VIEWS_LOCK = threading.Lock()   # one view per convention, also when threads ask at once


class CheckpointError(ValueError):
    """A model file is missing, corrupt, unsafe (pickled code) or not a napari-nevus-seg model."""


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}: use 'batch', 'group', 'instance' or 'none'")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, cin: int, cout: int, norm: str = "batch", dropout: float = 0.0):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with configurable width, depth and normalisation.

    Outputs one logit channel (lesion vs. background). Input height and width must be divisible by
    ``2 ** depth`` (the inference code pads to that).

    With ``conventions`` = K > 0 the network is told which of K outline conventions to draw (for example
    a tight outline on the pigment edge, or an archive's looser one): one constant plane per convention
    (one-hot) is appended to the RGB input. ``convention`` is the one used when :meth:`forward` is not
    given one per image (what the inference pipeline does); training passes one per image.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, depth: int = 4, norm: str = "batch",
                 dropout: float = 0.0, conventions: int = 0, convention: int = 0):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError("depth and width must be positive")
        if conventions < 0 or not (0 <= convention < max(1, conventions)):
            raise ValueError(f"convention {convention} is not one of the {conventions} conventions")
        chans = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.conventions, self.convention = conventions, convention
        self.down = nn.ModuleList()
        cin = in_channels + conventions
        for c in chans[:-1]:
            self.down.append(ConvBlock(cin, c, norm))
            cin = c
        self.bottom = ConvBlock(chans[-2], chans[-1], norm, dropout)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_hi, c_lo in zip(reversed(chans[1:]), reversed(chans[:-1])):
            self.up.append(nn.ConvTranspose2d(c_hi, c_lo, 2, stride=2))
            self.dec.append(ConvBlock(2 * c_lo, c_lo, norm))
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor, convention: torch.Tensor | None = None) -> torch.Tensor:
        if self.conventions:
            x = self._with_convention_planes(x, convention)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)

    def _with_convention_planes(self, x: torch.Tensor, convention: torch.Tensor | None) -> torch.Tensor:
        """``x`` with one constant plane per convention appended: 1 for the image's convention, else 0."""
        if convention is None:
            convention = torch.full((x.shape[0],), self.convention, dtype=torch.long, device=x.device)
        planes = nn.functional.one_hot(convention.long(), self.conventions).to(x.dtype)
        planes = planes[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return torch.cat([x, planes], 1).contiguous(memory_format=torch.channels_last)


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al., 2017): encoder-decoder with max-unpooling by stored indices.

    Kept for comparison with the U-Net; it has no skip connections of feature maps, only of indices.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, depth: int = 4, norm: str = "batch"):
        super().__init__()
        chans = [width * 2**i for i in range(depth)]
        self.depth = depth
        self.enc = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.enc.append(ConvBlock(cin, c, norm))
            cin = c
        self.dec = nn.ModuleList()
        for i, c in enumerate(reversed(chans)):
            cout = chans[-i - 2] if i < depth - 1 else chans[0]
            self.dec.append(ConvBlock(c, cout, norm))
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices, sizes = [], []
        for block in self.enc:
            x = block(x)
            sizes.append(x.shape)
            x, idx = self.pool(x)
            indices.append(idx)
        for block, idx, size in zip(self.dec, reversed(indices), reversed(sizes)):
            x = block(self.unpool(x, idx, output_size=size))
        return self.head(x)


ARCHITECTURES: dict[str, type[nn.Module]] = {"unet": UNet, "segnet": SegNet}


@dataclass
class LesionModel:
    """A network together with everything needed to use it: preprocessing and provenance."""

    net: nn.Module
    arch: str = "unet"
    config: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    _views: dict[int, LesionModel] = field(default_factory=dict, init=False, repr=False, compare=False)
    _base: LesionModel | None = field(default=None, init=False, repr=False, compare=False)   # of a view

    @property
    def input_size(self) -> int:
        return int(self.preprocess.get("size", 192))

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "unnamed"))

    @property
    def refines(self) -> bool:
        """Whether this model's outlines are refined onto the pigment edge unless the user says otherwise:
        ``meta["refine"]`` (a fine-tuned model records what scored better on its held-out pairs), else, for
        a model of several outline conventions, ``meta["convention_refine"][<its convention>]`` (what scored
        better in that convention), else True."""
        value = self.meta.get("refine")
        if isinstance(value, bool):
            return value
        per = self.meta.get("convention_refine")
        value = per.get(self.convention_name) if isinstance(per, dict) and self.convention_name else None
        return value if isinstance(value, bool) else True

    @property
    def conventions(self) -> tuple[str, ...]:
        """Names of the outline conventions the network can draw (``meta["conventions"]``, else "0", "1",
        ...); empty for a network of one convention (every model but a conditioned U-Net)."""
        k = int(getattr(self.net, "conventions", 0) or 0)
        names = self.meta.get("conventions")
        if isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
            return tuple(names)
        return tuple(str(i) for i in range(k))

    @property
    def convention_name(self) -> str | None:
        """The convention the network draws now (None for a network of one convention)."""
        return self.conventions[self.net.convention] if self.conventions else None

    def with_convention(self, convention: str | int) -> LesionModel:
        """This model drawing ``convention`` (a name of :attr:`conventions`, or its number).

        The result shares the weights: a shallow copy of the network with its own convention (its parameters
        and submodules are the model's own objects: changing one changes both), kept per convention, so that
        the inference pipeline's prepared copy is made once; this model is unchanged. A view asked for
        another convention answers for the model it came from. Raises ValueError for a model of one
        convention or a convention it does not know.
        """
        if self._base is not None:
            return self._base.with_convention(convention)
        names = self.conventions
        if not names:
            raise ValueError(f"model {self.name!r} draws one outline convention; the refinement chooses between "
                             "a tight outline and the network's own instead (refine=True/False, --refine/"
                             "--no-refine, the Refine box)")
        index = names.index(convention) if convention in names else convention
        if isinstance(index, str) and index.isdigit():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(names):
            raise ValueError(f"model {self.name!r} has no outline convention {convention!r}; it knows "
                             f"{', '.join(names)}")
        index = int(index)
        if index == self.net.convention:
            return self
        with _VIEWS_LOCK:
            if index not in self._views:
                net = copy.copy(self.net)               # shares parameters and submodules, not the convention
                net.convention = index
                view = LesionModel(net, self.arch, {**self.config, "convention": index}, self.preprocess, self.meta)
                view._base = self
                self._views[index] = view
            return self._views[index]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def to_checkpoint(self) -> dict[str, Any]:
        config = dict(self.config)
        if getattr(self.net, "conventions", 0):   # the outline convention the network draws now
            config["convention"] = self.net.convention
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": self.arch,
            "config": config,
            "preprocess": dict(self.preprocess),
            "meta": dict(self.meta),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
        }


def default_preprocess(size: int = 192) -> dict[str, Any]:
    """Preprocessing stored with every model: resize to ``size`` x ``size`` and ImageNet-style scaling."""
    return {"size": int(size), "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def build_model(arch: str = "unet", preprocess: dict | None = None, meta: dict | None = None,
                **config: Any) -> LesionModel:
    """Create an untrained :class:`LesionModel` (``arch`` is ``"unet"`` or ``"segnet"``)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    net = ARCHITECTURES[arch](**config)
    return LesionModel(net, arch, dict(config), preprocess or default_preprocess(), meta or {})


def save_checkpoint(model: LesionModel, path: str | os.PathLike, extra: dict | None = None,
                    exclusive: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place).

    ``exclusive=True`` refuses (:class:`FileExistsError`) when ``path`` exists, also when another process
    creates it while this one writes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = model.to_checkpoint()
    if extra:
        ckpt.update(extra)
    with atomic_path(path, exclusive=exclusive) as tmp:
        torch.save(ckpt, tmp)
    return path


def read_checkpoint(source: str | os.PathLike | bytes) -> dict[str, Any]:
    """Load a checkpoint dictionary safely (``weights_only=True``) and check its structure."""
    label = "model data" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            ckpt = torch.load(io.BytesIO(source), map_location="cpu", weights_only=True)
        else:
            path = Path(source)
            if not path.is_file():
                raise CheckpointError(f"model file not found: {path}")
            if path.stat().st_size == 0:
                raise CheckpointError(f"model file is empty: {path}")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if re.search(r"GLOBAL|Unsupported global", str(exc)):
            # name what was refused, without PyTorch's advice to load the file unsafely
            found = re.search(r"(?:unsupported|Unsupported global:)\s*GLOBAL\s+([\w.]+)", str(exc))
            what = f" (it asks for {found.group(1)})" if found else ""
            raise CheckpointError(
                f"refused to load {label:.200}: it contains pickled Python objects{what}, which could run "
                "code when loaded. Only plain napari-nevus-seg checkpoints are accepted; do not load this "
                "file any other way unless you trust its source completely.") from exc
        if "weights_only" in str(exc):   # PyTorch's text for data it cannot parse: say that, not its advice
            found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
            msg = found.group(1).strip().splitlines()[0] if found else "not a PyTorch file"
        raise CheckpointError(f"cannot read model file {label:.200}: not a model file, or corrupt or truncated "
                              f"({msg[:200]})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{label:.200} is not a napari-nevus-seg model (format tag missing)")
    for key in ("arch", "config", "preprocess", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{label:.200} lacks {key!r}")
    try:
        check_checkpoint(ckpt)
    except ValueError as exc:
        raise CheckpointError(f"{label:.200} is not a usable napari-nevus-seg model: {exc}") from None
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> LesionModel:
    """Rebuild a :class:`LesionModel` from a checkpoint dictionary (see :func:`read_checkpoint`)."""
    model = build_model(ckpt["arch"], dict(ckpt["preprocess"]), dict(ckpt.get("meta", {})), **ckpt["config"])
    try:
        model.net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not match the architecture: {str(exc)[:300]}") from exc
    model.net.eval()
    return model


def load_checkpoint(path: str | os.PathLike) -> LesionModel:
    """Load a model file safely; raises :class:`CheckpointError` with a clear message on bad files."""
    return model_from_checkpoint(read_checkpoint(path))


def save_model(model: LesionModel, path: str | os.PathLike) -> Path:
    """Save a model (weights and metadata) to a file that :func:`load_model` reads back."""
    return save_checkpoint(model, path)
