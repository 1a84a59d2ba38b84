"""CUDA inference gives the CPU's results (within mixed-precision tolerance). Skipped without a CUDA GPU.

Run on a GPU machine with ``benchmarks/gpu_check.sh`` (or ``pytest -m cuda tests/test_cuda.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nevus_seg import dice, load_model, predict_proba, resolve_device, segment, synthetic_lesion_image

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def cases():
    return [synthetic_lesion_image(seed=s, n_lesions=1 + s % 2) for s in range(4)]


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda").type == "cuda"


@pytest.mark.parametrize("tta", [False, True])
def test_probabilities_match_cpu(model, cases, tta):
    for c in cases:
        p_cpu = predict_proba(c.image, model=model, device="cpu", tta=tta)
        p_gpu = predict_proba(c.image, model=model, device="cuda", tta=tta)
        assert p_gpu.shape == p_cpu.shape and p_gpu.dtype == np.float32
        diff = np.abs(p_gpu - p_cpu)
        assert diff.mean() < 0.005 and diff.max() < 0.1, (diff.mean(), diff.max())


def test_labels_match_cpu(model, cases):
    for c in cases:
        l_cpu = segment(c.image, model=model, device="cpu")
        l_gpu = segment(c.image, model=model, device="cuda")
        assert l_gpu.dtype == np.int32 and l_gpu.shape == l_cpu.shape
        assert dice(l_gpu > 0, l_cpu > 0) > 0.99
        assert dice(l_gpu == 1, l_cpu == 1) > 0.98


def test_stack_is_batched_and_matches_planes(model, cases):
    stack = np.stack([c.image for c in cases] * 3)  # 12 planes, batches of 8
    labs = segment(stack, model=model, device="cuda", batch_size=8)
    assert labs.shape == stack.shape[:3] and labs.dtype == np.int32
    for i, c in enumerate(cases):
        single = segment(c.image, model=model, device="cuda")
        for j in (i, i + 4, i + 8):
            assert dice(labs[j] > 0, single > 0) > 0.995


def test_large_image_on_cuda_and_memory_released(model):
    h, w = 4000, 6000
    img = np.full((h, w, 3), 205, np.uint8)
    yy, xx = np.ogrid[:h, :w]
    inside = ((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2 < 1
    img[inside] = 60
    segment(img[:64, :64], model=model, device="cuda")  # warm up (the network copy stays on the GPU)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    lab = segment(img, model=model, device="cuda")
    torch.cuda.synchronize()
    assert lab.shape == (h, w) and lab.dtype == np.int32
    assert dice(lab > 0, inside) > 0.9
    assert torch.cuda.memory_allocated() - before < 64 * 2**20  # nothing large left on the GPU
