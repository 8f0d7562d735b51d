"""A run's ``--out`` folder (``open_run_folder``): a new run's refused when it holds an earlier run
(unless ``--overwrite``: then its files are deleted), and never when it would replace the run's own
starting weights; its housekeeping said in the run's log (``say_housekeeping``). Torch-free."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dbcli.errors import DBNetError
from dbcli.outputs.atomic import acquire_lock, release_lock, remove_stale_temps
from dbcli.training.config import RESUME_KEEPS, TrainConfig, option

# What a run writes besides train.log (which it appends to): the files an earlier run would lose.
RUN_FILES = ("latest.pt", "best.pt", "weights.pt", "metrics.jsonl", "config.json")


def earlier_run_files(out: Path) -> list[str]:
    """The names of ``RUN_FILES`` present in ``out`` (none when ``out`` does not exist)."""
    return [name for name in RUN_FILES if (out / name).exists()] if out.is_dir() else []


def check_new_run_folder(out: Path, overwrite: bool, inputs: dict[str, str | None]) -> list[str]:
    """Refuse (``DBNetError`` naming the folder) an ``out`` that is not a folder, or that holds an
    earlier run when ``overwrite`` is off; an empty or unrelated folder is fine. ``inputs``: option ->
    file the run reads (``--init-weights``, ``--pretrained-backbone``), refused even with
    ``overwrite`` when it is one of the files the run would replace. Returns the earlier run's files
    that ``--overwrite`` will delete."""
    if out.exists() and not out.is_dir():
        raise DBNetError(f"{out}: --out must be a run folder, and this is a file")
    found = earlier_run_files(out)
    for name, path in inputs.items():
        if path and Path(path).exists() and any(Path(path).resolve() == (out / f).resolve() for f in found):
            raise DBNetError(f"{path}: {name} names a file of the run folder {out} that a new run there would "
                             "replace; copy it elsewhere or pick a new --out")
    if found and not overwrite:
        raise DBNetError(f"{out}: holds an earlier run ({', '.join(found)}); pass --resume {out} to continue it, "
                         "--overwrite to start again there, or a new --out")
    return found


def clear_run_folder(out: Path, names: list[str]) -> None:
    """Delete the earlier run's files ``names`` from ``out`` (``--overwrite``)."""
    for name in names:
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DBNetError(f"{out / name}: cannot delete the earlier run's file for --overwrite "
                             f"({exc.strerror or exc})") from None


def run_folder_path(config: TrainConfig) -> Path:
    """The run's folder: ``--out``, else ``runs/DATASET-ARCH-TIMESTAMP`` (a resumed run's: its own)."""
    return Path(config.out or f"runs/{config.dataset}-{config.arch}-{time.strftime('%Y%m%d-%H%M%S')}")


@contextmanager
def run_folder_lock(out: Path, is_main: bool) -> Iterator[None]:
    """The run folder ``out`` held by this run for the block (``<out>.lock``, the lock ``dbnet detect``
    takes on its output: ``dbcli.outputs.atomic.acquire_lock``), taken before the folder is checked,
    so that a second run into it (new or resumed) is refused naming the folder and the live run
    instead of both writing there. The main process takes it (torchrun's other ranks are the same run)."""
    if not is_main:
        yield
        return
    try:
        lock = acquire_lock(os.path.abspath(out))  # (abspath: "--out ." has a name to put the lock beside)
    except OSError as exc:
        raise DBNetError(f"{out}: cannot create the run folder's lock ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        release_lock(lock)


def open_run_folder(config: TrainConfig, out: Path, resuming: bool, is_main: bool) -> tuple[Path, list[str]]:
    """The run's folder ``out`` (``run_folder_path``) and the earlier run's files that ``--overwrite``
    deleted there. A new run's folder is checked first (``check_new_run_folder``); the main process
    creates it (a ``DBNetError`` when it cannot) and deletes those files. Call it holding
    ``run_folder_lock``."""
    earlier = [] if resuming else check_new_run_folder(
        out, config.overwrite, {"--init-weights": config.init_weights,
                                "--pretrained-backbone": config.pretrained_backbone})
    if is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DBNetError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
        clear_run_folder(out, earlier)
    return out, earlier


def say_housekeeping(log: Callable[[str], None], out: Path, earlier: list[str], ignored: list[str],
                     is_main: bool) -> None:
    """The run folder's housekeeping, in the log: an earlier run deleted (``--overwrite``), the options a
    ``--resume`` ignores, and temp files an interrupted checkpoint write left (removed)."""
    if earlier:
        log(f"--overwrite: a new run in {out}; the earlier run's {', '.join(earlier)} deleted")
    if ignored:
        taken = [option(name) for name in RESUME_KEEPS if name != "resume"] + ["--thresh", "--box-thresh"]
        log(f"note: --resume continues the run with its own settings; ignored: {', '.join(ignored)} (--resume "
            f"takes only {', '.join(taken)} from the command line)")
    for tmp in remove_stale_temps(out, ["latest.pt", "best.pt", "weights.pt"]) if is_main else []:
        log(f"removed {tmp} (the temp file of an interrupted checkpoint write)")
