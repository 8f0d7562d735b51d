"""Fine-tuning benchmark: does ``dbnet train --init-weights general --time-limit M`` pay on a held-out
test part of a domain, and is it never below the start?

Cases (each with a test part that no training or choice sees):

* ``icdar15``: ICDAR 2015 word boxes (``general`` boxes lines: hmean ~44 on the test split). The
  trainer takes the training split (900 train / 100 validation with its default ``--val-fraction``);
  the test part is the ICDAR 2015 test split (all 500, or its first ``--test-limit`` images by name).
* ``docs``: generated pages (documents and long receipts rendered with PIL's TrueType fonts) whose
  ground truth boxes single WORDS, where ``general`` gives line boxes: a box convention of the user's
  own. ``--pages`` training pages (the trainer holds out 10% for validation) and a separate test part
  drawn from another seed, written under ``--out`` (never committed).

    python bench/bench_finetune.py --case docs --minutes 10 --out runs/bench-ft
    python bench/bench_finetune.py --case icdar15 --data-root DIR --minutes 30 --out runs/bench-ft
    python bench/bench_finetune.py --case icdar15 --data-root DIR --run runs/bench-ft/icdar15  # score a run

Prints start vs fine-tuned P / R / hmean on the test part, the run's minutes, steps and epochs,
which weights it kept, and the machine's load average over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import load_average, machine_line  # noqa: E402

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation", "/usr/share/fonts")
WORDS = ("total invoice date amount paid cash change item qty price tax VAT order number customer "
         "address phone email thank you receipt subtotal discount card visa store street city 12.50 "
         "4.99 2026 No. 0042 page report summary section results table figure the of and to in for "
         "with on by from this that is are was were be been have has".split())


def _fonts() -> list[str]:
    found = []
    for folder in FONT_DIRS:
        if os.path.isdir(folder):
            found += sorted(str(p) for p in Path(folder).rglob("*.ttf") if "Math" not in p.name)
    return found[:12]


def render_page(rng: np.random.Generator, fonts: list[str]):
    """One page: ``(RGB image, word polygons)``. Documents (portrait pages) or receipts (narrow, long),
    lines of words in one font per page, word boxes from the font's glyph extents."""
    from PIL import Image, ImageDraw, ImageFont

    receipt = rng.random() < 0.4
    width, height = (int(rng.integers(360, 520)), int(rng.integers(1100, 1700))) if receipt else \
        (int(rng.integers(800, 1000)), int(rng.integers(1000, 1300)))
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    font_path = fonts[int(rng.integers(len(fonts)))] if fonts else None
    size = int(rng.integers(14, 24 if receipt else 34))
    font = ImageFont.truetype(font_path, size) if font_path else ImageFont.load_default(size)
    ink = tuple(int(v) for v in rng.integers(0, 80, 3))
    polygons = []
    y = int(rng.integers(20, 60))
    margin = int(rng.integers(15, 60))
    while y + size * 1.5 < height - 20:
        x = margin + int(rng.integers(0, 3)) * size * 2
        for _ in range(int(rng.integers(1, 9))):
            word = str(WORDS[int(rng.integers(len(WORDS)))])
            left, top, right, bottom = draw.textbbox((x, y), word, font=font)
            if right > width - margin:
                break
            draw.text((x, y), word, font=font, fill=ink)
            polygons.append([[left, top], [right, top], [right, bottom], [left, bottom]])
            x = right + int(size * rng.uniform(0.35, 1.2))
        y += int(size * rng.uniform(1.3, 2.6))
    pixels = np.asarray(image, np.int16) + rng.integers(-8, 9, (height, width, 3))
    return pixels.clip(0, 255).astype(np.uint8), polygons


