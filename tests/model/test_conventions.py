"""A U-Net told which outline convention to draw: extra one-hot input planes, stored in the model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nevus_seg import build_model, load_model, network_map, save_model, segment
from napari_nevus_seg.io.synthetic import synthetic_lesion_image


def _plain_and_conditioned(conventions: int = 3):
    torch.manual_seed(0)
    plain = build_model(width=4, depth=2)
    cond = build_model(width=4, depth=2, conventions=conventions)
    state = dict(plain.net.state_dict())
    w = state["down.0.0.weight"]
    state["down.0.0.weight"] = torch.cat([w, torch.zeros(w.shape[0], conventions, *w.shape[2:])], 1)
    cond.net.load_state_dict(state)
    return plain.net.eval(), cond.net.eval()


def test_zero_convention_weights_leave_the_plain_network_unchanged():
    plain, cond = _plain_and_conditioned()
    x = torch.randn(2, 3, 32, 32)
    for k in range(3):
        torch.testing.assert_close(cond(x, torch.tensor([k, k])), plain(x))


def test_each_image_gets_its_own_convention_plane():
    _, cond = _plain_and_conditioned()
    with torch.no_grad():
        cond.down[0][0].weight[:, 3:] = 0.0
        cond.down[0][0].weight[:, 5] = 1.0   # only convention 2's plane reaches the network
    x = torch.randn(1, 3, 32, 32).expand(2, -1, -1, -1)
    out = cond(x, torch.tensor([0, 2]))
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(cond(x[:1], torch.tensor([2])), out[1:])
    cond.convention = 2   # the stored default is what the inference pipeline gets
    torch.testing.assert_close(cond(x[:1]), out[1:])
    cond.convention = 0
    torch.testing.assert_close(cond(x[:1]), out[:1])


def test_the_convention_travels_with_the_model_file(tmp_path):
    torch.manual_seed(1)
    model = build_model(width=4, depth=2, conventions=2, convention=1)
    model.net.eval()
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    assert loaded.net.conventions == 2 and loaded.net.convention == 1 and loaded.config["convention"] == 1
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), model.net(x, torch.tensor([1])))
        assert not torch.allclose(loaded.net(x), model.net(x, torch.tensor([0])))
    loaded.net.convention = 0   # changed in place: saved as changed
    again = load_model(save_model(loaded, tmp_path / "m0.pt"))
    assert again.net.convention == 0 and again.config["convention"] == 0
    with torch.no_grad():
        torch.testing.assert_close(again.net(x), model.net(x, torch.tensor([0])))


def test_the_pipeline_segments_with_a_conditioned_model():
    model = build_model(width=4, depth=2, conventions=3, convention=2)
    img = synthetic_lesion_image(seed=0, shape=(96, 128)).image
    labels = segment(img, model=model, refine=False, device="cpu")
    assert labels.shape == img.shape[:2] and labels.dtype.kind in "iu"


@pytest.mark.parametrize("conventions, convention", [(-1, 0), (2, 2), (0, 1)])
def test_impossible_conventions_are_refused(conventions, convention):
    with pytest.raises(ValueError, match="convention"):
        build_model(conventions=conventions, convention=convention)


def test_changing_the_convention_in_place_changes_the_outline():
    torch.manual_seed(2)
    model = build_model(width=4, depth=2, conventions=2, convention=0)
    with torch.no_grad():
        model.net.down[0][0].weight[:, 3] = 0.0
        model.net.down[0][0].weight[:, 4] = 5.0
    img = synthetic_lesion_image(seed=0, shape=(96, 128)).image

    first = network_map(img, model=model, device="cpu")[1].numpy()
    model.net.convention = 1   # the inference copy of the network must not keep the old convention
    second = network_map(img, model=model, device="cpu")[1].numpy()
    assert not np.allclose(first, second)
    model.net.convention = 0
    np.testing.assert_array_equal(network_map(img, model=model, device="cpu")[1].numpy(), first)


def test_fine_tuning_a_conditioned_model_keeps_its_convention_and_teaches_it():
    from napari_nevus_seg import dice, fine_tune

    torch.manual_seed(3)
    base = build_model(width=4, depth=2, conventions=2, convention=1,
                       preprocess={"size": 48, "mean": [0.5] * 3, "std": [0.25] * 3})
    cases = [synthetic_lesion_image(seed=s, shape=(60, 80)) for s in range(8)]
    images, masks = [c.image for c in cases], [c.labels for c in cases]
    before = np.mean([dice(segment(i, model=base, refine=False, device="cpu") > 0, m > 0)
                      for i, m in zip(images, masks)])
    tuned = fine_tune(images, masks, base=base, device="cpu", epochs=6, steps_per_epoch=6, lr=3e-3,
                      patience=None, blend=1.0, replay=0, holdout=0.25)
    assert tuned.net.conventions == 2 and tuned.net.convention == 1 and tuned.config["convention"] == 1
    after = np.mean([dice(segment(i, model=tuned, refine=False, device="cpu") > 0, m > 0)
                     for i, m in zip(images, masks)])
    assert after > before + 0.2, (before, after)
