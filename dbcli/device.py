"""Device choice and distributed (torchrun) helpers."""

from __future__ import annotations

import os

import torch

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
