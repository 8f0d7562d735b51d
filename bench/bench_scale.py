"""Scale policy bench: what the default (scale policy + tiling) costs on ordinary inputs and finds on
large pages of small text, against a fixed ``--short-side 736`` in the same run.

    python bench/bench_scale.py [--repeats 5] [--synthetic 8] [--skip-8000] [--rapidocr DIR]
                                [--fetch-rapidocr] [--rapidocr-8000]

1. **Ordinary inputs**: ``examples/`` (its images) and ``--synthetic`` 1280x720 street-photo-like
   JPEGs (``bench/synthetic.py``): milliseconds per image, policy vs fixed 736, interleaved
   (``bench/common.py``), with the shipped ``general`` weights on the default backend; and whether
   every image kept the same regions (the first pass decides no re-run).
2. **Large pages of small text** (``bench/pages.py``, written as PNG files): a 3000x4000 page of
   12 px text, nine 700x950 forms of 14 px text on a 2262x3000 page, one 760x1000 form of 16 px text
   on an 8000x8000 page; and a 4000x2250 street-photo-like picture (``synthetic.photo`` enlarged:
   words 25-190 px tall, a good size for the model at the first scale already: the policy's cost
   where it should not re-run). Each run is a fresh process (``dbcli.Detector`` on the file: decoding
   included, model loading and a warm-up excluded) that reports its seconds, its peak resident memory
   and its detections; the parent scores **coverage**: the share of the words that one detection no
   more than 2.5x the word's height covers >= 50% of (``pages.coverage``).
3. ``--rapidocr``/``--fetch-rapidocr``: RapidOCR 1.4.4's detector (PP-OCRv4 det with its default
   resize: small images upscaled to a 736 short side, large ones at native resolution; the code of
   ``bench_detect.py``) on the same pages; not on the 8000x8000 page unless ``--rapidocr-8000``
   (~10 GB there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np
from bench import synthetic
from bench.common import header, interleaved, median, print_table, spread
from bench.pages import coverage, text_page

ROOT = Path(__file__).resolve().parent.parent
PAGES = {  # name: text_page keywords
    "3000x4000, 12 px text": dict(width=3000, height=4000, text_height=12, seed=11),
    "2262x3000, nine forms, 14 px": dict(width=2262, height=3000, text_height=14, blocks=9, block_size=(700, 950),
                                         seed=12),
    "8000x8000, one form, 16 px": dict(width=8000, height=8000, text_height=16, blocks=1, block_size=(760, 1000),
                                       seed=13),
    "4000x2250 photo, 25-190 px words": dict(photo=True),
}


def make_page(kw: dict) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A page of ``PAGES`` (image, word boxes); ``photo``: a 1280x720 street-photo-like picture
    (``synthetic.photo``) enlarged 3.125x to 4000x2250 (words 25-190 px tall), its word boxes the
    bounds of its polygons."""
    if not kw.get("photo"):
        return text_page(**kw)
    small, polys = synthetic.photo(np.random.default_rng(14))
    image = cv2.resize(small, (4000, 2250), interpolation=cv2.INTER_CUBIC)
    boxes = [tuple(int(v * 3.125) for v in (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()))
             for p in polys]
    return image, [b for b in boxes if b[2] > b[0] and b[3] > b[1]]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
method, path, out, threads = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if method == "rapidocr":
    sys.path.insert(0, str(Path(sys.argv[5])))
    from bench_detect import RapidDet
    det = RapidDet(Path(sys.argv[6]), threads)
    det.run([Path(sys.argv[7])])  # warm-up on a small image
    t = time.perf_counter()
    boxes = det.run([path])[0]
    seconds = time.perf_counter() - t
    polys = [np.asarray(b).tolist() for b in boxes]
    scale = None
