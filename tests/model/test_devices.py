"""Device choice: auto order CUDA -> MPS -> CPU, explicit choices honoured, unavailable ones a clear error."""

from __future__ import annotations

import pytest
import torch

from napari_nevus_seg import DeviceUnavailableError, available_devices, resolve_device
from napari_nevus_seg.model import devices


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_is_always_available_and_last():
    devs = available_devices()
    assert devs[-1] == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_falls_back_to_cpu(no_accelerators):
    assert available_devices() == ["cpu"]
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("AUTO") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert available_devices() == ["cuda", "mps", "cpu"]
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_devices() == ["mps", "cpu"]
    assert resolve_device("auto").type == "mps"
    assert resolve_device("mps").type == "mps"  # explicit and available: honoured


def test_explicit_unavailable_device_is_a_clear_error(no_accelerators):
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        resolve_device(torch.device("cuda", 0))
    with pytest.raises(DeviceUnavailableError, match="MPS"):
        resolve_device("mps")
    assert issubclass(DeviceUnavailableError, RuntimeError)


def test_cuda_index_beyond_the_gpus_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceUnavailableError, match="1 GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["gpu", "tpu", "xpu", "cuda:x", ""])
def test_unknown_device_names(name):
    with pytest.raises(DeviceUnavailableError, match="unsupported device"):
        resolve_device(name)


def test_autocast_choice(monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_CPU_BF16", "0")
    devices.cpu_has_native_bf16.cache_clear()
    try:
        assert devices.autocast_dtype(torch.device("cpu")) is None
        monkeypatch.setenv("NEVUS_SEG_CPU_BF16", "1")
        devices.cpu_has_native_bf16.cache_clear()
        assert devices.autocast_dtype(torch.device("cpu")) is torch.bfloat16
        assert devices.autocast_dtype(torch.device("mps")) is None
    finally:
        devices.cpu_has_native_bf16.cache_clear()


@pytest.fixture
def fresh_threads(monkeypatch):
    """PyTorch's thread count and the choice use_all_cpu_threads remembers, as a new process has them."""
    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "_THREADS", {"ours": None, "caller": None})
    yield
    torch.set_num_threads(before)


def test_use_all_cpu_threads(fresh_threads, monkeypatch):
    monkeypatch.setattr(devices, "cpu_cores", lambda: 4)
    monkeypatch.setattr(devices, "_physical_cores", lambda: 2)
    torch.set_num_threads(2)          # PyTorch's start on 2 cores with 2 hardware threads each
    assert devices.use_all_cpu_threads() == 4 and torch.get_num_threads() == 4
    assert devices.use_all_cpu_threads() == 4


def test_callers_thread_count_is_kept(fresh_threads, monkeypatch):
    monkeypatch.setattr(devices, "cpu_cores", lambda: 4)
    monkeypatch.setattr(devices, "_physical_cores", lambda: 4)
    torch.set_num_threads(1)          # set by the caller before the first call
    assert devices.use_all_cpu_threads() == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(3)          # and between calls
    assert devices.use_all_cpu_threads() == 3 and torch.get_num_threads() == 3
    with devices.cpu_threads_capped(2):
        assert devices.use_all_cpu_threads() == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 3   # the caller's count again after the cap


def test_segment_keeps_callers_thread_count(fresh_threads):
    from napari_nevus_seg import segment, synthetic_lesion_image

    torch.set_num_threads(1)          # a notebook sharing the machine
    segment(synthetic_lesion_image(seed=3, shape=(64, 64)).image, device="cpu")
    assert torch.get_num_threads() == 1


def test_num_threads_env_caps_threads(fresh_threads, monkeypatch):
    monkeypatch.setenv("NEVUS_SEG_NUM_THREADS", "1")
    assert devices.use_all_cpu_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("NEVUS_SEG_NUM_THREADS", "not a number")  # ignored, not a crash
    assert devices.use_all_cpu_threads() >= 1
    monkeypatch.delenv("NEVUS_SEG_NUM_THREADS")
    monkeypatch.setattr(devices, "_OMP_AT_START", "1")   # a process started with OMP_NUM_THREADS=1
    assert devices.use_all_cpu_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(devices, "_OMP_AT_START", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")           # set later (Dask does, for its workers): not ours
    assert devices.use_all_cpu_threads() == devices.cpu_cores()
