"""``dbnet detect`` under torchrun: which share of the images this process takes, and the merge of
every rank's records on rank 0 (``merge_ranks``). Only the merge imports torch, lazily: the ONNX
path stays torch-free in a single process.
"""

from __future__ import annotations

import os

from dbcli.engine.records import Failure, ImageRecord
from dbcli.errors import DBNetError


def world() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's variables (``dbcli.device.world`` reads the same ones but
    imports torch)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def gather(local: list, size: int, error: str | None = None) -> list:
    """All ranks' lists, in rank order (torch.distributed over gloo: small Python objects, any
    backend/device). Every rank calls it, a failed one too (with its ``error``): then every rank
    raises ``DBNetError`` naming the failed ranks, instead of the others waiting for it forever."""
    import torch.distributed as dist

    started = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    gathered: list = [None] * size
    try:
        dist.all_gather_object(gathered, (error, local))
    finally:
        if started:
            dist.destroy_process_group()
    errors = [f"rank {r}: {e}" for r, (e, _) in enumerate(gathered) if e is not None]
    if errors:
        raise DBNetError("detect failed on " + "; ".join(errors))
    return [item for _, part in gathered for item in part]


def describe(exc: BaseException) -> str:
    """One line for an exception of this rank, as the other ranks will print it."""
    if isinstance(exc, DBNetError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def merge_ranks(records: list[ImageRecord], failures: list[Failure], size: int, error: str | None
                ) -> tuple[list[ImageRecord], int]:
    """Every rank's records in input order (they travel as their JSON entries), and how many images
    failed on any rank."""
    merged = gather([(r.index, r.to_dict()) for r in records] + [(f.index, f.message) for f in failures],
                    size, error)
    merged.sort(key=lambda t: t[0])
    done = [ImageRecord.from_dict(i, d) for i, d in merged if isinstance(d, dict)]
    return done, len(merged) - len(done)
