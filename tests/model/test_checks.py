"""Malformed but pickle-free model files are refused before anything is built, with a clear message."""

from __future__ import annotations

import os
import time

import pytest
import torch

from napari_nevus_seg import CheckpointError, build_model, load_model
from napari_nevus_seg.model.loading import default_model_path
from napari_nevus_seg.model.networks import read_checkpoint


def _ckpt(**changes):
    ckpt = read_checkpoint(default_model_path())
    for key, value in changes.items():
        if value is _DROP:
            del ckpt[key]
        else:
            ckpt[key] = value
    return ckpt


_DROP = object()


def _nested(depth: int) -> dict:
    d: dict = {}
    for _ in range(depth):
        d = {"x": d}
    return d


def _weights(fn):
    state = build_model(width=4, depth=2).to_checkpoint()["state_dict"]
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = fn(state[name].clone())
    return state


BAD = {
    "unknown architecture": (dict(arch="transformer"), "unknown architecture"),
    "extra config key": (dict(config={"width": 16, "depth": 4, "evil": 1}), "unknown configuration keys"),
    "config not a dict": (dict(config=[16, 4]), "must be a dictionary"),
    "meta not a dict": (dict(meta="hello"), "metadata must be a dictionary"),
    "huge width": (dict(config={"width": 200000, "depth": 4}), "width must be"),
    "deep network": (dict(config={"width": 16, "depth": 60}), "depth must be"),
    "bool width": (dict(config={"width": True, "depth": 4}), "width must be"),
    "convention not among them": (dict(config={"width": 16, "depth": 4, "conventions": 3, "convention": 3}),
                                  "convention must be"),
    "too many conventions": (dict(config={"width": 16, "depth": 4, "conventions": 1000}), "conventions must be"),
    "size 0": (dict(preprocess={"size": 0, "mean": [0.5] * 3, "std": [0.25] * 3}), "preprocess size"),
    "negative size": (dict(preprocess={"size": -192, "mean": [0.5] * 3, "std": [0.25] * 3}), "preprocess size"),
    "std 0": (dict(preprocess={"size": 192, "mean": [0.5] * 3, "std": [0.25, 0.0, 0.25]}), "std must be"),
    "NaN mean": (dict(preprocess={"size": 192, "mean": [float("nan")] * 3, "std": [0.25] * 3}), "mean must be"),
    "deeply nested meta": (dict(meta=_nested(200)), "nested more than"),
    "object in meta": (dict(meta={"when": torch.zeros(2)}), "metadata values must be plain"),
    "NaN weights": (dict(config={"width": 4, "depth": 2},
                         state_dict=_weights(lambda t: t.fill_(float("nan")))), "NaN or infinite"),
    "inf weights": (dict(config={"width": 4, "depth": 2},
                         state_dict=_weights(lambda t: t.fill_(float("inf")))), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_model_file_is_refused_with_its_reason(tmp_path, case):
    changes, reason = BAD[case]
    path = tmp_path / "bad.pt"
    torch.save(_ckpt(**changes), path)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=reason) as info:
        load_model(path)
    assert time.perf_counter() - t0 < 20, "refused only after building the network"
    assert str(path) in str(info.value)


def test_random_bytes_are_not_called_pickled_code(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert "pickled" not in str(info.value)
    assert "not a model file" in str(info.value)


def test_the_default_model_and_a_small_trained_one_pass(tmp_path):
    assert load_model().input_size == 192
    model = build_model(width=4, depth=2, meta={"history": [{"epoch": 1, "dice": 0.5}], "base": None})
    path = tmp_path / "ok.pt"
    torch.save(model.to_checkpoint(), path)
    assert load_model(path).config == {"width": 4, "depth": 2}
