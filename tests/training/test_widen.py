"""widen_unet: the wider U-Net computes what the narrow one does, and then learns like any network."""

import pytest
import torch

from napari_nevus_seg.model.networks import UNet
from napari_nevus_seg.training.widen import widen_unet


def _trained_looking(net: UNet, seed: int = 0) -> UNet:
    """Batch-norm statistics and affine terms far from their defaults, so that a wrong copy shows; the
    output varies over the image (a network whose ReLUs are all off would hide any mistake)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return net.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to rounding: within a thousandth of how much ``a`` varies over the image."""
    return bool((a - b).abs().max() <= 1e-3 * a.std())


@pytest.mark.parametrize(("width", "new", "kwargs"), [
    (4, 6, {}),                              # not a multiple: some channels copied, some not
    (4, 8, {"depth": 3}),
    (4, 7, {"norm": "none"}),
    (4, 6, {"conventions": 3, "convention": 2}),
])
def test_the_wider_network_gives_the_same_output(width, new, kwargs):
    narrow = _trained_looking(UNet(width=width, **kwargs))
    x = torch.randn(2, 3, 32, 48)
    wide = widen_unet(narrow, new)
    assert wide.down[0][0].out_channels == new and wide.head.in_channels == new
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())
    with torch.no_grad():
        a, b = narrow(x), wide(x)
    assert a.std() > 1e-4                           # the output depends on the image
    assert _close(a, b), (a - b).abs().max()
    assert (wide.conventions, wide.convention) == (narrow.conventions, narrow.convention)


def test_noise_moves_the_output_a_little_and_the_copies_apart():
    narrow = _trained_looking(UNet(width=4))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        exact, noisy = widen_unet(narrow, 8)(x), widen_unet(narrow, 8, noise=0.01)(x)
        ref = narrow(x)
    assert _close(ref, exact)
    diff = (noisy - ref).abs().mean() / ref.abs().mean()
    assert 0 < diff < 0.1
    wide = widen_unet(narrow, 8, noise=0.01)
    w = wide.down[0][0].weight
    # the original channels are untouched (only copies are jittered)
    assert torch.equal(w[:4], widen_unet(narrow, 8).down[0][0].weight[:4])
    # every added channel is a jittered copy of an original one, never an exact one
    originals = w[:4].reshape(4, -1)
    for row in w[4:].reshape(4, -1):
        assert not any(torch.equal(row, o) for o in originals)


def test_narrowing_and_unsupported_norms_are_refused():
    with pytest.raises(ValueError, match="narrower"):
        widen_unet(UNet(width=8), 4)
    with pytest.raises(ValueError, match="batch normalisation or none"):
        widen_unet(UNet(width=4, norm="group"), 8)


def test_the_wider_network_trains():
    torch.manual_seed(0)
    wide = widen_unet(_trained_looking(UNet(width=4)), 6, noise=0.01).train()
    x = torch.randn(4, 3, 32, 32)
    y = (x[:, :1] > 0).float()
    opt = torch.optim.Adam(wide.parameters(), 1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(wide(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
