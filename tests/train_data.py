"""A tiny custom training dataset and a small ``TrainConfig`` over it, shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from dbcli.training.config import TrainConfig


def make_dataset(root: Path, count: int = 5, seed: int = 0) -> Path:
    """``count`` images of 96-160 px with 1-3 filled rectangles each, as a custom JSONL dataset."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        h, w = (int(v) for v in rng.integers(96, 161, 2))
        image = np.full((h, w, 3), rng.integers(150, 256, 3), np.uint8)
        polygons = []
        for k in range(int(rng.integers(1, 4))):
            y0 = 8 + k * (h // 3)
            x0 = int(rng.integers(4, w // 3))
            x1, y1 = int(min(w - 4, x0 + rng.integers(30, 80))), int(y0 + rng.integers(10, h // 3 - 6))
            cv2.rectangle(image, (x0, y0), (x1, y1), tuple(int(c) for c in rng.integers(0, 90, 3)), -1)
            polygons.append({"points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
        cv2.imwrite(str(root / f"s{i}.png"), image)
        lines.append(json.dumps({"image": f"s{i}.png", "polygons": polygons}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def small_config(data: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(dataset="custom", data_root=str(data), out=str(out), epochs=2, batch_size=2, crop_size=64,
                workers=0, device="cpu", val_fraction=0.2, val_every=1, val_short_side=64, log_every=1)
    return TrainConfig(**{**base, **overrides})
