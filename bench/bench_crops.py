"""What reading order and ``--crops`` cost ``dbnet detect``, and how many crops per second it writes.

    python bench/bench_crops.py [--images DIR] [--weights NAME_OR_FILE] [--repeats 7] [--loops 5]

Contenders (interleaved in the same run, each a whole ``dbcli.workflows.detect.detect_files`` call over
the images,
JSON written, model loaded once; a sample is ``--loops`` such calls, the figure the median of
``--repeats`` samples):
- ``--sort none``: no reading order and no crops: the detect of before this feature, the baseline;
- default (``--sort lines``), crops off: what every ``dbnet detect`` now runs;
- ``--sort columns``, crops off;
- ``--crops DIR``: reading order, then one PNG per detection (perspective warp, PNG encoding,
  atomic write).
Then the stages alone, on the detections found once: reading order (ms per image) and crops (cut,
then cut + encode + write: crops per second).

Inputs: the images and PDF pages of ``--images`` (default: the repository's ``examples/``: four
images and the two pages of ``newsletter.pdf``, rendered at 144 dpi inside each detect call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
from bench.common import ROOT, header, interleaved, median, print_table, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=ROOT / "examples")
    parser.add_argument("--weights", default="general")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loops", type=int, default=5, help="detect calls per sample (steadier figures)")
    parser.add_argument("--short-side", type=int, default=None)
    args = parser.parse_args()

    from rich.console import Console

    from dbcli.backends.loading import load_model
    from dbcli.engine.options import InferenceOptions
    from dbcli.engine.pipeline import run_pipeline
    from dbcli.engine.settings import resolve_settings
    from dbcli.outputs.writers import write_crops
    from dbcli.postprocess.crops import crop_regions
    from dbcli.postprocess.reading_order import reading_order
    from dbcli.workflows.detect import detect_files
    from dbcli.workflows.inputs import expand_inputs, output_keys

    header("dbnet detect: reading order and --crops (bench/bench_crops.py)")
    images, _ = expand_inputs([args.images])
    if not images:
        raise SystemExit(f"{args.images}: no images")
    model = load_model(Path(args.weights), None, "cpu", "fp32")
    quiet = Console(quiet=True)
    settings = {mode: resolve_settings(model, InferenceOptions(short_side=args.short_side, sort=mode))
                for mode in ("none", "lines", "columns")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        counts: dict[str, int] = {}

        def run(name: str, mode: str, crops: bool):
            def call():
                for _ in range(args.loops):
                    summary = detect_files([args.images], tmp_path / f"{name}.json", "json", model, settings[mode],
                                           console=quiet, out_console=quiet, progress=False,
                                           crops=tmp_path / "crops" if crops else None)
                counts[name] = summary.crops
            return call

        contenders = {
            "detect --sort none (baseline: no reading order, no crops)": run("none", "none", False),
            "detect (default --sort lines), crops off": run("lines", "lines", False),
            "detect --sort columns, crops off": run("columns", "columns", False),
            "detect --crops DIR (--sort lines)": run("crops", "lines", True),
        }
        times = interleaved(contenders, repeats=args.repeats, warmup=1)
        n_calls = len(images) * args.loops
        base = median(times["detect --sort none (baseline: no reading order, no crops)"])
        rows = []
        for name, samples in times.items():
            m = median(samples) / args.loops
            rows.append([name, f"{len(images) / m:.2f}", f"{m * 1000 / len(images):.1f}", spread(samples),
                         f"{m * args.loops / base:.3f}x"])
        n_crops = counts["crops"]
        extra = median(times["detect --crops DIR (--sort lines)"]) - median(
            times["detect (default --sort lines), crops off"])
        crops_time = median(times["detect --crops DIR (--sort lines)"]) / args.loops
        print_table(f"{len(images)} images of {args.images} ({args.weights}, CPU, fp32), {n_crops} text regions, "
                    f"{args.loops} passes per sample",
                    ["contender", "images/s", "ms/image", "spread", "time vs baseline"], rows,
                    [f"crops on: +{extra * 1000 / n_calls:.1f} ms/image for "
                     f"{n_crops / len(images):.1f} crops/image (detect --crops writes "
                     f"{n_crops / crops_time:.0f} crops/s end to end)"])

        # The crop stage alone: cut + PNG encode + atomic write of every region, detections found once.
        found = [r for r in run_pipeline(images, model, settings["lines"], keep_images=True)
                 if hasattr(r, "detections")]
        order: list[float] = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for r in found:
                reading_order([d.points for d in r.detections], "lines")
            order.append(time.perf_counter() - t0)
        stage: list[float] = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for r, key in zip(found, output_keys(images)):
                crops = crop_regions(r.image, [d.points for d in r.detections])
                write_crops(crops, tmp_path / "stage", key)
            stage.append(time.perf_counter() - t0)
        cut: list[float] = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for r in found:
                crop_regions(r.image, [d.points for d in r.detections])
            cut.append(time.perf_counter() - t0)
        total = sum(len(r.detections) for r in found)
        print(f"\nreading order (--sort lines) alone: {median(order) * 1000 / len(found):.2f} ms/image "
              f"({total / len(found):.1f} regions/image), spread {spread(order)}")
        print_table("The crop stage alone", ["step", "crops/s", "ms/crop", "spread"], [
            ["cut (perspective warp)", f"{total / median(cut):.0f}", f"{median(cut) * 1000 / total:.2f}", spread(cut)],
            ["cut + PNG encode + atomic write", f"{total / median(stage):.0f}", f"{median(stage) * 1000 / total:.2f}",
             spread(stage)],
        ])


if __name__ == "__main__":
    main()
