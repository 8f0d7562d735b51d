"""``dbnet detect`` under torchrun: which share of the images this process takes, and the merge of
every rank's records on rank 0 (``merge_ranks``). Only the merge imports torch, lazily: the ONNX
path stays torch-free in a single process.
"""

from __future__ import annotations

import os

from dbcli.engine.records import Failure, ImageRecord
from dbcli.errors import DBNetError

LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")  # what torchrun sets beside RANK and WORLD_SIZE


def world() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's variables (``(0, 1)`` without them). ``DBNetError`` when
    they are not whole numbers with 0 <= rank < size, or when a size above 1 comes without the
    rendezvous address torchrun sets (``RANK=0 WORLD_SIZE=2`` typed by hand or left over in the
    environment: the process group could never start)."""
    try:
        rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise DBNetError(f"RANK={os.environ.get('RANK', '')!r} WORLD_SIZE={os.environ.get('WORLD_SIZE', '')!r}: "
                         "not whole numbers (these variables are torchrun's)") from None
    if size < 1 or not 0 <= rank < size:
        raise DBNetError(f"RANK={rank} WORLD_SIZE={size}: the rank must lie in [0, WORLD_SIZE)")
    missing = [name for name in LAUNCHER_VARIABLES if not os.environ.get(name)]
    if size > 1 and missing:
        raise DBNetError(f"RANK={rank} WORLD_SIZE={size} are set but {' and '.join(missing)} not: these "
                         "variables are torchrun's; start with `torchrun --nproc-per-node N -m dbcli ...` "
                         "or unset them for one process")
    return rank, size


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