else:
    from dbcli import Detector
    kw = {} if method == "policy" else {"short_side": int(method.split()[-1])}
    det = Detector(device="cpu", **kw)
    det(np.full((720, 1280, 3), 200, np.uint8))  # warm-up
    t = time.perf_counter()
    result = det(str(path))
    seconds = time.perf_counter() - t
    polys = [d.points.tolist() for d in result.detections]
    scale = result.scale
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
Path(out).write_text(json.dumps({"seconds": seconds, "peak": peak, "polys": polys, "scale": scale}))
"""


def ordinary_inputs(folder: Path, count: int) -> list[Path]:
    paths = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    rng = np.random.default_rng(2027)
    for k in range(count):
        image, _ = synthetic.photo(rng)
        path = folder / f"photo_{k}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def bench_ordinary(paths: list[Path], repeats: int) -> None:
    from dbcli.engine.load import load
    from dbcli.engine.options import InferenceOptions
    from dbcli.engine.pipeline import run_pipeline

    model, auto = load(InferenceOptions(device="cpu"))
    _, fixed = load(InferenceOptions(device="cpu", short_side=736))
    results: dict[str, list] = {}

    def run(name, settings):
        def go():
            results[name] = list(run_pipeline(paths, model, settings))
        return go

    times = interleaved({"policy (default)": run("policy", auto), "fixed --short-side 736": run("fixed", fixed)},
                        repeats=repeats)
    same = sum(len(a.detections) == len(b.detections) and all(np.allclose(d.points, e.points)
               for d, e in zip(a.detections, b.detections)) for a, b in zip(results["policy"], results["fixed"]))
    reruns = sum(r.scale.get("factor") != f.scale.get("factor") for r, f in zip(results["policy"], results["fixed"]))
    base = median(times["fixed --short-side 736"])
    rows = [[name, f"{1000 * median(t) / len(paths):.1f}", spread([1000 * x / len(paths) for x in t]),
             f"{median(t) / base:.3f}"] for name, t in times.items()]
    print_table(f"Ordinary inputs: {len(paths)} images (examples/ and 1280x720 synthetic photos), general, "
                f"{model.info.get('backend')}", ["contender", "ms/image", "spread", "vs fixed"], rows,
                [f"same regions as fixed 736: {same}/{len(paths)} images; re-run by the policy: {reruns}"])


def child_run(method: str, page: Path, threads: int, rapid: Path | None, small: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    args = [sys.executable, "-c", CHILD, method, str(page), str(out), str(threads)]
    if rapid is not None:
        args += [str(Path(__file__).parent), str(rapid), str(small)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    data = json.loads(out.read_text())
    out.unlink()
    return data


def bench_pages(folder: Path, methods: list[str], rapid: Path | None, rapid_8000: bool, skip_8000: bool,
                threads: int, only: str | None = None) -> None:
    small = folder / "small.jpg"
    cv2.imwrite(str(small), np.full((720, 1280, 3), 200, np.uint8))
    rows = []
    for name, kw in PAGES.items():
        if skip_8000 and "8000" in name:
            continue
        if only and only not in name:
            continue
        image, words = make_page(kw)
        page = folder / "page.png"
        cv2.imwrite(str(page), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        del image
        for method in methods + (["rapidocr"] if rapid is not None and ("8000" not in name or rapid_8000) else []):
            data = child_run(method, page, threads, rapid if method == "rapidocr" else None, small)
            if "error" in data:
                rows.append([name, method, "-", "-", "-", "-", data["error"][:60]])
                continue
            polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in data["polys"]]
            scale = data.get("scale") or {}
            used = f"x{scale['factor']:.3g}, {scale['tiles']} tiles" if scale else "native (>= 736 short side)"
            rows.append([name, method, f"{100 * coverage(words, polys):.1f}%", f"{len(polys)}",
                         f"{1 / data['seconds']:.3f}", f"{data['peak'] / 2 ** 30:.2f}", used])
            print("  ", " | ".join(map(str, rows[-1])), flush=True)
    print_table(f"Large pages of small text ({threads} threads; one fresh process per run)",
                ["page", "method", "coverage", "regions", "images/s", "peak RSS GiB", "scale used"], rows,
                ["coverage: share of the words one detection at most 2.5x their height covers >= 50% of"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--synthetic", type=int, default=8, help="1280x720 synthetic photos besides examples/")
    ap.add_argument("--skip-8000", action="store_true", help="leave out the 8000x8000 page")
    ap.add_argument("--skip-ordinary", action="store_true")
    ap.add_argument("--only", help="run only the large pages whose name contains this")
    ap.add_argument("--rapidocr", help="the unpacked rapidocr_onnxruntime package folder")
    ap.add_argument("--fetch-rapidocr", action="store_true", help="pip-download RapidOCR 1.4.4 first (bench_detect)")
    ap.add_argument("--rapidocr-8000", action="store_true", help="run RapidOCR on the 8000x8000 page too (~10 GB)")
    args = ap.parse_args(argv)
    import bench_detect

    if args.fetch_rapidocr:
        bench_detect.fetch_rapidocr()
    rapid, why = bench_detect.find_rapidocr(args.rapidocr)
    if rapid is None:
        print(f"# skipping the RapidOCR rows: {why}")
    header("scale policy: cost on ordinary inputs, coverage / speed / memory on large pages")
    threads = min(4, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_ordinary:
            bench_ordinary(ordinary_inputs(folder, args.synthetic), args.repeats)
        bench_pages(folder, ["policy", "fixed 736"], rapid, args.rapidocr_8000, args.skip_8000, threads, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
