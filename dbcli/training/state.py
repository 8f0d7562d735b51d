"""What a run trains with, set up once (``Run``: ``dbcli.training.setup.setup_run``), what changes as
it trains and ``--resume`` restores (``RunState``), why it stopped early (``Stop``) and where it says
so (``RunLog``). Plain records: the modules of ``dbcli.training`` pass them around."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dbcli.data.datasets import Sample
from dbcli.models import DBNet
from dbcli.postprocess.boxes import PostConfig
from dbcli.training.config import TrainConfig
from dbcli.training.data import EpochSampler
from dbcli.training.losses import LossConfig


class Stop(Enum):
    """Why a run stopped before its last epoch (``None``: it did not)."""

    NON_FINITE = "non-finite"
    MAX_STEPS = "max-steps"
    TIME_LIMIT = "time-limit"
    SIGNAL = "sigterm"  # SIGTERM: stopped at the end of a step (dbcli.training.interrupts)


@dataclass
class RunLog:
    """Messages to the console and ``train.log`` (main process only; the others stay silent)."""

    console: Any
    file: Any = None  # the open train.log, or None

    def to_file(self, message: str) -> None:
        """``message`` in ``train.log`` only (a line the command says on stderr itself)."""
        if self.file is not None:
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.file.flush()

    def __call__(self, message: str) -> None:
        if self.file is not None:
            # soft_wrap: a long line is one line (a terminal wraps it; a file or pipe keeps it whole)
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.file.flush()


@dataclass
class Run:
    """What a run trains with, set up once (``dbcli.training.setup.setup_run``)."""

    config: TrainConfig
    out: Path
    device: torch.device
    distributed: bool
    rank: int
    world_size: int
    log: RunLog
    command_line: str
    model: DBNet
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    amp_dtype: torch.dtype | None
    loss_config: LossConfig
    post: PostConfig
    loader: DataLoader
    sampler: EpochSampler
    train_samples: list[Sample]
    val_samples: list[Sample]
    val_images: list[np.ndarray] | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch


@dataclass
class RunState:
    """What changes as a run trains (restored by ``--resume``)."""

    start_epoch: int = 0
    step: int = 0
    best_hmean: float = -1.0
    bad_steps: int = 0
    lr: float = 0.0
    skip_batches: int = 0  # batches of start_epoch already trained on (a run stopped mid-epoch)
    start_step: int = 0  # --max-steps counts the steps of this run
    started: float = 0.0  # the run's clock: earlier sessions of a resumed run included
    last_val: dict = field(default_factory=dict)
    finished_epoch: int = 0  # complete epochs
    last_epoch: int = 0  # the epoch (from 1, as the log counts) the run was last in, complete or not
    stop: Stop | None = None
    stop_message: str = ""
    # fine-tuning: {"start": ..., "best": ..., "checkpoint": ...} (hmean, label, per-image counts)
    selection: dict = field(default_factory=dict)
    head_steps: int = 0  # steps trained by the threshold-branch warm-up (--head-warmup-steps)
    training_from: float = 0.0  # when this session's first step began (the start's validation excluded)
    pace: tuple[float, int] | None = None  # (time, step) after this session's first step: its pace is timed
    budget_judged: bool = False  # whether the time limit was judged against the warm-ups (say_short_budget)
