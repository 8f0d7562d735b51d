"""Scale policy bench: coverage, precision, cost and memory of the default (scale policy + tiling) on
real-looking large pages, beside the old policy, the fixed ``--short-side 736`` and RapidOCR's
detector; and the check that ordinary images are unchanged.

    python bench/bench_scale.py [--full] [--repeats 3] [--synthetic 8] [--icdar DIR] [--icdar-count 50]
                                [--old-ref main] [--large-photos N] [--only TEXT] [--skip-ordinary] [--skip-pages]
                                [--rapidocr DIR] [--fetch-rapidocr] [--rapidocr-big]

1. **Ordinary images** (``examples/``, ``--synthetic`` 1280x720 street-photo-like JPEGs and
   ``--icdar-count`` ICDAR 2015 test images from ``--icdar``, default ``/work/shared/datasets/icdar2015``
   when there): ms/image of the policy against the **old policy** (``dbcli/.../scale_policy.py`` as
   it is at ``--old-ref``, read with ``git show``) and the fixed 736 scale, interleaved
   (``bench/common.py``), ``general`` weights, default backend; and how many images kept the same
   regions as the old policy.
2. **Pages** (``bench/pages.py``'s layouts, written as PNG): forms with boxes and ruled lines, a
   ruled table, dense two-column paragraphs, a form photographed on a desk, a document scanned with
   wide margins, nine documents on one page, an ordinary document page and an ordinary form (text the
   first pass reads: the precision to match) and an enlarged street photo; ``--full`` adds the 12000x12000 pages. Each
   run is a fresh process (``dbcli.Detector`` on the file: decoding included, model loading and a
   warm-up excluded) reporting seconds, peak RSS and its detections; the parent scores **coverage**
   (share of the words one detection no taller than 2.5x the word covers >= 50% of) and
   **precision** (share of the detections holding a word's centre and no taller than 2.5x that word:
   blobs, ruled lines and desk texture count as wrong), ``pages.coverage`` / ``pages.precision``.
3. ``--large-photos N``: the first N ICDAR 2015 test images enlarged 3x (3840x2160, the size of a
   phone photo, which the first pass shrinks): precision / recall / hmean under the ICDAR 2015
   protocol and s/image, new policy against the old.
4. RapidOCR 1.4.4's detector (PP-OCRv4 det, its own pre/post-processing and default resize: large
   images at native resolution; ``bench_detect.RapidDet``) on the same pages, up to 30 megapixels
   unless ``--rapidocr-big`` (~10 GB at 8000x8000).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np
from bench import synthetic
from bench.common import header, interleaved, median, print_table, spread
from bench.pages import coverage, layout_page, precision, text_page

ROOT = Path(__file__).resolve().parent.parent
ICDAR = Path("/work/shared/datasets/icdar2015")
NINE = [(kind, (700, 950), 14, (fx, fy)) for kind, (fx, fy) in
        zip(["form", "table", "paragraphs"] * 3, [(x, y) for y in (0, 0.5, 1) for x in (0, 0.5, 1)])]
PAGES = {  # name: layout_page spec (or text_page / photo keywords)
    "form filling an A4 scan, 2480x3508, 12 px": dict(canvas=(2480, 3508), docs=[("form", (2480, 3508), 12, (0, 0))]),
    "ruled table, 4000x3000, 14 px": dict(canvas=(4000, 3000), docs=[("table", (4000, 3000), 14, (0, 0))]),
    "two-column paragraphs, 3000x4000, 12 px": dict(canvas=(3000, 4000),
                                                    docs=[("paragraphs", (3000, 4000), 12, (0, 0))]),
    "form photographed on a desk, 6000x4500, 16 px": dict(canvas=(6000, 4500), background="desk", shadow=True,
                                                          docs=[("form", (1500, 2000), 16, (0.4, 0.5))]),
    "paragraphs scanned with wide margins, 8000x8000, 14 px": dict(canvas=(8000, 8000),
                                                                  docs=[("paragraphs", (760, 1000), 14, (0.3, 0.6))]),
    "table on a big blank page, 8000x8000, 14 px": dict(canvas=(8000, 8000),
                                                        docs=[("table", (1500, 2000), 14, (0.5, 0.4))]),
    "nine documents on one page, 2262x3000, 14 px": dict(canvas=(2262, 3000), docs=NINE),
    "ordinary document page, 2000x2600, 40 px": dict(canvas=(2000, 2600),
                                                     docs=[("paragraphs", (2000, 2600), 40, (0, 0))]),
    "ordinary form page, 2480x3508, 36 px": dict(canvas=(2480, 3508), docs=[("form", (2480, 3508), 36, (0, 0))]),
    "4000x2250 photo, 25-190 px words": dict(photo=True),
}
FULL_PAGES = {
    "form on a grey scanner lid, 12000x12000, 16 px": dict(canvas=(12000, 12000), background="grey",
                                                           docs=[("form", (1500, 2000), 16, (0.7, 0.2))]),
    "four documents on a 12000x12000 desk, 20 px": dict(
        canvas=(12000, 12000), background="desk", shadow=True,
        docs=[("form", (2500, 3300), 20, (0.05, 0.05)), ("table", (3000, 2200), 20, (0.9, 0.1)),
              ("paragraphs", (3000, 4000), 20, (0.1, 0.9)), ("form", (2000, 2600), 24, (0.85, 0.85))]),
    "3000x4000, 12 px text (rendered word grid)": dict(text=dict(width=3000, height=4000, text_height=12, seed=11)),
}


def make_page(spec: dict) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A page of ``PAGES`` (image, word boxes); ``photo``: a 1280x720 street-photo-like picture
    (``synthetic.photo``) enlarged 3.125x to 4000x2250 (words 25-190 px tall), its word boxes the
    bounds of its polygons; ``text``: ``pages.text_page`` keywords."""
    if "text" in spec:
        return text_page(**spec["text"])
    if not spec.get("photo"):
        return layout_page({"seed": zlib.crc32(str(spec["docs"]).encode()) % 1000, **spec})
    small, polys = synthetic.photo(np.random.default_rng(14))
    image = cv2.resize(small, (4000, 2250), interpolation=cv2.INTER_CUBIC)
    boxes = [tuple(int(v * 3.125) for v in (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()))
             for p in polys]
    return image, [b for b in boxes if b[2] > b[0] and b[3] > b[1]]


