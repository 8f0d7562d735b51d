"""``TrainConfig``: every setting of a training run, with the paper's recipe as defaults.

Torch-free on import, so that ``dbnet train --help`` shows these defaults without loading torch; the
training loop itself is ``dbcli.train``. A run folder's ``config.json`` is ``asdict(TrainConfig)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


def _default_loss() -> dict:
    """``LossConfig()`` as a dict (imported here, when a config is made, because it brings torch)."""
    from dbcli.losses import LossConfig

    return asdict(LossConfig())


@dataclass
class TrainConfig:
    dataset: str = "icdar15"
    data_root: str | None = None
    out: str | None = None
    arch: str | None = None  # None: the --init-weights file's, else resnet18
    dcn: bool | None = None  # None: the --init-weights file's, else False
    epochs: int = 1200
    batch_size: int = 16
    lr: float = 0.007
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_steps: int = 0  # linear lr warm-up over the run's first N optimizer steps (0: none)
    crop_size: int = 640
    scale_min: float = 0.5
    scale_max: float = 3.0
    max_angle: float = 10.0
    workers: int | None = None  # DataLoader workers (None: a resumed run's, else cpu.default_workers())
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    val_fraction: float = 0.1  # held out of the training split for validation / threshold picking
    val_every: int = 10  # epochs
    val_limit: int | None = None  # at most this many validation images (None: 0 = all, or a resumed run's)
    val_short_side: int = 736
    save_every: int = 1  # epochs between latest-checkpoint writes
    log_every: int = 10  # steps between plain log lines
    resume: str | None = None
    pretrained_backbone: str | None = None
    init_weights: str | None = None  # a dbnet weights file to fine-tune from (all layers; fresh optimizer)
    cache_images: bool = True
    max_steps: int = 0  # stop after this many optimizer steps in this run (0: no limit)
    # Budget: stop (with a checkpoint) after this many minutes of training in all, earlier sessions of
    # a resumed run included (0: no limit); with time_schedule the poly decay ends at that limit.
    # None: for a new run no limit, and a schedule that follows the time limit when there is one; for
    # --resume the run's own values.
    time_limit: float | None = None
    time_schedule: bool | None = None
    loss: dict = field(default_factory=_default_loss)  # LossConfig as a dict
    # Post-processing for validation (also stored in the run's weights): the values given here, then
    # (a new run) the --init-weights file's thresholds or (--resume) the run's own, then thresh 0.3 /
    # box_thresh 0.6.
    post: dict = field(default_factory=dict)
