"""Choosing the compute device, and what runs fast on it."""

from __future__ import annotations

import contextlib
import functools
import os
import threading

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
# "ours": the count use_all_cpu_threads last gave PyTorch; "caller": a count the caller chose with
# torch.set_num_threads, which is then kept
_THREADS: dict[str, int | None] = {"ours": None, "caller": None}
_THREADS_LOCK = threading.Lock()


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


@functools.lru_cache(maxsize=1)
def _physical_cores() -> int | None:
    """Physical cores among those this process may run on (Linux; None where unknown).

    PyTorch starts with this many threads on a machine with two hardware threads per core.
    """
    try:
        allowed = os.sched_getaffinity(0)
        with open("/proc/cpuinfo") as fh:
            blocks = fh.read().strip().split("\n\n")
    except (AttributeError, OSError):
        return None
    cores = set()
    for block in blocks:
        info = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        if "core id" not in info or not info.get("processor", "").isdigit():
            return None
        if int(info["processor"]) in allowed:
            cores.add((info.get("physical id"), info["core id"]))
    return len(cores) or None


def use_all_cpu_threads() -> int:
    """Let PyTorch use every CPU core this process may run on; returns the thread count.

    A count the caller chose with ``torch.set_num_threads`` (in a notebook, in napari's console,
    before or between calls) is kept. ``NEVUS_SEG_NUM_THREADS=N`` caps it (useful when other busy
    processes share the cores: PyTorch's threads then wait on each other and one thread can be several
    times faster than two), and so do ``OMP_NUM_THREADS`` as the process started with it (the usual way
    to share a machine's cores between processes; Dask workers start with 1 unless told otherwise) and
    :func:`cpu_threads_capped`.
    """
    n = cpu_cores()
    caps = [int(c) for c in (os.environ.get("NEVUS_SEG_NUM_THREADS", "").strip(), _OMP_AT_START.strip())
            if c.isdigit() and int(c) > 0]
    with _THREADS_LOCK:
        current = torch.get_num_threads()
        if _THREADS["ours"] is None:
            # first call: fewer threads than cores, and not PyTorch's own start (one per physical
            # core), were chosen by the caller
            if current < min([n, *caps]) and current != _physical_cores():
                _THREADS["caller"] = current
        elif current != _THREADS["ours"]:
            _THREADS["caller"] = current  # set since our last call: the caller's choice
        if _THREADS["caller"]:
            n = _THREADS["caller"]
        n = min([n, *caps, *_THREAD_CAP[-1:]])
        if current != n:
            torch.set_num_threads(n)
        _THREADS["ours"] = n
    return n
