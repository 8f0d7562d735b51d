"""``TrainConfig``: every setting of a training run, with the paper's recipe as defaults.

Each setting that ``dbnet train`` takes is declared with ``dbcli.optionspec.option`` (its help text in
the field's metadata, no CLI framework imported; ``dbcli.commands.common.options_from`` reads them), so
the defaults are stated here only. Torch-free on import, so that ``dbnet train --help`` does not load
torch; the training loop itself is ``dbcli.training.loop``. A run folder's ``config.json`` is
``asdict(TrainConfig)``.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Optional

from dbcli import defaults
from dbcli.errors import DBNetError
from dbcli.optionspec import option as opt  # (`option` below names a field's flag)
from dbcli.weights import shipped_names

ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3")  # dbcli.models.ARCHS (that module loads torch)


def _default_loss() -> dict:
    """``LossConfig()`` as a dict (imported here, when a config is made, because it brings torch)."""
    from dbcli.training.losses import LossConfig

    return asdict(LossConfig())


@dataclass
class TrainConfig:
    dataset: str = opt("icdar15", help="icdar15, td500, totaltext, ctw1500 or custom.")
    data_root: Optional[str] = opt(None, help="Dataset folder (default: $DBNET_DATA/<dataset>).")
    out: Optional[str] = opt(None, help="Run folder (default: runs/<dataset>-<arch>-<time>).")
    overwrite: bool = opt(
        False, help="Start a new run in an --out folder that holds an earlier one, deleting its checkpoints, "
                    "weights and metrics (without it such a folder is refused).")
    arch: Optional[str] = opt(  # None: the --init-weights file's, else resnet18
        None, show_default=False,
        help="resnet18, resnet34, resnet50 or mobilenet_v3 (default: the --init-weights file's, else resnet18).")
    dcn: Optional[bool] = opt(  # None: the --init-weights file's, else False
        None, show_default=False,
        help="Deformable convolution in stages 3-5 (ResNets; default: the --init-weights file's, else off).")
    epochs: int = opt(1200, help="Passes over the training images (paper: 1200).")
    batch_size: int = opt(16, help="Images per step per process (paper: 16).")
    lr: float = opt(0.007, help="Initial learning rate, poly decay with power 0.9.")
    optimizer: str = opt(
        "sgd", help="sgd (paper: momentum 0.9) or adamw (from-scratch runs on a small budget leave the constant-map "
                    "plateau sooner; use --lr 0.001).")
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_steps: int = opt(  # linear lr warm-up over the run's first N optimizer steps (0: none)
        0, help="Raise the lr linearly from ~0 over the first N steps (paper: none).")
    crop_size: int = opt(640, help="Square training crop side in pixels.")
    scale_min: float = opt(0.5, help="Smallest random rescale factor.")
    scale_max: float = opt(3.0, help="Largest random rescale factor.")
    max_angle: float = 10.0
    workers: Optional[int] = opt(  # DataLoader workers (None: a resumed run's, else cpu.default_workers())
        None, show_default=False,
        help="DataLoader worker processes (labels are made there). Default: 4, or the CPUs available if "
             "fewer; with --resume: the run's.")
    seed: int = opt(0)
    device: str = opt("auto", help="auto, cpu, cuda or cuda:N.")
    amp: bool = opt(True, help="Mixed precision (fp16 on CUDA, bf16 on CPUs with AVX512-BF16/AMX).")
    val_fraction: float = opt(  # held out of the training split for validation / threshold picking
        0.1, help="Share of training images held out for validation.")
    val_every: int = opt(10, help="Validate every N epochs.")  # epochs
    val_limit: Optional[int] = opt(  # at most this many validation images (None: 0 = all, or a resumed run's)
        None, show_default=False,
        help="Validate on at most N held-out images (default: all; with --resume: the run's).")
    val_short_side: int = opt(defaults.SHORT_SIDE, help="Validation test scale: shorter side in pixels.")
    save_every: int = 1  # epochs between latest-checkpoint writes
    log_every: int = 10  # steps between plain log lines
    resume: Optional[str] = opt(None, help="Run folder or checkpoint to continue exactly.")
    pretrained_backbone: Optional[str] = opt(None, help="torchvision ImageNet ResNet state dict.")
    init_weights: Optional[str] = opt(  # a dbnet weights file to fine-tune from (all layers; fresh optimizer)
        None, help=f"Fine-tune: start from this dbnet weights file or shipped name ({shipped_names()}) with a new "
                   f"optimizer and schedule; its architecture is used. The fine-tuning recipe then fills every "
                   f"option not given: each option's help says its value (\"With --init-weights: ...\").")
    cache_images: bool = opt(
        True, help="Decode the images once and keep them in memory, as many as --cache-mb holds (the rest "
                   "are decoded as they are used).")
    cache_mb: Optional[float] = opt(  # None: cache.default_budget_mb()
        None, show_default=False,
        help="Memory for --cache-images, in MB per process (default: 2048 or a quarter of the available RAM, "
             "whichever is less).")
    max_steps: int = opt(  # stop after this many optimizer steps in this run (0: no limit)
        0, help="Stop after N optimizer steps in this run (0: no limit).")
    # Budget: stop (with a checkpoint) after this many minutes of training in all, earlier sessions of
    # a resumed run included (0: no limit); with time_schedule the poly decay ends at that limit.
    # None: for a new run no limit, and a schedule that follows the time limit when there is one; for
    # --resume the run's own values.
    time_limit: Optional[float] = opt(
        None, show_default=False,
        help="Stop with a checkpoint once the run has trained N minutes, earlier sessions of a resumed run "
             "included, with the lr schedule fitted into them (see --time-schedule). Default: no limit; with "
             "--resume: the run's.")
    time_schedule: Optional[bool] = opt(
        None, show_default=False,
        help="With --time-limit: the poly lr decay ends at the time limit (or the last epoch, if sooner), so "
             "that a run stopped by it ends at a low lr. Default: on with --time-limit; with --resume: the "
             "run's.")
    loss: dict = field(default_factory=_default_loss)  # LossConfig as a dict
    # Post-processing for validation (also stored in the run's weights): the values given here, then
    # (a new run) the --init-weights file's thresholds or (--resume) the run's own, then thresh 0.3 /
    # box_thresh 0.6.
    post: dict = field(default_factory=dict)
    # Fine-tuning (--init-weights): see dbcli.training.recipe. None: the recipe's choice for a new
    # fine-tuning run, off otherwise.
    recipe: Optional[bool] = opt(
        None, show_default=False,
        help="With --init-weights: the fine-tuning recipe fills every option not given (AdamW lr 1e-3, "
             "warm-up, 512 crops scaled around the test scale, threshold-branch warm-up, thresholds "
             "re-picked on the validation split). Default: on with --init-weights.")
    head_warmup_steps: Optional[int] = opt(
        None, show_default=False,
        help="Train only the threshold branch (everything else frozen, BatchNorm statistics included) for "
             "the first N steps. Default with the recipe: 100 when the --init-weights file's threshold "
             "branch is a copy of its probability branch (a converted PaddleOCR model), else 0.")
    reset_thresh_branch: Optional[bool] = opt(
        None, show_default=False,
        help="Start the threshold branch as a constant map at the validation --thresh (its last layer's "
             "weights zeroed), so that the binary map is the probability map binarised as at inference "
             "from the first step. Default with the recipe: on when the --init-weights file's threshold "
             "branch is a copy of its probability branch (a converted PaddleOCR model), else off.")
    scale_reference: Optional[int] = opt(
        None, show_default=False,
        help="Make --scale-min / --scale-max relative to the scale an image is detected at (its shorter side "
             "brought to N px), so text is trained at the size it is seen at: scans, long pages and photos "
             "alike. 0: relative to the image as stored (the paper's). Default with the recipe: "
             "--val-short-side.")
    pick_thresholds: Optional[bool] = opt(
        None, show_default=False,
        help="Judge the start and every checkpoint at its own best thresh x box_thresh on the validation "
             "split (one network pass, then a sweep) and store the chosen one's pair in weights.pt. "
             "Default with the recipe: on unless --thresh / --box-thresh are given.")


# --- validation at the edge: every setting checked before any work ---------------------------------
MAX_CROP_SIZE = 4096  # pixels: a batch of 16 such crops and their label maps is ~7 GB
MAX_SEED = 2**32 - 1025  # numpy seeds are 32-bit; each process adds its rank (up to 1024)
OPTIMIZERS = ("sgd", "adamw")
# Settings that --resume takes from this process rather than from the run (the rest are the run's).
RESUME_KEEPS = ("resume", "device", "workers", "max_steps", "time_limit", "time_schedule", "val_limit", "data_root",
                "cache_images", "cache_mb")


def option(name: str) -> str:
    """The ``dbnet train`` option of the field ``name``: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _shown(name: str, value: object) -> str:
    """``--batch-size 8``, ``--amp`` / ``--no-amp``."""
    if isinstance(value, bool):
        return option(name) if value else "--no-" + name.replace("_", "-")
    return f"{option(name)} {value}"


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_ints(config: TrainConfig) -> None:
    """Whole-number settings: each within its range (``None``: its default)."""
    bounds = {"epochs": (1, None, "0 epochs would write an untrained weights.pt"),
              "batch_size": (1, None, ""), "crop_size": (32, MAX_CROP_SIZE, ""), "val_every": (1, None, ""),
              "save_every": (1, None, ""), "log_every": (1, None, ""), "warmup_steps": (0, None, ""),
              "max_steps": (0, None, "0: no limit"), "workers": (0, 256, ""), "val_limit": (0, None, "0: all"),
              "seed": (0, MAX_SEED, ""), "val_short_side": (32, 4096, ""), "head_warmup_steps": (0, None, ""),
              "scale_reference": (0, 4096, "0: relative to the image as stored")}
    for name, (low, high, note) in bounds.items():
        value = getattr(config, name)
        if value is None and name in ("workers", "val_limit", "head_warmup_steps", "scale_reference"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise DBNetError(f"{option(name)} must be a whole number {allowed}, not {value!r}"
                             + (f" ({note})" if note else ""))
    if config.crop_size % 32:
        raise DBNetError(f"--crop-size must be a multiple of 32 (the network's stride), not {config.crop_size}")


def _check_floats(config: TrainConfig) -> None:
    """Real-valued settings: finite and within range."""
    checks = {"lr": (config.lr >= 0, "at least 0"),
              "momentum": (0 <= config.momentum < 1, "in [0, 1)"),
              "weight_decay": (config.weight_decay >= 0, "at least 0"),
              "poly_power": (config.poly_power >= 0, "at least 0"),
              "scale_min": (0 < config.scale_min <= config.scale_max, "above 0 and at most --scale-max"),
              "scale_max": (config.scale_max <= 100, "at most 100"),
              "max_angle": (0 <= config.max_angle <= 180, "in [0, 180] degrees"),
              "val_fraction": (0 <= config.val_fraction < 1, "in [0, 1)")}
    for name, (ok, allowed) in checks.items():
        value = getattr(config, name)
        if not _finite(value) or not ok:
            raise DBNetError(f"{option(name)} must be a finite number {allowed}, not {value!r}")
    if config.time_limit is not None and not (_finite(config.time_limit) and config.time_limit > 0):
        raise DBNetError(f"--time-limit must be a finite number of minutes above 0, not {config.time_limit!r} "
                         "(leave it out for no limit)")
    if config.cache_mb is not None and not (_finite(config.cache_mb) and config.cache_mb >= 0):
        raise DBNetError(f"--cache-mb must be a finite number of MB, at least 0, not {config.cache_mb!r}")
    for name, value in config.post.items():
        if name in ("thresh", "box_thresh") and not (_finite(value) and 0 <= value <= 1):
            raise DBNetError(f"{option(name)} must be a finite number in [0, 1], not {value!r}")


def check_config(config: TrainConfig) -> None:
    """Refuse, with one ``DBNetError`` line naming the option, any setting a run cannot train with:
    numbers out of range or not finite, unknown choices, contradictory options. Called before any
    file is read or written."""
    from dbcli.data.datasets import DATASETS

    _check_ints(config)
    _check_floats(config)
    if config.dataset not in DATASETS:
        raise DBNetError(f"--dataset must be one of {', '.join(DATASETS)}, not {config.dataset!r}")
    if config.arch is not None and config.arch not in ARCHS:
        raise DBNetError(f"--arch must be one of {', '.join(ARCHS)}, not {config.arch!r}")
    if config.dcn and config.arch == "mobilenet_v3":
        raise DBNetError("--dcn (deformable convolution) is for the ResNets, not mobilenet_v3")
    if config.optimizer not in OPTIMIZERS:
        raise DBNetError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {config.optimizer!r}")
    if config.resume and config.overwrite:
        raise DBNetError("--resume continues a run and --overwrite starts a new one: pass one")


def ignored_on_resume(given: TrainConfig, resolved: TrainConfig) -> list[str]:
    """The options of ``given`` that a ``--resume`` run does not use (set to other than their default
    and to other than the run's own ``resolved`` value), as ``--name VALUE (the run's: VALUE)``."""
    ignored = []
    for f in fields(TrainConfig):
        if f.name in RESUME_KEEPS or f.name in ("post", "loss"):
            continue
        default = f.default if f.default is not MISSING else None
        value = getattr(given, f.name)
        if value != default and value != getattr(resolved, f.name):
            own = getattr(resolved, f.name)
            own_shown = _shown(f.name, own) if isinstance(own, bool) else own
            ignored.append(f"{_shown(f.name, value)} (the run's: {own_shown})")
    return ignored
