"""CPU facts and process tuning for CPU work, torch-free (the ONNX path imports this too)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(limit: int = 4) -> int:
    """Worker processes or threads to start by default: ``limit``, or fewer on a smaller machine (so
    that PyTorch's DataLoader does not warn about more workers than CPUs)."""
    return max(1, min(limit, available_cpus()))


def cpu_supports_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX): bf16 autocast is then about
    2x faster than fp32 for DB-ResNet; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def tune_malloc() -> None:
    """Keep freed large blocks in glibc's heap instead of returning them to the OS (Linux; a no-op
    elsewhere). PyTorch's CPU allocator asks glibc for every activation buffer; by default glibc
    maps the large ones fresh and unmaps them when freed, so each forward pass page-faults its way
    through ~0.5-1 GB again: ~110k page faults and 1.3-1.4x the time of a DB-ResNet-18 forward at
    736x1312 on a 2-core CPU (bench/README.md), and worse in training. Process-wide: the CLI
    commands call it; library users may."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve blocks up to 1 GiB from the heap
    except (OSError, AttributeError):
        pass


def give_back_memory() -> None:
    """Hand the free part of glibc's heap back to the OS (``malloc_trim``; Linux, a no-op elsewhere):
    after an input is refused or fails mid-decode, what its decoder allocated must not stay with a
    long-running process (``tune_malloc`` keeps up to 1 GiB of free heap otherwise). Thread-safe."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def quiet_openmp() -> bool:
    """Let PyTorch's idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``), unless
    the user set a policy or torch is already imported (OpenMP reads it once, when torch loads).
    With a core taken by another program, spinning threads wait for a descheduled one at every
    layer's barrier: the DB-MobileNetV3 forward went from ~120 ms to 0.7-3 s on a 2-core CPU, and to
    0.3-0.8 s with this setting (bench/README.md, "Shared CPUs"). For the inference commands (the
    torch backend is their fallback); returns whether it was set. Process-wide."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