# --- the old policy -------------------------------------------------------------------------------
POLICY_PATHS = ("dbcli/engine/scale_policy.py", "dbcli/inference/scale_policy.py")


def old_policy_source(ref: str, folder: Path) -> Path:
    """The scale policy module as it is at git ``ref``, its imports pointed at this checkout's package
    (the module may have moved), written into ``folder``."""
    here = next((p for p in POLICY_PATHS if (ROOT / p).exists()), POLICY_PATHS[-1])
    package = here.rsplit("/", 1)[0].replace("/", ".")
    for path in POLICY_PATHS:
        proc = subprocess.run(["git", "show", f"{ref}:{path}"], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode == 0:
            source = proc.stdout.replace("dbcli.inference.", package + ".").replace("dbcli.engine.", package + ".")
            out = folder / "old_scale_policy.py"
            out.write_text(source)
            return out
    raise SystemExit(f"bench_scale: no scale policy at git ref {ref!r} ({', '.join(POLICY_PATHS)})")


def use_policy(source: Path | None) -> None:
    """Make the pipeline call the ``apply_policy`` of the module file ``source`` (None: the current
    one): patched in every loaded ``dbcli`` module that imported it."""
    import importlib
    import importlib.util

    if source is None:
        name = next(p for p in POLICY_PATHS if (ROOT / p).exists())[:-3].replace("/", ".")
        current = importlib.import_module(name).apply_policy
    else:
        spec = importlib.util.spec_from_file_location("old_scale_policy", source)
        module = importlib.util.module_from_spec(spec)
        sys.modules["old_scale_policy"] = module
        spec.loader.exec_module(module)
        current = module.apply_policy
    for name, module in list(sys.modules.items()):
        if name.startswith("dbcli.") and not name.endswith("scale_policy") and hasattr(module, "apply_policy"):
            module.apply_policy = current


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
method, path, out, threads, old = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, sys.argv[6])
if method == "rapidocr":
    from bench_detect import RapidDet
    det = RapidDet(Path(sys.argv[7]), threads)
    det.run([Path(sys.argv[8])])  # warm-up on a small image
    t = time.perf_counter()
    boxes = det.run([path])[0]
    seconds = time.perf_counter() - t
    polys = [np.asarray(b).tolist() for b in boxes]
    scale = None
