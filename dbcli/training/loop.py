"""The training loop (SPEC: "Training recipe"): ``train(config)`` (its settings: ``TrainConfig`` in
``dbcli.training.config``), made of ``_resolve_config`` /
``_setup_run`` / ``_restore`` (setup), ``train_one_epoch``, ``validate`` (via the engine of ``dbnet
detect``), ``save_checkpoint`` and ``_save_final_weights``.

SGD (momentum 0.9, weight decay 1e-4), lr 0.007 with poly decay (power 0.9), batch 16, 640 crops,
the authors' augmentation, labels made in DataLoader workers. Mixed precision (fp16 on CUDA, bf16
on CPUs that support it), channels-last, DDP under torchrun, atomic checkpoints (latest + best),
exact ``--resume``, NaN/inf guard, rich progress + ``train.log`` + ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dbcli.cpu import cpu_supports_bf16, default_workers, tune_malloc
from dbcli.data.augment import AugmentConfig, augment
from dbcli.data.datasets import Sample, load_samples, split_holdout
from dbcli.data.image_cache import cache_images, default_budget_mb
from dbcli.data.labels import make_targets
from dbcli.device import init_distributed, pick_device, world
from dbcli.errors import DBNetError
from dbcli.imaging import normalize, read_image
from dbcli.models import DBNet, ModelConfig, count_parameters
from dbcli.outputs.atomic import atomic_torch_save, atomic_write_json, remove_stale_temps
from dbcli.postprocess.boxes import PostConfig, post_config_from
from dbcli.progress import plural, progress_bar
from dbcli.training.config import RESUME_KEEPS, TrainConfig, check_config, ignored_on_resume, option
from dbcli.training.finetune import (
    pick_thresholds,
    picked_post,
    reset_thresh_branch,
    selection_message,
    set_head_warmup,
)
from dbcli.training.losses import LossConfig, db_loss
from dbcli.training.pretrained import load_backbone_state
from dbcli.training.recipe import HEAD_WARMUP_MAX_SHARE, apply_recipe, default_given, describe
from dbcli.training.run_folder import check_new_run_folder, clear_run_folder
from dbcli.training.selection import image_counts, noise_line
from dbcli.weights import build_model, load_weights, make_weights


class EpochSampler(Sampler[int]):
    """Shuffles per epoch from ``(seed, epoch)``; each rank takes its slice; yields
    ``epoch * n + index`` so workers can seed augmentation deterministically (exact resume)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, batch_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        per_step = batch_size * world_size
        self.length = max(per_step, n // per_step * per_step) // world_size  # drop last partial step
        self.epoch = 0
        self.skip = 0  # indices of this rank to skip (the batches a resumed run already trained on)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        if len(order) < self.length * self.world_size:  # tiny datasets: repeat
            order = np.resize(order, self.length * self.world_size)
        mine = order[self.rank: self.length * self.world_size: self.world_size][self.skip:]
        return iter((self.epoch * self.n + int(i)) for i in mine)


class TrainDataset(Dataset):
    """Augmented crop + its four label maps, made in the worker."""

    def __init__(self, samples: list[Sample], augment_config: AugmentConfig, seed: int,
                 images: list[np.ndarray | None] | None = None):
        self.samples, self.augment_config, self.seed, self.images = samples, augment_config, seed, images
        self.reported: set = set()  # undecodable images already warned about (per worker process)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[Sample, np.ndarray]:
        """The sample and its decoded image (cached, or read from its file). An image read from its file
        that turns out to be undecodable is reported (once per worker) and the next decodable one
        trains in its place, with its own sample: a cached image's polygons are in its stored pixels."""
        for offset in range(len(self.samples)):
            position = (index + offset) % len(self.samples)
            sample = self.samples[position]
            cached = self.images[position] if self.images is not None else None
            if cached is not None:
                return sample, cached
            try:
                return sample, read_image(sample.image_path, sample.exif)
            except DBNetError as exc:
                if sample.image_path not in self.reported:
                    self.reported.add(sample.image_path)
                    print(f"warning: {exc} (training on another image in its place)", file=sys.stderr)
        raise DBNetError("none of the training images can be decoded")

    def __getitem__(self, key: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(key, len(self.samples))
        sample, image = self._load(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        crop, polygons, ignore = augment(image, sample.polygons, sample.ignore, rng, self.augment_config)
        size = self.augment_config.crop_size
        targets = make_targets(polygons, ignore, size, size)
        return {"image": normalize(crop), "gt": targets.gt, "mask": targets.mask,
                "thresh_map": targets.thresh_map, "thresh_mask": targets.thresh_mask}


def poly_lr(base_lr: float, progress: float, power: float) -> float:
    """Poly decay on training progress in [0, 1] (the authors step it per epoch; we step it per
    iteration, which is smoother): lr = base_lr * (1 - progress) ** power."""
    return base_lr * max(0.0, 1.0 - progress) ** power


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up multiplier for optimizer step ``step`` (0-based, counted over the whole run):
    (step + 1) / warmup_steps for the first ``warmup_steps`` steps, then 1. Fine-tuning needs it:
    a fresh AdamW's first updates move every weight by about lr, whatever its gradient's size."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def validate(model: DBNet, samples: list[Sample], images: list[np.ndarray] | None, device: torch.device,
             short_side: int, post: PostConfig, amp_dtype) -> dict:
    """P/R/hmean on held-out samples (ICDAR 2015 protocol, ``dbcli.evaluation.scoring.evaluate_model``)
    at ``short_side``, and ``capped_images``: how many had more candidate regions than
    ``post.max_candidates`` (an undertrained model's noisy map; said by the caller in its log, never
    as a raw Python warning), and ``image_counts``: (ground truth, detections, matched) per image,
    for the noise figures of ``dbcli.training.selection``. ``images``: the samples' images already
    decoded, else the files are read."""
    from dbcli.backends.torch_backend import ModuleBackend
    from dbcli.engine.settings import Settings
    from dbcli.evaluation.scoring import evaluate_model

    def warn(message: str) -> None:  # (only without the in-memory cache, which skips them up front)
        print(f"warning: validation: {message}", file=sys.stderr)

    model.eval()
    result = evaluate_model(samples, ModuleBackend(model, device, amp_dtype), images=images, warn=warn,
                            settings=Settings(short_side=short_side, post=post))
    model.train()
    return {**result.scores.to_dict(), "capped_images": result.capped,
            "image_counts": image_counts(result.images).tolist()}


def run_post_config(given: dict, init_weights: dict | None) -> PostConfig:
    """A run's validation post-processing: the values ``given``, then the ``postprocess`` entry of
    the ``--init-weights`` file (thresholds tuned for the weights being fine-tuned), then thresh 0.3 /
    box_thresh 0.6."""
    inherited = post_config_from((init_weights or {}).get("postprocess"), PostConfig(box_thresh=0.6))
    return post_config_from(given, inherited)


def adopt_architecture(config: TrainConfig, weights: dict) -> TrainConfig:
    """``config`` with the architecture of the ``--init-weights`` file ``weights``; ``DBNetError``
    naming the file when ``--arch`` / ``--dcn`` were given and differ."""
    saved = weights["model"]
    arch, dcn = saved.get("arch", "resnet18"), bool(saved.get("dcn", False))
    if (config.arch is not None and config.arch != arch) or (config.dcn is not None and config.dcn != dcn):
        raise DBNetError(f"{config.init_weights}: a {arch}{' dcn' if dcn else ''} model, not the "
                         f"{config.arch or 'resnet18'}{' dcn' if config.dcn else ''} asked for "
                         f"(leave out --arch / --dcn to fine-tune it as it is)")
    return replace(config, arch=arch, dcn=dcn)


CHECKPOINT_KEYS = ("config", "model_state", "optimizer", "scaler", "epoch", "step", "rng")


def _torch_load_checkpoint(path: Path):
    """``torch.load`` with ``weights_only=True``: tensors and plain Python values only, so that a
    checkpoint from elsewhere cannot run code. Checkpoints written before the RNG state was stored
    as plain lists hold numpy's state as an array: those numpy types (and only those) are allowed."""
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
    with torch.serialization.safe_globals([reconstruct, *allowed]):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(resume: str | Path) -> tuple[Path, dict]:
    """The checkpoint ``resume`` names (a run folder: its ``latest.pt``) and its contents. Raises
    ``DBNetError`` naming the file when it is missing, corrupt, not a checkpoint or holds objects
    other than tensors and plain values."""
    path = Path(resume)
    if path.is_dir():
        path = path / "latest.pt"
    if not path.is_file():
        raise DBNetError(f"{path}: no checkpoint to resume from")
    try:
        state = _torch_load_checkpoint(path)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        if "Weights only load failed" in str(exc) or "weights_only" in str(exc):
            reason = "it holds objects other than tensors and plain values, which are not loaded"
        raise DBNetError(f"{path}: not a loadable dbnet checkpoint ({reason})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise DBNetError(f"{path}: not a dbnet training checkpoint (no {', '.join(missing)}); --resume "
                         "takes a run folder or its latest.pt / best.pt (for a weights file, use "
                         "--init-weights)")
    if not isinstance(state["config"], dict):
        raise DBNetError(f"{path}: not a dbnet training checkpoint (bad config entry)")
    return path, state


def saved_config(state: dict, path: Path) -> TrainConfig:
    """The ``TrainConfig`` stored in a checkpoint; ``DBNetError`` for settings this dbnet lacks."""
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(state["config"]) - known)
    if unknown:
        raise DBNetError(f"{path}: unknown training setting(s) {', '.join(unknown)} (a checkpoint from a "
                         "newer dbnet?)")
    return TrainConfig(**state["config"])


def _rng_state() -> dict:
    """Every RNG's state in plain types and tensors (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Stop(Enum):
    """Why a run stopped before its last epoch (``None``: it did not)."""

    NON_FINITE = "non-finite"
    MAX_STEPS = "max-steps"
    TIME_LIMIT = "time-limit"


@dataclass
class RunLog:
    """Messages to the console and ``train.log`` (main process only; the others stay silent)."""

    console: Any
    file: Any = None  # the open train.log, or None

    def __call__(self, message: str) -> None:
        if self.file is not None:
            self.console.print(message, markup=False, highlight=False)
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.file.flush()


@dataclass
class Run:
    """What a run trains with, set up once (``_setup_run``)."""

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
    finished_epoch: int = 0
    stop: Stop | None = None
    stop_message: str = ""
    # fine-tuning: {"start": ..., "best": ..., "checkpoint": ...} (hmean, label, per-image counts)
    selection: dict = field(default_factory=dict)
    head_steps: int = 0  # steps trained by the threshold-branch warm-up (--head-warmup-steps)
    training_from: float = 0.0  # when this session's first step began (the start's validation excluded)


def _resumed_config(config: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """``config`` as ``--resume`` continues it (the saved recipe and budget, except what this process
    is told: ``RESUME_KEEPS``) and the checkpoint, or ``config`` and None for a new run."""
    if not config.resume:
        return config, None
    resume_path, resume_state = load_checkpoint(config.resume)
    saved = saved_config(resume_state, resume_path)
    config = TrainConfig(**{k: (getattr(config, k) if k in RESUME_KEEPS and getattr(config, k) is not None else v)
                            for k, v in asdict(saved).items() if k != "post"},
                         post={**saved.post, **config.post})
    config.out = str(resume_path.parent)
    return config, resume_state


def _with_schedule_defaults(config: TrainConfig) -> TrainConfig:
    """Workers, validation limit and time budget made concrete. ``--time-limit`` on a new run fits the
    lr schedule into it unless ``--no-time-schedule`` says otherwise (stopping at a time limit part-way
    down a 1200-epoch decay would leave the lr near its peak)."""
    time_schedule = bool(config.time_limit) if config.time_schedule is None else config.time_schedule
    return replace(config, workers=default_workers() if config.workers is None else config.workers,
                   val_limit=config.val_limit or 0, time_limit=config.time_limit or 0.0, time_schedule=time_schedule)


def _starting_weights(config: TrainConfig, resume_state: dict | None, given: frozenset[str]
                      ) -> tuple[TrainConfig, dict | None]:
    """A new run's ``--init-weights`` file (read, and its architecture adopted) and the fine-tuning
    recipe for the settings not ``given``; a resumed run's recipe settings as saved (older
    checkpoints: off)."""
    if resume_state is not None:
        return replace(config, recipe=bool(config.recipe), head_warmup_steps=config.head_warmup_steps or 0,
                       scale_reference=config.scale_reference or 0,
                       pick_thresholds=bool(config.pick_thresholds),
                       reset_thresh_branch=bool(config.reset_thresh_branch)), None
    init_weights = None
    if config.init_weights:
        if config.pretrained_backbone:
            raise DBNetError("--init-weights and --pretrained-backbone both set the starting weights: pass one")
        init_weights = load_weights(config.init_weights)
        config = adopt_architecture(config, init_weights)
    return apply_recipe(config, init_weights, given), init_weights


def _resolve_config(config: TrainConfig, given: frozenset[str]) -> tuple[TrainConfig, dict | None, dict | None]:
    """The run's settings (a resumed run's own, except what this process is told; a new fine-tuning
    run's recipe for the settings not ``given``), the checkpoint to resume from and the
    ``--init-weights`` file (read, and its architecture adopted, before the slow decoding)."""
    config, resume_state = _resumed_config(config)
    config = _with_schedule_defaults(config)
    config, init_weights = _starting_weights(config, resume_state, given)
    config = replace(config, arch=config.arch or "resnet18", dcn=bool(config.dcn))
    return config, resume_state, init_weights


def _usable_holdout(val_samples: list[Sample], log: RunLog) -> list[Sample]:
    """``val_samples``, or none when they hold no text region to find (their hmean would be 1.000 for
    a model that finds nothing, and pick ``best.pt`` on it): then said, and the run not validated."""
    if val_samples and not any(not ignored for s in val_samples for ignored in s.ignore):
        log(f"warning: the validation hold-out ({plural(len(val_samples), 'image')}) has no text regions to "
            "find, so its hmean would mean nothing: the run is not validated and best.pt not written (raise "
            "--val-fraction, or add images with text)")
        return []
    return val_samples


def _fit_batch(config: TrainConfig, n_train: int, world_size: int, log: RunLog) -> TrainConfig:
    """``config`` with ``batch_size`` at most the training images per process (a larger batch would
    only repeat them, in memory), said in the log."""
    most = max(1, n_train // world_size)
    if config.batch_size <= most:
        return config
    log(f"note: --batch-size {config.batch_size} is more than the {plural(n_train, 'training image')}"
        + (f" / {world_size} processes" if world_size > 1 else "") + f": batches of {most} are used")
    return replace(config, batch_size=most)


def _make_loader(config: TrainConfig, train_samples: list[Sample], images: list[np.ndarray | None] | None,
                 device: torch.device, rank: int, world_size: int) -> tuple[DataLoader, EpochSampler]:
    aug = AugmentConfig(crop_size=config.crop_size, scale_range=(config.scale_min, config.scale_max),
                        max_angle=config.max_angle, reference_short_side=config.scale_reference or 0)
    dataset = TrainDataset(train_samples, aug, config.seed, images)
    sampler = EpochSampler(len(dataset), config.seed, rank, world_size, config.batch_size)
    workers = config.workers or 0  # set by _resolve_config (None there means "the default")
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    return loader, sampler


def _make_optimizer(config: TrainConfig, model: DBNet) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":  # the paper's
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adamw":  # escapes the constant-map plateau faster from scratch (docTR-style)
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise DBNetError(f"unknown optimizer {config.optimizer!r} (sgd or adamw)")


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.amp and device.type == "cuda":
        return torch.float16
    if config.amp and device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


@dataclass
class _Data:
    """A run's images: the training and validation samples, and their decoded copies in memory
    (``--cache-images``; None where an image is decoded as it is used)."""

    train_samples: list[Sample]
    val_samples: list[Sample]
    images: list[np.ndarray | None] | None = None
    val_images: list[np.ndarray] | None = None


def _load_data(config: TrainConfig, rank: int, log: RunLog) -> _Data:
    """The training split, its validation hold-out (``--val-fraction``, ``--val-limit``, none when it
    holds no text) and the image cache within its budget (``--cache-mb``)."""
    samples = load_samples(config.dataset, config.data_root, "train")
    train_samples, val_samples = split_holdout(samples, config.val_fraction, config.seed)
    if samples and not train_samples:
        raise DBNetError(f"--val-fraction {config.val_fraction:g} holds out all {plural(len(samples), 'image')} "
                         "of the training split, leaving none to train on")
    if config.val_limit:
        val_samples = val_samples[: config.val_limit]
    data = _Data(train_samples, _usable_holdout(val_samples, log))
    if config.cache_images:
        budget = default_budget_mb() if config.cache_mb is None else config.cache_mb
        images = plural(len(data.train_samples), "training image")
        log(f"decoding up to {budget:.0f} MB of the {images} into memory ...")
        max_side = round(config.crop_size / AugmentConfig().min_crop_side_ratio)
        cache = cache_images(data.train_samples, data.val_samples if rank == 0 else None, budget, max_side, log)
        data.train_samples, data.images = cache.samples, cache.images
        if rank == 0:
            data.val_samples, data.val_images = cache.val_samples, cache.val_images
        log(cache.summary)
    if not data.train_samples:
        raise DBNetError("no training images could be loaded")
    return data


def _initial_model(config: TrainConfig, init_weights: dict | None, log: RunLog) -> DBNet | None:
    """The ``--init-weights`` model (None without one), built before the data as it always was: the
    order of random draws is part of a reproducible run."""
    if init_weights is None:
        return None
    log(f"starting from the weights in {config.init_weights} (fine-tuning: new optimizer and schedule)")
    model = build_model(init_weights).train()
    if config.reset_thresh_branch:
        level = run_post_config(config.post, init_weights).thresh
        reset_thresh_branch(model, level)
        log(f"threshold branch reset to a constant map at {level:g} (the binary map starts as the probability "
            f"map binarised at {level:g})")
    return model


def _build_model(config: TrainConfig, initial_model: DBNet | None, resume_state: dict | None, device: torch.device,
                 distributed: bool, log: RunLog) -> tuple[DBNet, torch.nn.Module]:
    """The model (``initial_model`` from ``--init-weights``, the resumed run's architecture, or a new
    one with its ``--pretrained-backbone``) on ``device``, channels-last, and its DDP wrapper (itself
    when not distributed)."""
    if initial_model is not None:
        model = initial_model
    elif resume_state is not None:  # the run's own architecture, input convention included
        model = DBNet(ModelConfig.from_dict(resume_state["weights"]["model"]))
    else:
        model = DBNet(ModelConfig(config.arch, config.dcn))  # type: ignore[arg-type]  # set by _resolve_config
    if config.pretrained_backbone and resume_state is None:
        missing, unexpected = load_backbone_state(model, config.pretrained_backbone)
        log(f"backbone from {config.pretrained_backbone}: {len(missing)} missing keys "
            f"{missing[:4]}, {len(unexpected)} unexpected keys {unexpected[:4]}")
    model = model.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ddp: torch.nn.Module = model
    if distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, ddp


def _setup_run(config: TrainConfig, out: Path, resume_state: dict | None, init_weights: dict | None,
               device: torch.device, distributed: bool, log: RunLog, command_line: str) -> Run:
    """Seeds, data, model, optimizer: everything the loop needs, in the order that makes a run (and
    its resume) reproducible."""
    rank, world_size = world()
    torch.manual_seed(config.seed + rank)
    random.seed(config.seed + rank)
    np.random.seed(config.seed + rank)
    initial_model = _initial_model(config, init_weights, log)
    config = replace(config, post=asdict(run_post_config(config.post, init_weights)))
    data = _load_data(config, rank, log)
    config = _fit_batch(config, len(data.train_samples), world_size, log)
    loader, sampler = _make_loader(config, data.train_samples, data.images, device, rank, world_size)
    model, ddp = _build_model(config, initial_model, resume_state, device, distributed, log)
    optimizer = _make_optimizer(config, model)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return Run(config, out, device, distributed, rank, world_size, log, command_line, model, ddp,
               optimizer, scaler, amp_dtype, LossConfig(**config.loss), PostConfig(**config.post), loader,
               sampler, data.train_samples, data.val_samples, data.val_images)


def _restore(run: Run, resume_state: dict | None) -> RunState:
    """The loop's state: a new run's, or the checkpoint's (model, optimizer, scaler and RNGs too)."""
    state = RunState(lr=run.config.lr)
    trained_before_s = 0.0  # training wall time of the earlier sessions of this run (--resume)
    if resume_state is not None:
        try:
            run.model.load_state_dict(resume_state["model_state"])
            run.optimizer.load_state_dict(resume_state["optimizer"])
            run.scaler.load_state_dict(resume_state["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise DBNetError(f"{run.config.resume}: the checkpoint does not match its own model settings "
                             f"({str(exc).splitlines()[0][:160]})") from None
        state.start_epoch, state.step = resume_state["epoch"], resume_state["step"]
        state.skip_batches = resume_state.get("epoch_batches", 0)
        state.best_hmean = resume_state.get("best_hmean", -1.0)
        state.selection = resume_state.get("selection", {})
        state.head_steps = int(resume_state.get("head_steps", 0))
        trained_before_s = float(resume_state.get("train_seconds", 0.0))
        _set_rng_state(resume_state["rng"])
        run.log(f"resumed from {run.config.resume} at epoch {state.start_epoch}, step {state.step}"
                + (f" ({state.skip_batches} batches into the epoch)" if state.skip_batches else ""))
    state.start_step = state.step
    state.finished_epoch = state.start_epoch
    state.started = -trained_before_s  # made absolute by the loop when its clock starts
    return state


def save_checkpoint(run: Run, state: RunState, path: Path, epoch: int, metrics: dict | None = None,
                    epoch_batches: int = 0) -> None:
    """``latest.pt`` / ``best.pt``: everything ``--resume`` needs, and the weights (atomic write)."""
    config, post = run.config, run.post
    checkpoint = {"config": asdict(config), "model_state": run.model.state_dict(),
                  "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "epoch": epoch,
                  "step": state.step, "best_hmean": state.best_hmean, "epoch_batches": epoch_batches,
                  "train_seconds": time.time() - state.started, "rng": _rng_state(),
                  "selection": state.selection, "head_steps": state.head_steps,
                  "weights": make_weights(run.model, half=False, postprocess=asdict(post),
                                          short_side=config.val_short_side,
                                          train={"command": run.command_line, "epochs_done": epoch,
                                                 "config": asdict(config)},
                                          metrics=metrics or {})}
    with _write_failure(path, "checkpoint"):
        atomic_torch_save(checkpoint, path)


@contextmanager
def _write_failure(path: Path, what: str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (a full disk, a quota) as one ``DBNetError`` line that
    says what is intact: the atomic write leaves the earlier ``path``, if any, as it was."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        kept = [name for name in ("latest.pt", "best.pt") if (path.parent / name).exists()]
        intact = (f"{' and '.join(kept)} {'is' if len(kept) == 1 else 'are'} intact, as last written" if kept
                  else "no checkpoint was written")
        resume = f"; make room and continue with --resume {path.parent}" if "latest.pt" in kept else ""
        raise DBNetError(f"{path}: cannot write the {what} ({reason}); {intact}{resume}") from None


def _set_lr(run: Run, state: RunState) -> None:
    """The poly-decayed, warmed-up learning rate of ``state.step`` into ``state.lr`` and the optimizer."""
    config = run.config
    progress_frac = state.step / (run.total_steps + 1)
    if config.time_limit and config.time_schedule:
        # The schedule ends at whichever comes first: the last step or the time limit.
        progress_frac = max(progress_frac, (time.time() - state.started) / (config.time_limit * 60))
    if _in_head_warmup(run, state):  # the threshold branch alone, at the full lr
        state.lr = config.lr
    else:
        state.lr = poly_lr(config.lr, progress_frac, config.poly_power) * warmup_factor(
            state.step - state.head_steps, config.warmup_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = state.lr


def _in_head_warmup(run: Run, state: RunState) -> bool:
    """Whether this step trains the threshold branch alone: within ``--head-warmup-steps`` and, with a
    time limit, within the first ``HEAD_WARMUP_MAX_SHARE`` of it counted from the first step (not
    under torchrun: DDP needs every parameter to train)."""
    config = run.config
    if not config.head_warmup_steps or run.distributed or state.step >= config.head_warmup_steps:
        return False
    state.training_from = state.training_from or time.time()
    return not config.time_limit or time.time() - state.training_from < HEAD_WARMUP_MAX_SHARE * config.time_limit * 60


def _non_finite(run: Run, state: RunState) -> None:
    """A skipped step: counted, said, and the run stopped after 10 in a row (``state.stop``)."""
    state.bad_steps += 1
    run.log(f"warning: non-finite loss at step {state.step} ({state.bad_steps} in a row): step skipped")
    run.optimizer.zero_grad(set_to_none=True)
    if state.bad_steps >= 10:
        state.stop, state.stop_message = Stop.NON_FINITE, "10 non-finite losses in a row"


def _budget_spent(run: Run, state: RunState) -> bool:
    """Whether ``--max-steps`` or ``--time-limit`` stops the run now (then ``state.stop`` says which)."""
    config = run.config
    if config.max_steps and state.step - state.start_step >= config.max_steps:
        state.stop, state.stop_message = Stop.MAX_STEPS, f"--max-steps {config.max_steps} reached"
    elif config.time_limit and time.time() - state.started > config.time_limit * 60:
        state.stop, state.stop_message = Stop.TIME_LIMIT, f"--time-limit {config.time_limit} min reached"
        if not config.time_schedule:
            state.stop_message += (f" at step {state.step} of {run.total_steps}, with the lr at {state.lr:.3g} "
                                   f"({state.lr / config.lr:.0%} of --lr {config.lr:g}): the poly decay was "
                                   f"set for {config.epochs} epochs (--no-time-schedule)")
    return state.stop is not None


def train_one_epoch(run: Run, state: RunState, epoch: int, progress: Any, task: Any) -> dict:
    """Train on one epoch's batches (the rest of it, for a run resumed mid-epoch); returns
    ``{"batches", "sums", "count", "seen", "t_epoch"}``. Sets ``state.stop`` when the run must stop."""
    config, device = run.config, run.device
    run.sampler.set_epoch(epoch)
    batches = state.skip_batches if epoch == state.start_epoch else 0  # batches of this epoch consumed
    run.sampler.skip = batches * config.batch_size
    sums: dict[str, float] = {}
    count, seen, t_epoch = 0, 0, time.time()
    for batch in run.loader:
        batches += 1
        _set_lr(run, state)
        head_only = _in_head_warmup(run, state)
        if config.head_warmup_steps:
            set_head_warmup(run.model, head_only)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        images_t = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
            outputs = run.ddp(images_t)
        parts = db_loss(outputs, batch, run.loss_config)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            _non_finite(run, state)
            if state.stop is not None:
                break
            continue
        state.bad_steps = 0
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        state.step += 1
        state.head_steps += head_only
        count += 1
        seen += images_t.shape[0] * run.world_size
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        rate = seen / max(time.time() - t_epoch, 1e-6)
        progress.update(task, completed=state.step, info=(
            f"ep {epoch + 1}/{config.epochs} loss {sums['loss'] / count:.3f} "
            f"(P {sums['loss_prob'] / count:.3f} B {sums['loss_binary'] / count:.3f} "
            f"T {sums['loss_thresh'] / count:.4f}) lr {state.lr:.5f} {rate:.1f} img/s"))
        if state.step % config.log_every == 0:
            run.log(f"step {state.step}/{run.total_steps} {progress.tasks[task].fields['info']}")
        if _budget_spent(run, state):
            break
    return {"batches": batches, "sums": sums, "count": count, "seen": seen, "t_epoch": t_epoch}


def _measure_validation(run: Run) -> tuple[dict, dict | None]:
    """The validation figures at the run's thresholds (with ``image_counts``), and with
    ``--pick-thresholds`` in a fine-tuning run the sweep's best pair (``pick_thresholds``'s row), at
    which each candidate is judged; else None."""
    config = run.config
    if config.init_weights and config.pick_thresholds:
        picked = pick_thresholds(run.model, run.val_samples, run.val_images, run.device, config.val_short_side,
                                 run.post, run.amp_dtype)
        return {k: v for k, v in picked["current"].items() if k not in ("thresh", "box_thresh")}, picked
    return validate(run.model, run.val_samples, run.val_images, run.device, config.val_short_side, run.post,
                    run.amp_dtype), None


def _log_validation(run: Run, name: str, last_val: dict, picked: dict | None) -> None:
    post = run.post
    line = (f"{name}: val P {last_val['precision']:.3f} R {last_val['recall']:.3f} "
            f"hmean {last_val['hmean']:.3f} (thresh {post.thresh:g}, box_thresh {post.box_thresh:g})")
    if picked is not None:
        line += (f"; at its best thresholds on this split ({picked['thresh']:g} / {picked['box_thresh']:g}): "
                 f"P {picked['precision']:.3f} R {picked['recall']:.3f} hmean {picked['hmean']:.3f}")
    run.log(line)
    if last_val.get("capped_images"):
        run.log(f"{name}: {plural(last_val['capped_images'], 'validation image')} had more than "
                f"{post.max_candidates} candidate regions (a noisy probability map, usual early in "
                f"training); only the first {post.max_candidates} were scored")


def _selection_entry(state: RunState, epoch: int, counts: dict, picked: dict | None) -> dict:
    """One candidate for ``weights.pt``: its hmean (at its best thresholds when ``picked``), per-image
    counts and label."""
    entry = {"hmean": counts["hmean"], "counts": counts["image_counts"], "step": state.step,
             "label": "the start" if epoch < 0 else
             f"the checkpoint of epoch {state.finished_epoch}, step {state.step}"}
    if picked is not None:
        entry.update(hmean=picked["hmean"], counts=picked["image_counts"], current_hmean=counts["hmean"],
                     thresholds={k: picked[k] for k in ("thresh", "box_thresh", "precision", "recall", "hmean")})
    return entry


def _add_candidate(run: Run, state: RunState, epoch: int, entry: dict) -> None:
    """A fine-tuning run's record of the start (``epoch`` -1), its best checkpoint and the best of all."""
    if epoch < 0:
        state.selection = {"start": entry, "best": entry}
        line, _ = noise_line(np.asarray(entry["counts"], np.int64).reshape(-1, 3))
        run.log(line)
    elif state.selection:
        if entry["hmean"] > state.selection.get("checkpoint", {}).get("hmean", -1.0):
            state.selection["checkpoint"] = entry
        if entry["hmean"] > state.selection["best"]["hmean"]:
            state.selection["best"] = entry


def _validate_and_keep_best(run: Run, state: RunState, epoch: int, record: dict) -> None:
    """Validate after ``epoch`` (main process; ``epoch`` -1: the starting weights, before the first
    step), add the figures to ``record`` and write ``best.pt`` when the hmean is the best so far (a
    fine-tuning run's start included, so a checkpoint must beat it to be kept)."""
    t_val = time.time()
    counts, picked = _measure_validation(run)
    state.last_val = {k: v for k, v in counts.items() if k != "image_counts"}
    record.update({f"val_{k}": v for k, v in state.last_val.items()}, val_s=time.time() - t_val)
    if picked is not None:
        record.update(val_picked_hmean=picked["hmean"], val_picked_thresh=picked["thresh"],
                      val_picked_box_thresh=picked["box_thresh"])
    _log_validation(run, "epoch 0 (the start)" if epoch < 0 else f"epoch {epoch + 1}", state.last_val, picked)
    entry = _selection_entry(state, epoch, counts, picked)
    if run.config.init_weights:
        _add_candidate(run, state, epoch, entry)
    if entry["hmean"] > state.best_hmean:
        state.best_hmean = entry["hmean"]
        save_checkpoint(run, state, run.out / "best.pt", state.finished_epoch, state.last_val)


def _validates(run: Run, state: RunState, epoch: int, epoch_complete: bool, count: int) -> bool:
    """Whether this epoch's end validates: every ``--val-every`` complete epochs and the last one, and
    a fine-tuning run stopped early by its time or step limit (its last checkpoint is a candidate for
    ``weights.pt``); the main process only, with a hold-out."""
    config = run.config
    if not (run.is_main and run.val_samples):
        return False
    stopped_early = state.stop in (Stop.TIME_LIMIT, Stop.MAX_STEPS) and bool(config.init_weights) and count > 0
    return stopped_early or epoch_complete and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs)


def _end_epoch(run: Run, state: RunState, epoch: int, done: dict, metrics_file: Any) -> None:
    """After an epoch (or the part of it a stop left): validation, ``metrics.jsonl``, ``latest.pt``."""
    config = run.config
    run.sampler.skip = 0
    epoch_complete = done["batches"] >= run.steps_per_epoch  # (a stop on an epoch's last step completes it)
    state.finished_epoch = epoch + 1 if epoch_complete else epoch
    count = done["count"]
    record = {"epoch": epoch + 1, "step": state.step, "lr": state.lr,
              **{k: v / max(count, 1) for k, v in done["sums"].items()},
              "images_per_s": done["seen"] / max(time.time() - done["t_epoch"], 1e-6),
              "elapsed_s": time.time() - state.started}
    if _validates(run, state, epoch, epoch_complete, count):
        _validate_and_keep_best(run, state, epoch, record)
    if run.is_main:
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        run.log(f"epoch {epoch + 1}: loss {record.get('loss', float('nan')):.4f} "
                f"{record['images_per_s']:.1f} img/s")
        if state.stop is not None or (epoch + 1) % config.save_every == 0 or epoch + 1 == config.epochs:
            save_checkpoint(run, state, run.out / "latest.pt", state.finished_epoch, state.last_val,
                            epoch_batches=0 if epoch_complete else done["batches"])


def _select_final(run: Run, state: RunState) -> dict:
    """A fine-tuning run's choice: the best of {start, validated checkpoints} on validation (loaded
    into ``run.model`` from ``best.pt``), then its thresholds re-picked there (``--pick-thresholds``:
    ``run.post`` updated). Returns the ``selected`` metadata of ``weights.pt`` (empty: no choice made)."""
    config, selection = run.config, state.selection
    if not (config.init_weights and selection and (run.out / "best.pt").is_file()):
        return {}
    best = selection["best"]
    if best["step"] != state.step:  # the model in memory is not the chosen one
        run.model.load_state_dict(_torch_load_checkpoint(run.out / "best.pt")["model_state"])
    message = selection_message(selection)
    run.log(message)
    chosen = {"which": best["label"], "step": best["step"], "val_hmean": best["hmean"],
              "start_val_hmean": selection["start"]["hmean"], "message": message,
              "val_images": len(best["counts"])}
    if config.pick_thresholds:
        if "thresholds" in best:  # picked when it was validated
            picked, current_hmean = best["thresholds"], best["current_hmean"]
        else:  # a run resumed from a checkpoint of an older version
            swept = pick_thresholds(run.model, run.val_samples, run.val_images, run.device, config.val_short_side,
                                    run.post, run.amp_dtype)
            picked = {k: swept[k] for k in ("thresh", "box_thresh", "precision", "recall", "hmean")}
            current_hmean = swept["current"]["hmean"]
        run.log(f"thresholds re-picked on the validation split: thresh {picked['thresh']:g}, box_thresh "
                f"{picked['box_thresh']:g} (val hmean {picked['hmean']:.3f}; {current_hmean:.3f} at "
                f"{run.post.thresh:g} / {run.post.box_thresh:g})")
        run.post = picked_post(run.post, picked)
        chosen["thresholds"] = picked
    return chosen


def _save_final_weights(run: Run, state: RunState) -> None:
    from dbcli.weights import save_weights

    config = run.config
    selected = _select_final(run, state)
    metrics = {"val": state.last_val} if state.last_val else {}
    if selected:
        metrics["selected"] = selected
    with _write_failure(run.out / "weights.pt", "final weights"):
        save_weights(run.out / "weights.pt", run.model, half=True, postprocess=asdict(run.post),
                     short_side=config.val_short_side,
                     train={"command": run.command_line, "epochs_done": state.finished_epoch,
                            "steps": state.step, "wall_s": time.time() - state.started, "device": str(run.device),
                            "config": asdict(config), **({"selected": selected["message"]} if selected else {})},
                     metrics=metrics)
    run.log(f"weights written to {run.out / 'weights.pt'}")


def _prepare_device(config: TrainConfig) -> tuple[torch.device, bool]:
    """The run's device (CPU tuning applied) and whether this is a torchrun process group."""
    device = pick_device(config.device)
    if device.type == "cpu":
        tune_malloc()
        torch.set_flush_denormal(True)  # denormal activations slow CPU kernels many-fold
    return device, init_distributed(device)


def _announce(run: Run) -> None:
    """``config.json`` and the run's first log line (main process)."""
    config, out = run.config, run.out
    atomic_write_json(out / "config.json", asdict(config))
    run.log(f"run {out}: {config.arch} ({count_parameters(run.model) / 1e6:.2f}M params) on {run.device}, "
            f"amp={run.amp_dtype}, {len(run.train_samples)} train / {len(run.val_samples)} val images, "
            f"{run.steps_per_epoch} steps/epoch x {config.epochs} epochs, batch {config.batch_size} x "
            f"{run.world_size}")
    if config.time_limit:
        run.log(f"--time-limit {config.time_limit:g} min: the poly lr decay ends at the time limit (or the last "
                "epoch, if sooner)" if config.time_schedule else
                f"--time-limit {config.time_limit:g} min with --no-time-schedule: the poly lr decay is set for "
                f"{config.epochs} epochs; stopped at the time limit, the lr may still be near its peak")


def _train_epochs(run: Run, state: RunState, console: Any, metrics_file: Any) -> None:
    """Every epoch left (``train_one_epoch`` then ``_end_epoch``) until the last or a stop."""
    progress = progress_bar(console, "train", run.total_steps, unit=None, info=True)
    task = progress.add_task("train", total=run.total_steps, completed=state.step, info="")
    run.model.train()
    if run.is_main and run.config.init_weights and run.val_samples and state.step == 0:
        record = {"epoch": 0, "step": 0, "elapsed_s": time.time() - state.started}
        _validate_and_keep_best(run, state, -1, record)  # the start: what every checkpoint must beat
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
    with progress:
        for epoch in range(state.start_epoch, run.config.epochs):
            done = train_one_epoch(run, state, epoch, progress, task)
            if state.stop is Stop.NON_FINITE:
                break
            _end_epoch(run, state, epoch, done, metrics_file)
            if state.stop is not None:
                break
    if state.stop is not None:
        run.log(f"stopped: {state.stop_message}")


def _make_run_folder(out: Path, earlier: list[str]) -> None:
    """Create ``out`` (a ``DBNetError`` when it cannot be) and delete the ``earlier`` run's files
    (``--overwrite``)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DBNetError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
    clear_run_folder(out, earlier)


def _say_housekeeping(log: RunLog, out: Path, earlier: list[str], ignored: list[str], is_main: bool) -> None:
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


def train(config: TrainConfig, command_line: str = "", given: frozenset[str] | None = None) -> Path:
    """Run (or resume) a training run; returns the run folder. Final weights: ``RUN/weights.pt``.
    ``given``: the settings the user chose (the fine-tuning recipe fills the others); default: those
    that differ from ``TrainConfig()``'s."""
    from rich.console import Console

    check_config(config)
    chosen = default_given(config) if given is None else given
    device, distributed = _prepare_device(config)
    is_main = world()[0] == 0
    console = Console(stderr=True, quiet=not is_main)
    asked, (config, resume_state, init_weights) = config, _resolve_config(config, chosen)
    out = Path(config.out or f"runs/{config.dataset}-{config.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    earlier = [] if resume_state is not None else check_new_run_folder(
        out, config.overwrite, {"--init-weights": config.init_weights,
                                "--pretrained-backbone": config.pretrained_backbone})
    if is_main:
        _make_run_folder(out, earlier)
    with ExitStack() as files:
        log = RunLog(console, files.enter_context(open(out / "train.log", "a", encoding="utf-8"))
                     if is_main else None)
        ignored = ignored_on_resume(asked, config) if resume_state is not None else []
        _say_housekeeping(log, out, earlier, ignored, is_main)
        run = _setup_run(config, out, resume_state, init_weights, device, distributed, log, command_line)
        state = _restore(run, resume_state)
        if is_main:
            _announce(run)
            if config.recipe:
                run.log(describe(config, chosen))
        metrics_file = files.enter_context(open(out / "metrics.jsonl", "a", encoding="utf-8")) if is_main else None
        state.started += time.time()
        _train_epochs(run, state, console, metrics_file)
        if is_main:
            _save_final_weights(run, state)
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    if state.stop is Stop.NON_FINITE:
        raise DBNetError("training stopped: the loss was not finite 10 steps in a row (lower --lr?)")
    return out
