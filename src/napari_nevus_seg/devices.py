"""Choosing the compute device, and what runs fast on it."""

from __future__ import annotations

import contextlib
import functools
import os

import torch


class DeviceUnavailableError(RuntimeError):
    """An explicitly requested device (e.g. ``"cuda"``) is not available on this machine."""


def available_devices() -> list[str]:
    """Devices usable here, best first: ``cuda``, ``mps``, ``cpu``."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA, then Apple MPS, then CPU; an explicit choice is honoured.

    Raises :class:`DeviceUnavailableError` when an explicit device is not available.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceUnavailableError(f"unsupported device {device!r}; use 'auto', 'cuda', 'mps' or 'cpu'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "device 'cuda' was requested but PyTorch sees no CUDA GPU here "
                f"(torch {torch.__version__}; a CPU-only build or no driver?). Use device='auto' or 'cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {dev} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type == "mps":
        if "mps" not in available_devices():
            raise DeviceUnavailableError("device 'mps' was requested but Apple MPS is not available here")
    elif dev.type != "cpu":
        raise DeviceUnavailableError(f"unsupported device {device!r}; use 'auto', 'cuda', 'mps' or 'cpu'")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    if os.environ.get("NEVUS_SEG_CPU_BF16") in ("0", "1"):
        return os.environ["NEVUS_SEG_CPU_BF16"] == "1"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision type worth using on ``device``, or None for plain fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cpu_cores() -> int:
    """Number of CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_THREAD_CAP: list[int] = []   # caps set by cpu_threads_capped (innermost last)
# OMP_NUM_THREADS as the process started with it (libraries such as Dask write it into the environment
# later, for the processes they start, not for this one)
_OMP_AT_START = os.environ.get("OMP_NUM_THREADS", "")


@contextlib.contextmanager
def cpu_threads_capped(n: int):
    """Within the block, :func:`use_all_cpu_threads` gives PyTorch at most ``n`` threads.

    Used while other processes of this run (outline refinement) need the remaining cores: PyTorch's
    idle threads spin for a while after each operation and would otherwise take those cores.
    """
    _THREAD_CAP.append(max(1, int(n)))
    try:
        yield
    finally:
        _THREAD_CAP.pop()
        use_all_cpu_threads()


def use_all_cpu_threads() -> int:
    """Let PyTorch use every CPU core this process may run on; returns the thread count.

    ``NEVUS_SEG_NUM_THREADS=N`` caps it (useful when other busy processes share the cores: PyTorch's
    threads then wait on each other and one thread can be several times faster than two), and so do
    ``OMP_NUM_THREADS`` as the process started with it (the usual way to share a machine's cores between
    processes; Dask workers start with 1 unless told otherwise) and :func:`cpu_threads_capped`.
    """
    n = cpu_cores()
    for cap in (os.environ.get("NEVUS_SEG_NUM_THREADS", ""), _OMP_AT_START):
        cap = cap.strip()
        if cap.isdigit() and int(cap) > 0:
            n = min(n, int(cap))
    if _THREAD_CAP:
        n = min(n, _THREAD_CAP[-1])
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