else:
    from dbcli import Detector
    import bench_scale
    kw = {"short_side": int(method.split()[-1])} if method.startswith("fixed") else {}
    det = Detector(device="cpu", **kw)
    if method == "old policy":
        bench_scale.use_policy(Path(old))
    det(np.full((720, 1280, 3), 200, np.uint8))  # warm-up
    t = time.perf_counter()
    result = det(str(path))
    seconds = time.perf_counter() - t
    polys = [d.points.tolist() for d in result.detections]
    scale = result.scale
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
Path(out).write_text(json.dumps({"seconds": seconds, "peak": peak, "polys": polys, "scale": scale}))
"""


# --- ordinary images ------------------------------------------------------------------------------
def ordinary_inputs(folder: Path, count: int, icdar: Path | None, icdar_count: int) -> list[Path]:
    """``examples/``'s images, ``count`` synthetic 1280x720 JPEGs (written to ``folder``) and the first
    ``icdar_count`` ICDAR 2015 test images by number (read where they are)."""
    paths = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    rng = np.random.default_rng(2027)
    for k in range(count):
        image, _ = synthetic.photo(rng)
        path = folder / f"photo_{k}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    if icdar is not None and (icdar / "test_images").is_dir():
        found = sorted((icdar / "test_images").glob("img_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
        paths += found[:icdar_count]
    return paths


def same_regions(a, b) -> bool:
    return len(a.detections) == len(b.detections) and all(
        np.allclose(d.points, e.points) for d, e in zip(a.detections, b.detections))


def bench_ordinary(paths: list[Path], repeats: int, old: Path) -> None:
    from dbcli.engine.load import load
    from dbcli.engine.options import InferenceOptions
    from dbcli.engine.pipeline import run_pipeline

    model, auto = load(InferenceOptions(device="cpu"))
    _, fixed = load(InferenceOptions(device="cpu", short_side=736))
    results: dict[str, list] = {}

    def run(name, settings, policy):
        def go():
            use_policy(policy)
            results[name] = list(run_pipeline(paths, model, settings))
            use_policy(None)
        return go

    times = interleaved({"policy (new)": run("new", auto, None), "old policy": run("old", auto, old),
                         "fixed --short-side 736": run("fixed", fixed, None)}, repeats=repeats)
    same = sum(same_regions(a, b) for a, b in zip(results["new"], results["old"]))
    same_fixed = sum(same_regions(a, b) for a, b in zip(results["new"], results["fixed"]))
    reruns = sum(r.scale.get("factor") != f.scale.get("factor") for r, f in zip(results["new"], results["fixed"]))
    base = median(times["old policy"])
    rows = [[name, f"{1000 * median(t) / len(paths):.1f}", spread([1000 * x / len(paths) for x in t]),
             f"{median(t) / base:.3f}"] for name, t in times.items()]
    print_table(f"Ordinary images: {len(paths)} (examples/, 1280x720 synthetic photos, ICDAR 2015 test), general, "
                f"{model.info.get('backend')}", ["contender", "ms/image", "spread", "vs old policy"], rows,
                [f"same regions as the old policy: {same}/{len(paths)} images; as fixed 736: {same_fixed}/{len(paths)};"
                 f" re-run by the new policy: {reruns}"])


def icdar_gt(icdar: Path, stem: str, factor: float) -> tuple[list[np.ndarray], list[bool]]:
    """The ICDAR 2015 ground truth of test image ``stem`` (quads scaled by ``factor``, don't-care flags)."""
    quads, ignore = [], []
    for line in (icdar / "test_gts" / f"gt_{stem}.txt").read_text(encoding="utf-8-sig").splitlines():
        parts = line.strip().split(",")
        if len(parts) >= 9:
            quads.append(np.array(list(map(float, parts[:8]))).reshape(4, 2) * factor)
            ignore.append(",".join(parts[8:]) == "###")
    return quads, ignore


def bench_large_photos(icdar: Path, count: int, factor: float, old: Path) -> None:
    """The first ``count`` ICDAR 2015 test images enlarged ``factor`` x (3: 3840x2160, a phone photo's
    size; the first pass shrinks them): the ICDAR 2015 protocol's scores and s/image of the new and
    the old policy, each image run by both in turn, and how many images differ."""
    from dbcli.engine.load import load
    from dbcli.engine.options import InferenceOptions
    from dbcli.engine.pipeline import run_pipeline
    from dbcli.evaluation.metrics import evaluate

    model, auto = load(InferenceOptions(device="cpu"))
    found = sorted((icdar / "test_images").glob("img_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))[:count]
    samples: dict[str, list] = {"policy (new)": [], "old policy": []}
    seconds = dict.fromkeys(samples, 0.0)
    differ = 0
    for path in found:
        gt, ignore = icdar_gt(icdar, path.stem, factor)
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        seen = []
        for name, policy in (("policy (new)", None), ("old policy", old)):
            use_policy(policy)
            start = time.perf_counter()
            record = next(run_pipeline([image], model, auto))
            seconds[name] += time.perf_counter() - start
            samples[name].append((gt, ignore, [d.points for d in record.detections]))
            seen.append((len(record.detections), record.scale.get("factor")))
        use_policy(None)
        differ += seen[0] != seen[1]
    rows = []
    for name, items in samples.items():
        s = evaluate(items)
        rows.append([name, f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.hmean:.4f}", f"{s.num_matched}",
                     f"{s.num_det}", f"{seconds[name] / len(found):.3f}"])
    print_table(f"ICDAR 2015 test, first {len(found)} images enlarged {factor:g}x (the first pass shrinks them)",
                ["policy", "precision", "recall", "hmean", "matched", "detections", "s/image"], rows,
                [f"images whose regions or scale differ between the policies: {differ}/{len(found)}"])


# --- pages ----------------------------------------------------------------------------------------
def child_run(method: str, page: Path, threads: int, rapid: Path | None, small: Path, old: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    here = str(Path(__file__).parent)
    args = [sys.executable, "-c", CHILD, method, str(page), str(out), str(threads), str(old), here]
    if rapid is not None:
        args += [str(rapid), str(small)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    data = json.loads(out.read_text())
    out.unlink()
    return data


def scale_used(scale: dict | None) -> str:
    if not scale:
        return "native (>= 736 short side)"
    used = f"x{scale['factor']:.3g}, {scale['tiles']} tiles"
    return used + (f": {scale['reason']}" if scale.get("reason") else "")


def page_rows(name: str, spec: dict, folder: Path, methods: list[str], threads: int, old: Path,
              rapid: Path | None, small: Path) -> list[list[str]]:
    image, words = make_page(spec)
    page = folder / "page.png"
    cv2.imwrite(str(page), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    del image
    rows = []
    for method in methods:
        data = child_run(method, page, threads, rapid if method == "rapidocr" else None, small, old)
        if "error" in data:
            rows.append([name, method, "-", "-", "-", "-", "-", data["error"][:80]])
            continue
        polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in data["polys"]]
        rows.append([name if not rows else "", method, f"{100 * coverage(words, polys):.1f}%",
                     f"{100 * precision(words, polys):.1f}%", f"{len(polys)}", f"{data['seconds']:.2f}",
                     f"{data['peak'] / 2 ** 30:.2f}", scale_used(data.get("scale"))])
        print("  ", " | ".join(map(str, [name, *rows[-1][1:]])), flush=True)
    return rows


def bench_pages(folder: Path, pages: dict, old: Path, rapid: Path | None, rapid_big: bool, threads: int,
                only: str | None) -> None:
    small = folder / "small.jpg"
    cv2.imwrite(str(small), np.full((720, 1280, 3), 200, np.uint8))
    rows = []
    for name, spec in pages.items():
        if only and only not in name:
            continue
        w, h = spec.get("canvas", (4000, 2250))
        methods = ["policy (new)", "old policy", "fixed 736"]
        if rapid is not None and (w * h <= 30e6 or rapid_big):
            methods.append("rapidocr")
        rows += page_rows(name, spec, folder, methods, threads, old, rapid, small)
    print_table(f"Pages ({threads} threads; one fresh process per run)",
                ["page", "method", "coverage", "precision", "regions", "s/page", "peak RSS GiB", "scale used"],
                rows, ["coverage: share of the words one detection at most 2.5x their height covers >= 50% of; "
                       "precision: share of the detections holding a word's centre, at most 2.5x its height"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=8, help="1280x720 synthetic photos besides examples/")
    ap.add_argument("--icdar", default=str(ICDAR) if ICDAR.is_dir() else None, help="ICDAR 2015 folder")
    ap.add_argument("--icdar-count", type=int, default=50)
    ap.add_argument("--old-ref", default="main", help="git ref of the old policy")
    ap.add_argument("--large-photos", type=int, default=0, help="ICDAR 2015 test images enlarged 3x, scored")
    ap.add_argument("--full", action="store_true", help="add the 12000x12000 pages")
    ap.add_argument("--skip-ordinary", action="store_true")
    ap.add_argument("--skip-pages", action="store_true")
    ap.add_argument("--only", help="run only the pages whose name contains this")
    ap.add_argument("--rapidocr", help="the unpacked rapidocr_onnxruntime package folder")
    ap.add_argument("--fetch-rapidocr", action="store_true", help="pip-download RapidOCR 1.4.4 first (bench_detect)")
    ap.add_argument("--rapidocr-big", action="store_true", help="RapidOCR on pages over 30 MP too (~10 GB at 8000)")
    args = ap.parse_args(argv)
    import bench_detect

    if args.fetch_rapidocr:
        bench_detect.fetch_rapidocr()
    rapid, why = bench_detect.find_rapidocr(args.rapidocr)
    if rapid is None:
        print(f"# skipping the RapidOCR rows: {why}")
    header("scale policy: ordinary images unchanged; coverage / precision / cost / memory on real-looking pages")
    threads = min(4, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = old_policy_source(args.old_ref, folder)
        if not args.skip_ordinary:
            icdar = Path(args.icdar) if args.icdar else None
            bench_ordinary(ordinary_inputs(folder, args.synthetic, icdar, args.icdar_count), args.repeats, old)
        if args.large_photos and args.icdar:
            bench_large_photos(Path(args.icdar), args.large_photos, 3.0, old)
        if not args.skip_pages:
            pages = {**PAGES, **(FULL_PAGES if args.full else {})}
            bench_pages(folder, pages, old, rapid, args.rapidocr_big, threads, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