def make_docs(root: Path, pages: int, test_pages: int) -> Path:
    """``root/train.jsonl`` (``pages`` pages) and ``root/test.jsonl`` (``test_pages``, another seed)."""
    import cv2

    if (root / "test.jsonl").is_file() and (root / "train.jsonl").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    fonts = _fonts()
    for split, count, seed in (("train", pages, 1), ("test", test_pages, 2)):
        rng = np.random.default_rng(seed)
        lines = []
        for i in range(count):
            image, polygons = render_page(rng, fonts)
            name = f"{split}_{i:04d}.jpg"
            cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 95))])
            lines.append(json.dumps({"image": name, "polygons": polygons}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def score(weights: str, dataset: str, data_root: str, limit: int) -> dict:
    """P / R / hmean of a weights file on the test part, at the file's own scale and thresholds."""
    import torch

    from dbcli.backends.torch_backend import ModuleBackend
    from dbcli.data.datasets import load_samples
    from dbcli.engine.settings import Settings
    from dbcli.evaluation.scoring import evaluate_model
    from dbcli.postprocess.boxes import PostConfig, post_config_from
    from dbcli.weights import build_model, load_weights

    samples = sorted(load_samples(dataset, data_root, "test"), key=lambda s: str(s.image_path))
    samples = samples[:limit] if limit else samples
    loaded = load_weights(weights)
    settings = Settings(short_side=int(loaded.get("short_side", 736)),
                        post=post_config_from(loaded.get("postprocess"), PostConfig()))
    result = evaluate_model(samples, ModuleBackend(build_model(loaded), torch.device("cpu"), None), settings=settings)
    return {**result.scores.to_dict(), "thresh": settings.post.thresh, "box_thresh": settings.post.box_thresh,
            "seconds": result.seconds}


def train_run(dataset: str, data_root: str, out: Path, minutes: float, extra: list[str]) -> float:
    """``dbnet train --init-weights general --time-limit minutes`` (plus ``extra``); returns its wall s."""
    command = [sys.executable, "-m", "dbcli.cli", "train", "--dataset", dataset, "--data-root", data_root,
               "--init-weights", "general", "--time-limit", f"{minutes:g}", "--no-cache-images", "--out", str(out),
               *extra]
    print("$", " ".join(command), flush=True)
    repo = str(Path(__file__).resolve().parent.parent)  # this checkout's dbcli, as imported here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    started = time.time()
    subprocess.run(command, check=True, env=env)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("icdar15", "docs"), required=True)
    parser.add_argument("--data-root", help="icdar15: the ICDAR 2015 folder")
    parser.add_argument("--out", default="runs/bench-ft", help="runs and generated pages go here")
    parser.add_argument("--minutes", type=float, default=30.0, help="--time-limit of the run")
    parser.add_argument("--run", help="score this finished run folder instead of training")
    parser.add_argument("--test-limit", type=int, default=0, help="score the first N test images (0: all)")
    parser.add_argument("--pages", type=int, default=240, help="docs: training pages (10%% validate)")
    parser.add_argument("--test-pages", type=int, default=60, help="docs: test pages")
    parser.add_argument("extra", nargs="*", help="more dbnet train options (after --)")
    args = parser.parse_args()

    out = Path(args.out)
    if args.case == "docs":
        dataset, data_root = "custom", str(make_docs(out / "docs-data", args.pages, args.test_pages))
    else:
        if not args.data_root:
            parser.error("--case icdar15 needs --data-root")
        dataset, data_root = "icdar15", args.data_root
    run = Path(args.run) if args.run else out / args.case
    load_before = load_average()
    wall = train_run(dataset, data_root, run, args.minutes, args.extra) if not args.run else None
    load_after = load_average()
    start = score("general", dataset, data_root, args.test_limit)
    tuned = score(str(run / "weights.pt"), dataset, data_root, args.test_limit)
    from dbcli.weights import load_weights

    meta = load_weights(run / "weights.pt")
    train = meta.get("train", {})
    print(machine_line())
    print(f"case {args.case}: test part {start['num_images']} images, {start['num_gt']} text regions")
    for name, figures in (("general (the start)", start), ("fine-tuned weights.pt", tuned)):
        print(f"  {name:24s} P {100 * figures['precision']:5.1f} R {100 * figures['recall']:5.1f} "
              f"hmean {100 * figures['hmean']:5.1f}  (thresh {figures['thresh']:g} / box_thresh "
              f"{figures['box_thresh']:g}, {figures['seconds']:.0f} s)")
    print(f"  gain {100 * (tuned['hmean'] - start['hmean']):+.1f} hmean points; run: "
          f"{train.get('wall_s', 0) / 60:.1f} min on the run's clock"
          + (f", {wall / 60:.1f} min wall" if wall else "")
          + f", {train.get('steps')} steps, {train.get('epochs_done')} full epochs")
    print(f"  {train.get('selected', '(no selection recorded)')}")
    if load_before is not None:
        print(f"  load average (1 min) before / after the run: {load_before:.1f} / {load_after:.1f}")


if __name__ == "__main__":
    main()
