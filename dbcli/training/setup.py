"""Everything before a run's first step: its settings resolved (``resolve_config``: a resumed run's
own, a fine-tuning run's recipe, the ``--init-weights`` file read), its device (``prepare_device``),
and the run itself (``setup_run``: seeds, data, model, optimizer, mixed precision, in the order that
makes a run and its resume reproducible), announced in its log (``announce``)."""

from __future__ import annotations

import random
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from dbcli.cpu import cpu_supports_bf16, default_workers, tune_malloc
from dbcli.device import init_distributed, pick_device, world
from dbcli.errors import DBNetError
from dbcli.models import DBNet, ModelConfig, count_parameters
from dbcli.outputs.atomic import atomic_write_json
from dbcli.postprocess.boxes import PostConfig, post_config_from
from dbcli.training.checkpoints import load_checkpoint, saved_config
from dbcli.training.config import RESUME_KEEPS, TrainConfig
from dbcli.training.data import Log, fit_batch, load_data, make_loader
from dbcli.training.finetune import reset_thresh_branch
from dbcli.training.losses import LossConfig
from dbcli.training.pretrained import load_backbone_state
from dbcli.training.recipe import apply_recipe
from dbcli.training.state import Run, RunLog
from dbcli.weights import build_model, load_weights


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


def resolve_config(config: TrainConfig, given: frozenset[str]) -> tuple[TrainConfig, dict | None, dict | None]:
    """The run's settings (a resumed run's own, except what this process is told; a new fine-tuning
    run's recipe for the settings not ``given``), the checkpoint to resume from and the
    ``--init-weights`` file (read, and its architecture adopted, before the slow decoding)."""
    config, resume_state = _resumed_config(config)
    config = _with_schedule_defaults(config)
    config, init_weights = _starting_weights(config, resume_state, given)
    config = replace(config, arch=config.arch or "resnet18", dcn=bool(config.dcn))
    return config, resume_state, init_weights


def prepare_device(config: TrainConfig) -> tuple[torch.device, bool]:
    """The run's device (CPU tuning applied) and whether this is a torchrun process group."""
    device = pick_device(config.device)
    if device.type == "cpu":
        tune_malloc()
        torch.set_flush_denormal(True)  # denormal activations slow CPU kernels many-fold
    return device, init_distributed(device)


def _initial_model(config: TrainConfig, init_weights: dict | None, log: Log) -> DBNet | None:
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
                 distributed: bool, log: Log) -> tuple[DBNet, torch.nn.Module]:
    """The model (``initial_model`` from ``--init-weights``, the resumed run's architecture, or a new
    one with its ``--pretrained-backbone``) on ``device``, channels-last, and its DDP wrapper (itself
    when not distributed)."""
    if initial_model is not None:
        model = initial_model
    elif resume_state is not None:  # the run's own architecture, input convention included
        model = DBNet(ModelConfig.from_dict(resume_state["weights"]["model"]))
    else:
        model = DBNet(ModelConfig(config.arch, config.dcn))  # type: ignore[arg-type]  # set by resolve_config
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


def _make_optimizer(config: TrainConfig, model: DBNet) -> torch.optim.Optimizer:
    """``--optimizer``: SGD with momentum or AdamW, at ``--lr`` (the schedule sets it each step)."""
    if config.optimizer == "sgd":  # the paper's
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adamw":  # escapes the constant-map plateau faster from scratch (docTR-style)
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise DBNetError(f"unknown optimizer {config.optimizer!r} (sgd or adamw)")


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """``--amp``'s autocast type: fp16 on CUDA, bf16 on CPUs that support it, else None (fp32)."""
    if config.amp and device.type == "cuda":
        return torch.float16
    if config.amp and device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


def setup_run(config: TrainConfig, out: Path, resume_state: dict | None, init_weights: dict | None,
              device: torch.device, distributed: bool, log: RunLog, command_line: str) -> Run:
    """Seeds, data, model, optimizer: everything the loop needs, in the order that makes a run (and
    its resume) reproducible."""
    rank, world_size = world()
    torch.manual_seed(config.seed + rank)
    random.seed(config.seed + rank)
    np.random.seed(config.seed + rank)
    initial_model = _initial_model(config, init_weights, log)
    config = replace(config, post=asdict(run_post_config(config.post, init_weights)))
    data = load_data(config, rank, log)
    config = fit_batch(config, len(data.train_samples), world_size, log)
    loader, sampler = make_loader(config, data.train_samples, data.images, device, rank, world_size)
    model, ddp = _build_model(config, initial_model, resume_state, device, distributed, log)
    optimizer = _make_optimizer(config, model)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return Run(config, out, device, distributed, rank, world_size, log, command_line, model, ddp,
               optimizer, scaler, amp_dtype, LossConfig(**config.loss), PostConfig(**config.post), loader,
               sampler, data.train_samples, data.val_samples, data.val_images)


def _arithmetic(amp_dtype: torch.dtype | None) -> str:
    """``--amp``'s outcome in words: ``mixed precision bf16`` / ``fp16``, or ``fp32`` (off, or not
    supported here)."""
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    return f"mixed precision {names[amp_dtype]}" if amp_dtype in names else "fp32 (no mixed precision)"


def announce(run: Run) -> None:
    """``config.json`` and the run's first log line (main process)."""
    config, out = run.config, run.out
    atomic_write_json(out / "config.json", asdict(config))
    run.log(f"run {out}: {config.arch} ({count_parameters(run.model) / 1e6:.2f}M params) on {run.device}, "
            f"{_arithmetic(run.amp_dtype)}, {len(run.train_samples)} train / {len(run.val_samples)} val images, "
            f"{run.steps_per_epoch} steps/epoch x {config.epochs} epochs, batch {config.batch_size} x "
            f"{run.world_size}")
    if config.time_limit:
        run.log(f"--time-limit {config.time_limit:g} min: the poly lr decay ends at the time limit (or the last "
                "epoch, if sooner)" if config.time_schedule else
                f"--time-limit {config.time_limit:g} min with --no-time-schedule: the poly lr decay is set for "
                f"{config.epochs} epochs; stopped at the time limit, the lr may still be near its peak")
