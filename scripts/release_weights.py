"""Turn a training run's weights into the shipped file: fp16 tensors, picked thresholds, figures.

    python scripts/release_weights.py RUN/weights.pt weights/dbnet_resnet18_icdar15.pt \
        --box-thresh 0.6 --thresh 0.3 --metrics eval736.json eval1152.json --note "..."

The output stays loadable with ``torch.load(weights_only=True)`` and by ``dbnet detect``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dbcli.outputs.atomic import atomic_torch_save
from dbcli.weights import load_weights, storage_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--thresh", type=float)
    parser.add_argument("--box-thresh", type=float)
    parser.add_argument("--unclip-ratio", type=float)
    parser.add_argument("--metrics", nargs="*", default=[], help="JSON files from `dbnet eval --json`")
    parser.add_argument("--note", default="")
    parser.add_argument("--source-from", help="a weights file whose provenance (its `source` entry: origin, "
                        "licence) this file inherits, e.g. the converted file a run fine-tuned")
    args = parser.parse_args()

    weights = load_weights(args.src)
    weights.pop("path", None)
    weights["state_dict"] = {k: storage_tensor(v) for k, v in weights["state_dict"].items()}
    post = dict(weights.get("postprocess", {}))
    for key in ("thresh", "box_thresh", "unclip_ratio"):
        if getattr(args, key) is not None:
            post[key] = getattr(args, key)
    weights["postprocess"] = post
    metrics = dict(weights.get("metrics", {}))
    for path in args.metrics:
        metrics[Path(path).stem] = json.loads(Path(path).read_text())
    weights["metrics"] = metrics
    if args.note:
        weights["note"] = args.note
    if args.source_from:
        source = load_weights(args.source_from).get("source")
        if source:
            weights["source"] = {**source, "fine_tuned_from": Path(args.source_from).name}
    atomic_torch_save(weights, args.dst)
    check = torch.load(args.dst, map_location="cpu", weights_only=True)
    print(f"{args.dst}: {Path(args.dst).stat().st_size / 1e6:.1f} MB, postprocess {check['postprocess']}")


if __name__ == "__main__":
    main()
