"""A run's training data: the samples and their validation hold-out (``load_data``), the per-epoch
sampler that makes a run and its resume reproducible (``EpochSampler``), the augmented crops with their
label maps, made in DataLoader workers (``TrainDataset``), and the loader over them (``make_loader``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dbcli.data.augment import AugmentConfig, augment
from dbcli.data.datasets import Sample, load_samples, split_holdout
from dbcli.data.image_cache import cache_images, default_budget_mb
from dbcli.data.labels import make_targets
from dbcli.errors import DBNetError
from dbcli.imaging import normalize, read_image
from dbcli.progress import plural
from dbcli.training.config import TrainConfig

Log = Callable[[str], None]  # a run's log (``dbcli.training.state.RunLog``): one message a call


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


@dataclass
class RunData:
    """A run's images: the training and validation samples, and their decoded copies in memory
    (``--cache-images``; None where an image is decoded as it is used)."""

    train_samples: list[Sample]
    val_samples: list[Sample]
    images: list[np.ndarray | None] | None = None
    val_images: list[np.ndarray] | None = None


def usable_holdout(val_samples: list[Sample], log: Log) -> list[Sample]:
    """``val_samples``, or none when they hold no text region to find (their hmean would be 1.000 for
    a model that finds nothing, and pick ``best.pt`` on it): then said, and the run not validated."""
    if val_samples and not any(not ignored for s in val_samples for ignored in s.ignore):
        log(f"warning: the validation hold-out ({plural(len(val_samples), 'image')}) has no text regions to "
            "find, so its hmean would mean nothing: the run is not validated and best.pt not written (raise "
            "--val-fraction, or add images with text)")
        return []
    return val_samples


def load_data(config: TrainConfig, rank: int, log: Log) -> RunData:
    """The training split, its validation hold-out (``--val-fraction``, ``--val-limit``, none when it
    holds no text) and the image cache within its budget (``--cache-mb``)."""
    samples = load_samples(config.dataset, config.data_root, "train")
    train_samples, val_samples = split_holdout(samples, config.val_fraction, config.seed)
    if samples and not train_samples:
        raise DBNetError(f"--val-fraction {config.val_fraction:g} holds out all {plural(len(samples), 'image')} "
                         "of the training split, leaving none to train on")
    if config.val_limit:
        val_samples = val_samples[: config.val_limit]
    data = RunData(train_samples, usable_holdout(val_samples, log))
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


def fit_batch(config: TrainConfig, n_train: int, world_size: int, log: Log) -> TrainConfig:
    """``config`` with ``batch_size`` at most the training images per process (a larger batch would
    only repeat them, in memory), said in the log."""
    most = max(1, n_train // world_size)
    if config.batch_size <= most:
        return config
    log(f"note: --batch-size {config.batch_size} is more than the {plural(n_train, 'training image')}"
        + (f" / {world_size} processes" if world_size > 1 else "") + f": batches of {most} are used")
    return replace(config, batch_size=most)


def make_loader(config: TrainConfig, train_samples: list[Sample], images: list[np.ndarray | None] | None,
                device: torch.device, rank: int, world_size: int) -> tuple[DataLoader, EpochSampler]:
    """The training loader (batches of ``config.batch_size`` crops, ``(B, 3, S, S)`` images and their
    ``(B, S, S)`` label maps, ``S = config.crop_size``) and its sampler (this process's share, a
    whole number of steps). ``images``: the samples' decoded copies (``--cache-images``), else None."""
    aug = AugmentConfig(crop_size=config.crop_size, scale_range=(config.scale_min, config.scale_max),
                        max_angle=config.max_angle, reference_short_side=config.scale_reference or 0)
    dataset = TrainDataset(train_samples, aug, config.seed, images)
    sampler = EpochSampler(len(dataset), config.seed, rank, world_size, config.batch_size)
    workers = config.workers or 0  # set by dbcli.training.setup.resolve_config (None there means "the default")
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    return loader, sampler
