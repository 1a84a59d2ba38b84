"""Grow a trained U-Net to a larger width without changing what it computes (Net2WiderNet).

Chen, Goodfellow & Shlens, *Net2Net: accelerating learning via knowledge transfer* (ICLR 2016): each
layer's output channels are extended by copies of randomly chosen existing channels, and every layer that
reads those channels divides the copied inputs' weights by the number of copies, so the wider network
gives the same output as the narrow one. Training then goes on from the trained function with more
capacity, instead of from scratch (hours of CPU for this project's campaigns).

In a U-Net every channel space is written by one layer (a convolution with its normalisation, or the
up-convolution) and read by one or two (the next convolution; a skip connection's decoder block, whose
input is the concatenation [up-sampled, skip]). :func:`widen_unet` maps each space, copies the writers'
weights and normalisation statistics by the map and rescales the readers. Batch normalisation (the
project's models) and no normalisation are supported; group normalisation mixes channels' statistics, so
copied channels would change it, and instance normalisation is not handled. ``noise`` multiplies the copied channels' incoming weights by ``1 + noise * N(0, 1)``
so that the copies do not stay identical under training (they get identical gradients otherwise); with
``noise=0`` the output is the same up to rounding (tested). No Qt or napari here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_nevus_seg.model.networks import UNet


def _norm_kind(net: UNet) -> str:
    kinds = {type(m) for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))}
    if not kinds:
        return "none"
    if kinds == {nn.BatchNorm2d}:
        return "batch"
    raise ValueError("only U-Nets with batch normalisation or none can be widened without changing their output")


class _Space:
    """How one channel space of ``old`` channels grows to ``new``: new channel j copies old ``index[j]``."""

    def __init__(self, old: int, new: int, rng: np.random.Generator):
        extra = rng.integers(0, old, new - old) if new > old else np.zeros(0, int)
        self.index = torch.as_tensor(np.concatenate([np.arange(old), extra]), dtype=torch.long)
        self.copies = torch.bincount(self.index, minlength=old).to(torch.float32)
        self.old = old

    def read(self, w: torch.Tensor, dim: int) -> torch.Tensor:
        """Weights that read this space along ``dim``: copied inputs, divided by their number of copies."""
        scale = (1.0 / self.copies)[self.index]
        shape = [1] * w.dim()
        shape[dim] = -1
        return w.index_select(dim, self.index.to(w.device)) * scale.view(shape).to(w.device, w.dtype)

    def write(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Weights, biases or statistics that produce this space along ``dim``: copied."""
        return t.index_select(dim, self.index.to(t.device))


def _identity(channels: int) -> _Space:
    return _Space(channels, channels, np.random.default_rng(0))


class _Concat:
    """The input of a decoder block: [up-sampled (space a), skip (space b)] side by side."""

    def __init__(self, a: _Space, b: _Space):
        self.index = torch.cat([a.index, b.index + a.old])
        self.copies = torch.cat([a.copies, b.copies])

    read = _Space.read


def _widen_conv(old: nn.Conv2d, new: nn.Conv2d, space_in, space_out: _Space | None, noise: float,
                gen: torch.Generator) -> None:
    w = space_in.read(old.weight.data, 1)
    if space_out is not None:
        w = space_out.write(w, 0)
    new.weight.data.copy_(_jitter(w, space_out, noise, gen, 0))
    if old.bias is not None:
        new.bias.data.copy_(old.bias.data if space_out is None else space_out.write(old.bias.data))


def _jitter(w: torch.Tensor, space: _Space | None, noise: float, gen: torch.Generator, dim: int) -> torch.Tensor:
    """Multiply the copied (new) channels' weights by 1 + noise * N(0, 1) along ``dim``."""
    if not noise or space is None or w.shape[dim] == space.old:
        return w
    w = w.clone()
    sl = [slice(None)] * w.dim()
    sl[dim] = slice(space.old, None)
    part = w[tuple(sl)]
    w[tuple(sl)] = part * (1 + noise * torch.randn(part.shape, generator=gen, dtype=part.dtype).to(part.device))
    return w


def _widen_norm(old: nn.Module, new: nn.Module, space: _Space) -> None:
    if isinstance(old, nn.BatchNorm2d):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, name).data.copy_(space.write(getattr(old, name).data))
        new.num_batches_tracked.data.copy_(old.num_batches_tracked.data)


def _widen_block(old: nn.Sequential, new: nn.Sequential, space_in, rng, noise, gen) -> _Space:
    """A ConvBlock (conv, norm, ReLU, conv, norm, ReLU[, dropout]); returns its output space."""
    mid = _Space(old[0].out_channels, new[0].out_channels, rng)
    _widen_conv(old[0], new[0], space_in, mid, noise, gen)
    _widen_norm(old[1], new[1], mid)
    out = _Space(old[3].out_channels, new[3].out_channels, rng)
    _widen_conv(old[3], new[3], mid, out, noise, gen)
    _widen_norm(old[4], new[4], out)
    return out


def widen_unet(net: UNet, width: int, noise: float = 0.0, seed: int = 0) -> UNet:
    """A U-Net of ``width`` (at least ``net``'s) that computes what ``net`` computes (see the module).

    Depth, outline conventions and dropout are kept; the returned network is in evaluation mode.
    """
    old_width = net.down[0][0].out_channels
    if width < old_width:
        raise ValueError(f"width {width} is narrower than the network's {old_width}: only growing is supported")
    dropout = next((m.p for m in net.modules() if isinstance(m, nn.Dropout2d)), 0.0)
    wide = UNet(in_channels=net.down[0][0].in_channels - net.conventions, width=width, depth=net.depth,
                norm=_norm_kind(net), dropout=dropout, conventions=net.conventions, convention=net.convention)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        space = _identity(net.down[0][0].in_channels)
        skips = []
        for old, new in zip(net.down, wide.down):
            space = _widen_block(old, new, space, rng, noise, gen)
            skips.append(space)
        space = _widen_block(net.bottom, wide.bottom, space, rng, noise, gen)
        for old_up, new_up, old_dec, new_dec, skip in zip(net.up, wide.up, net.dec, wide.dec, reversed(skips)):
            up_space = _Space(old_up.out_channels, new_up.out_channels, rng)
            w = up_space.write(space.read(old_up.weight.data, 0), 1)   # ConvTranspose2d: (in, out, k, k)
            new_up.weight.data.copy_(_jitter(w, up_space, noise, gen, 1))
            new_up.bias.data.copy_(up_space.write(old_up.bias.data))
            space = _widen_block(old_dec, new_dec, _Concat(up_space, skip), rng, noise, gen)
        _widen_conv(net.head, wide.head, space, None, noise, gen)
    return wide.eval()
