"""End-to-end OCR against RapidOCR 1.4.4's full pipeline, same images, same run.

    python bench/bench_ocr.py [--count 24] [--busy] [--icdar DIR --icdar-count 100] [--micro]

Contenders: ``dbnet detect --text`` = ``dbcli.Detector(text=True)(image)``, the engine path of
``dbnet detect --text`` (shipped ``general`` weights, or ``icdar15`` on ICDAR 2015; its recognition
stage, ``dbcli.engine.text``: PP-OCRv6 small rec + direction classifier, on the detector's threads);
``RapidOCR 1.4.4`` = ``rapidocr_onnxruntime.RapidOCR()(image)``
(PP-OCRv4 det + direction classifier + PP-OCRv4 rec), both on onnxruntime's default threads.

Images: ``--count`` documents rendered by ``bench/ocr_pages.py`` (receipts, forms, screenshots with
known lines; nothing written to disk) and, with ``--icdar``, the first ``--icdar-count`` ICDAR 2015
test images with their transcriptions (read in place, nothing derived is written).
Scores (``dbcli.evaluation.text_metrics``): word-level bag-of-words P / R / F1 per image,
case-insensitive, totals over images; on ICDAR 2015 also end to end (IoU > 0.5 and the same text).
Time: wall seconds per image, the two contenders alternating image by image; images/s = images /
total seconds. ``--busy``: timed again beside one competing CPU-bound process. ``--micro``: the
recogniser alone on the detected crops: ms/crop by batch size / bucket, the direction classifier's
cost and its accuracy on the crops turned 180 degrees.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, interleaved, load_average, median, print_table, spread  # noqa: E402
from ocr_pages import document_set  # noqa: E402

from dbcli import Detector  # noqa: E402
from dbcli.evaluation.text_metrics import Counts, end_to_end_image, total, word_counts  # noqa: E402
from dbcli.recognition import Recognizer  # noqa: E402
from dbcli.recognition.recognizer import RecognizerSettings  # noqa: E402

Sample = tuple[str, np.ndarray, list[str], list[np.ndarray] | None]  # kind, RGB image, texts, gt polygons


class Busy:
    """One competing CPU-bound process (a pure-Python loop) while the ``with`` block runs."""

    def __init__(self, on: bool) -> None:
        self.on, self.proc = on, None

    def __enter__(self) -> Busy:
        if self.on:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


class DbnetOcr:
    """``dbnet detect --text``'s engine (``Detector(text=True)``): ``(polygons, texts)`` per image;
    ``keep_crops``: the crops are kept too, for --micro."""

    def __init__(self, weights: str | None, keep_crops: bool = False) -> None:
        self.detector = Detector(weights, text=True)
        self.recognizer: Recognizer = self.detector.model.reader  # loaded with the model
        self.keep_crops = keep_crops
        self.crops: list[np.ndarray] = []  # every crop seen, for --micro

    def __call__(self, image: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
        result = self.detector(image, crops=self.keep_crops)
        self.crops.extend(result.crops or [])
        return [d.points for d in result.detections], [d.text or "" for d in result.detections]


class RapidOcr:
    """RapidOCR 1.4.4's own pipeline (det + cls + rec) on the BGR image."""

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR
        self.engine = RapidOCR()

    def __call__(self, image: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
        result, _ = self.engine(np.ascontiguousarray(image[:, :, ::-1]))
        result = result or []
        return [np.asarray(r[0], dtype=np.float32) for r in result], [str(r[1]) for r in result]


def read_icdar(root: Path, count: int) -> list[Sample]:
    """The first ``count`` ICDAR 2015 test images (by number) with their polygons and transcriptions."""
    import cv2
    samples: list[Sample] = []
    for n in range(1, count + 1):
        image = cv2.imread(str(root / "test_images" / f"img_{n}.jpg"))
        if image is None:
            break
        polys, texts = [], []
        for line in (root / "test_gts" / f"gt_img_{n}.txt").read_text(encoding="utf-8-sig").splitlines():
            parts = line.strip().split(",")
            if len(parts) >= 9:
                polys.append(np.array(parts[:8], dtype=np.float32).reshape(4, 2))
                texts.append(",".join(parts[8:]))
        samples.append(("icdar15", image[:, :, ::-1].copy(), texts, polys))
    return samples


def run(contenders: dict, samples: list[Sample]) -> tuple[dict, dict]:
    """Each contender on every image, alternating; returns outputs and wall seconds per contender."""
    outputs: dict = {n: [] for n in contenders}
    seconds = {n: 0.0 for n in contenders}
    names = list(contenders)
    for i, (_, image, _, _) in enumerate(samples):
        for name in names[i % 2:] + names[:i % 2]:
            t0 = time.perf_counter()
            outputs[name].append(contenders[name](image))
            seconds[name] += time.perf_counter() - t0
    return outputs, seconds


def scores(outputs: list, samples: list[Sample]) -> dict[str, Counts]:
    """Bag-of-words counts per kind (and ``all``), and end-to-end counts where polygons are known."""
    by_kind: dict[str, list[Counts]] = {}
    e2e: list[Counts] = []
    for (polys, texts), (kind, _, truth, gt_polys) in zip(outputs, samples):
        by_kind.setdefault(kind, []).append(word_counts(texts, truth))
        if gt_polys is not None:
            e2e.append(end_to_end_image(gt_polys, truth, polys, texts))
    out = {k: total(v) for k, v in by_kind.items()}
    if len(by_kind) > 1:
        out["all"] = total(c for v in by_kind.values() for c in v)
    if e2e:
        out["icdar15 end-to-end"] = total(e2e)
    return out


def accuracy_table(title: str, outputs: dict, samples: list[Sample]) -> None:
    per = {name: scores(out, samples) for name, out in outputs.items()}
    rows = []
    for kind in next(iter(per.values())):
        for name in per:
            c = per[name][kind]
            rows.append([f"{kind}: {name}", f"{100 * c.precision:.1f}", f"{100 * c.recall:.1f}",
                         f"{100 * c.f1:.1f}", f"{c.correct}/{c.predicted}/{c.expected}"])
    print_table(title, ["set: contender", "P", "R", "F1", "correct/read/expected"], rows,
                ["bag of words per image, case-insensitive; end to end: IoU > 0.5 and the same text"])


def speed_table(phase: str, seconds: dict, n: int, load: tuple[float | None, float | None]) -> None:
    base = seconds.get("RapidOCR 1.4.4")
    rows = [[name, f"{s / n:.3f}", f"{n / s:.2f}", f"{base / s:.2f}x" if base else "-"] for name, s in seconds.items()]
    print_table(f"speed, {phase} ({n} images; load average {load[0]:.2f} before, {load[1]:.2f} after)",
                ["contender", "s/image", "images/s", "vs RapidOCR"], rows)


BATCHINGS = {"batch 1": RecognizerSettings(batch_size=1, min_width=320, direction=False),
             "batch 1, min width 0": RecognizerSettings(batch_size=1, min_width=0, direction=False),
             "batch 6, no buckets, min width 320 (PaddleOCR's)": RecognizerSettings(
                 batch_size=6, bucket_spread=1e9, min_width=320, direction=False),
             "batch 8, buckets x1.5, min width 320": RecognizerSettings(batch_size=8, min_width=320, direction=False),
             "batch 16, buckets x2, min width 320": RecognizerSettings(batch_size=16, bucket_spread=2.0,
                                                                       min_width=320, direction=False),
             "batch 8, buckets x1.5, min width 0": RecognizerSettings(batch_size=8, min_width=0, direction=False),
             "batch 16, buckets x2, min width 0": RecognizerSettings(batch_size=16, bucket_spread=2.0, min_width=0,
                                                                     direction=False),
             "batch 16, buckets x1.5, min width 0": RecognizerSettings(batch_size=16, min_width=0, direction=False),
             "batch 32, buckets x2, min width 0": RecognizerSettings(batch_size=32, bucket_spread=2.0, min_width=0,
                                                                     direction=False)}


def micro(recognizer: Recognizer, crops: list[np.ndarray], repeats: int = 3) -> None:
    """ms/crop of the recogniser by batching (interleaved repeats, medians), and the direction
    classifier's cost and accuracy."""
    crops = [c for c in crops if min(c.shape[:2]) >= 2]
    texts: dict[str, list[str]] = {}

    def reader(settings: RecognizerSettings, name: str):
        def read() -> None:
            recognizer.settings = settings
            texts[name] = [r.text for r in recognizer.read_lines(crops)]
        return read

    load = load_average()
    times = interleaved({n: reader(s, n) for n, s in BATCHINGS.items()}, repeats=repeats, warmup=0)
    recognizer.settings = RecognizerSettings()
    reference = texts["batch 1"]
    rows = [[n, f"{1000 * median(t) / len(crops):.1f}", spread(t),
             f"{sum(a == b for a, b in zip(texts[n], reference))}/{len(crops)}"] for n, t in times.items()]
    print_table(f"recogniser alone, {len(crops)} detected crops, median of {repeats} interleaved rounds "
                f"(load average {load:.2f} before, {load_average():.2f} after)",
                ["batching", "ms/crop", "spread", "same text as batch 1"], rows)
    direction_table(recognizer, crops)


def direction_table(recognizer: Recognizer, crops: list[np.ndarray]) -> None:
    """The direction classifier, reading both ways, and the default (classifier + re-reading crops
    that score low turned around) on the crops turned 180 degrees and as they are."""
    classifier = recognizer.direction
    assert classifier is not None
    n = len(crops)
    flipped = [np.ascontiguousarray(c[::-1, ::-1]) for c in crops]
    t0 = time.perf_counter()
    up, down = classifier(crops), classifier(flipped)
    ms = 1000 * (time.perf_counter() - t0) / (2 * n)
    upright = [r.text for r in recognizer.read_lines(crops)]
    t0 = time.perf_counter()
    as_is, turned = recognizer.read_lines(flipped), recognizer.read_lines(crops)
    rule_ms = 1000 * (time.perf_counter() - t0) / n - ms_per_read(recognizer, crops)
    rule = [t.text if t.score >= a.score else a.text for a, t in zip(as_is, turned)]
    rows = [["classifier alone (p(180) > 0.9)", f"{ms:.1f}", f"{sum(down)}/{n}", f"{sum(up)}/{n}",
             f"{same(recognizer, flipped, upright, RecognizerSettings(recheck_below=0))}/{n}", "-"],
            ["read both ways, keep the higher score", f"{rule_ms:.1f}", "-", "-",
             f"{sum(a == b for a, b in zip(rule, upright))}/{n}", "-"]]
    t0 = time.perf_counter()
    fixed = same(recognizer, flipped, upright, RecognizerSettings())
    total_ms = 1000 * (time.perf_counter() - t0) / n
    kept = same(recognizer, crops, upright, RecognizerSettings())
    rows.append([f"default: classifier + re-read below {RecognizerSettings().recheck_below}",
                 f"{total_ms - ms_per_read(recognizer, crops):.1f}", "-", "-", f"{fixed}/{n}", f"{kept}/{n}"])
    print_table("text direction on the detected crops turned 180 degrees (ms/crop: on top of reading once)",
                ["method", "ms/crop", "flipped caught", "upright turned (wrong)", "flipped read as upright",
                 "upright read unchanged"], rows)


def ms_per_read(recognizer: Recognizer, crops: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    recognizer.read_lines(crops)
    return 1000 * (time.perf_counter() - t0) / len(crops)


def same(recognizer: Recognizer, crops: list[np.ndarray], expected: list[str], settings: RecognizerSettings) -> int:
    """How many crops ``recognizer`` with ``settings`` reads as ``expected``."""
    recognizer.settings = settings
    got = [r.text for r in recognizer(crops)]
    recognizer.settings = RecognizerSettings()
    return sum(a == b for a, b in zip(got, expected))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=24, help="rendered documents (receipts, forms, screenshots)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--busy", action="store_true", help="time again beside one competing CPU-bound process")
    ap.add_argument("--icdar", type=Path, help="ICDAR 2015 folder (test_images/, test_gts/)")
    ap.add_argument("--icdar-count", type=int, default=100)
    ap.add_argument("--micro", action="store_true", help="recogniser alone: batching and direction")
    args = ap.parse_args(argv)
    header("end-to-end OCR: dbnet detect --text vs RapidOCR 1.4.4")
    docs: list[Sample] = [(k, im, lines, None) for k, im, lines in document_set(args.count, args.seed)]
    sets = [("rendered documents", docs, None)]
    if args.icdar:
        sets.append(("ICDAR 2015 test", read_icdar(args.icdar, args.icdar_count), "icdar15"))
    for title, samples, weights in sets:
        if not samples:
            continue
        dbnet = DbnetOcr(weights, keep_crops=args.micro and weights is None)
        contenders = {"dbnet detect --text": dbnet, "RapidOCR 1.4.4": RapidOcr()}
        for phase in (["idle", "busy"] if args.busy else ["idle"]):
            with Busy(phase == "busy"):
                before = load_average()
                outputs, seconds = run(contenders, samples)
                speed_table(f"{title}, {phase}", seconds, len(samples), (before, load_average()))
            if phase == "idle":
                accuracy_table(f"word accuracy, {title}", outputs, samples)
        if args.micro and weights is None:
            micro(dbnet.recognizer, dbnet.crops[: 400])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
