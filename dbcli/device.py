"""Device choice, inference precision and distributed (torchrun) helpers."""

from __future__ import annotations

import os

import torch

from dbcli.cpu import cpu_supports_bf16
from dbcli.errors import DBNetError


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DBNetError("--device cuda asked for, but no CUDA device is available")
        if name == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise DBNetError(f"unknown device {name!r} (auto, cpu, cuda or cuda:N)")
    return torch.device(name)


PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """``(dtype for torch.autocast or None for fp32, a note for the user or None)`` for inference at
    ``precision`` (fp32, bf16 or fp16) on ``device``. Raises ``DBNetError`` for a precision the
    device cannot run: fp16 needs CUDA."""
    precision = precision.lower()
    if precision not in PRECISIONS:
        raise DBNetError(f"unknown --precision {precision!r} ({', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None, None
    if precision == "fp16":
        if device.type != "cuda":
            raise DBNetError("--precision fp16 runs on CUDA only; on a CPU use bf16")
        return torch.float16, None
    note = None
    if device.type == "cpu" and not cpu_supports_bf16():
        note = ("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so bf16 is "
                "emulated and slower than fp32")
    elif device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DBNetError("--precision bf16: this GPU has no bfloat16 support; use fp16")
    return torch.bfloat16, note


def world() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment (``(0, 1)`` without a launcher)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> bool:
    """Start the process group when launched by torchrun with more than one process."""
    import torch.distributed as dist

    rank, size = world()
    if size <= 1 or dist.is_initialized():
        return size > 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True
