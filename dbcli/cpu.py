"""CPU facts and process tuning for CPU work, torch-free (the ONNX path imports this too)."""

from __future__ import annotations

import sys
from pathlib import Path


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
