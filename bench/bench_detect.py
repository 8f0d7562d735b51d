"""End-to-end ``detect`` throughput (decode -> polygons) vs the PP-OCR DB detector of RapidOCR.

    python bench/bench_detect.py [--count 8] [--repeats 3] [--images DIR] [--weights FILE ...]
                                 [--rapidocr DIR] [--fetch-rapidocr] [--busy]

Inputs: ``--count`` synthetic 1280x720 JPEGs (bench/synthetic.py), or the first ``--count`` images
of ``--images DIR``; network input at short side 736 (1280x720 -> 736x1312).

Contenders (interleaved in the same run, median of ``--repeats`` passes over all images):
- dbcli, the default backend (``auto``, what ``dbnet detect`` and ``Detector()`` run without
  ``--backend``: on a CPU onnxruntime, the export cached per weights file, ``dbcli.backends.onnx_cache``).
- dbcli, torch backend (fp32, and bf16 on CPUs with native bfloat16: ``--precision bf16``) and
  onnxruntime backend, batch 1 and 8: ``dbcli.engine.pipeline.run_pipeline`` (what
  ``dbnet detect`` runs: decoding in a thread pool overlapping the network, same-size batches,
  post-processing). The ONNX model is exported from the same weights (``dbcli.interop.export``).
- PP-OCRv4 det (``rapidocr-onnxruntime==1.4.4``): its ``ch_PP-OCRv4_det_infer.onnx`` through
  onnxruntime with RapidOCR's own pre-processing (``DetPreProcess``: short side 736, sides rounded to
  multiples of 32, (x/255 - 0.5)/0.5) and post-processing (``DBPostProcess``: dilation, box score,
  unclip 1.6, plus ``filter_tag_det_res``), imported from the package's own source file; batch 1 as
  RapidOCR runs, and batch 8 with the same code around one batched session call.
  RapidOCR is NOT a dependency of dbnet: the bench looks for an unpacked copy (``--rapidocr DIR``,
  ``$DBNET_BENCH_RAPIDOCR``, an importable ``rapidocr_onnxruntime``, or the cache that
  ``--fetch-rapidocr`` fills with ``pip download`` + unzip, no install) and skips that row otherwise.
Then a per-stage breakdown (decode, resize + normalise, network, post-processing), run sequentially.

``--busy``: the contenders are timed twice in the same run, first as they are, then while one
competing CPU-bound process (a pure-Python loop, started and stopped by the bench) runs beside them,
as on a laptop with a browser busy, a shared CI runner or server; a table each, with the load average.
The bench runs torch as ``dbnet detect`` does: ``dbcli.cpu.tune_malloc()`` and ``quiet_openmp()``.

Weights: ``--weights`` (one or more files or shipped names), else the shipped ``general``
(DB-MobileNetV3) and ``icdar15-r18`` (DB-ResNet-18) files, the last being the baseline of the ratio
column; else a randomly initialised DB-ResNet-18 (said in the output: speed does not depend on the
weights, but with random weights the probability map is empty and post-processing has nothing to do;
the breakdown therefore also times both post-processors on the same ICDAR-like synthetic map).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np
from bench import synthetic
from bench.common import header, interleaved, median, print_table, spread

RAPIDOCR_VERSION = "1.4.4"
RAPIDOCR_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dbnet-bench" / \
    f"rapidocr_onnxruntime-{RAPIDOCR_VERSION}"


# --------------------------------------------------------------------------- inputs and models

def make_images(folder: Path, count: int, seed: int) -> list[Path]:
    paths = []
    for i in range(count):
        rgb, _ = synthetic.photo(np.random.default_rng([seed, i]))
        path = folder / f"synthetic_{i:03d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def list_images(folder: Path, count: int) -> list[Path]:
    from dbcli.imaging import IMAGE_EXTENSIONS

    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not found:
        raise SystemExit(f"{folder}: no images")
    return found[:count]


def resolve_weights(names: list[str] | None, tmp: Path) -> list[tuple[str, Path, str]]:
    """``(label, file, note)`` per weights to time: ``names`` (files or shipped names), else the shipped
    ``general`` (DB-MobileNetV3) and ``icdar15-r18`` (DB-ResNet-18) files, else a random DB-ResNet-18."""
    from dbcli.weights import resolve_weights as resolve

    found = []
    for name in names or ["general", "icdar15-r18"]:
        path = resolve(name)
        if path.exists():
            found.append((Path(name).stem if Path(name).suffix else name, path, f"weights {path}"))
        elif names:
            raise SystemExit(f"{name}: weights file not found")
    if found:
        return found
    import torch

    from dbcli.models import DBNet, ModelConfig
    from dbcli.weights import save_weights

    torch.manual_seed(0)
    out = save_weights(tmp / "random_resnet18.pt", DBNet(ModelConfig("resnet18")).eval())
    return [("random-r18", Path(out), "RANDOM-INIT DB-ResNet-18 (no shipped weights found; speed does not "
                                       "depend on the weights)")]


def export_onnx(weights: Path, out: Path) -> Path:
    from dbcli.interop.export import export

    export(weights, "onnx", out)
    return out


def load_backends(label: str, weights: Path, onnx_path: Path) -> dict:
    """``{"<label> default (auto -> ...)": model, "<label> torch": model, "<label> onnx": model}`` as
    ``dbcli.backends.loading.load_model`` gives them (the default: no backend named, as ``dbnet detect``)."""
    from dbcli.backends.loading import load_model

    default = load_model(weights)
    return {f"{label} default (auto -> {default.info['backend']})": default,
            f"{label} torch": load_model(weights, "torch", device="cpu"),
            f"{label} onnx": load_model(onnx_path, "onnx", device="cpu")}


class Busy:
    """One competing CPU-bound process (a pure-Python loop) while the ``with`` block runs."""

    def __init__(self, on: bool):
        self.on = on
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Busy:
        if self.on:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)  # let it take its core
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def prob_fn_of(model):
    return getattr(model, "prob_fn", model)


def run_dbcli(model, paths: list[Path], short_side: int, batch: int):
    """All images through dbnet detect's pipeline; returns the detections per image."""
    from dbcli.engine.pipeline import run_pipeline
    from dbcli.engine.settings import Settings

    settings = Settings(short_side=short_side, batch_size=batch)
    return [r.detections for r in run_pipeline(paths, model, settings)]


# --------------------------------------------------------------------------- RapidOCR's detector

def fetch_rapidocr() -> Path:
    """``pip download`` the wheel (no dependencies, no install) and unzip it into the cache."""
    RAPIDOCR_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", f"rapidocr-onnxruntime=={RAPIDOCR_VERSION}",
                        "--no-deps", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(RAPIDOCR_CACHE)
    return RAPIDOCR_CACHE / "rapidocr_onnxruntime"


def find_rapidocr(arg: str | None) -> tuple[Path | None, str]:
    """The ``rapidocr_onnxruntime`` package folder, or ``(None, why not)``."""
    candidates = []
    if arg:
        p = Path(arg)
        candidates.append(p.parent.parent if p.suffix == ".onnx" else p)
    if os.environ.get("DBNET_BENCH_RAPIDOCR"):
        candidates.append(Path(os.environ["DBNET_BENCH_RAPIDOCR"]))
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent)
    candidates.append(RAPIDOCR_CACHE / "rapidocr_onnxruntime")
    for c in candidates:
        for pkg in (c, c / "rapidocr_onnxruntime"):
            model = pkg / "models" / "ch_PP-OCRv4_det_infer.onnx"
            if (pkg / "ch_ppocr_det" / "utils.py").exists() and model.exists():
                return pkg, ""
    return None, ("RapidOCR not found (looked in --rapidocr, $DBNET_BENCH_RAPIDOCR, the Python path and "
                  f"{RAPIDOCR_CACHE}); run with --fetch-rapidocr to pip-download rapidocr-onnxruntime=="
                  f"{RAPIDOCR_VERSION} into that cache (not installed, not a dependency of dbnet)")


def rapidocr_version(pkg: Path) -> str:
    for info in pkg.parent.glob("rapidocr_onnxruntime-*.dist-info"):
        return info.name.removesuffix(".dist-info").split("-")[1]
    try:
        from importlib.metadata import version

        return version("rapidocr_onnxruntime")
    except Exception:
        return "unknown"


class RapidDet:
    """RapidOCR 1.4.4's ``TextDetector`` pipeline, with its own ``DetPreProcess``/``DBPostProcess``
    (loaded from the package's file, without importing the package) and its config.yaml values."""

    def __init__(self, pkg: Path, threads: int):
        import onnxruntime as ort

        spec = importlib.util.spec_from_file_location("rapidocr_det_utils", pkg / "ch_ppocr_det" / "utils.py")
        utils = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(utils)
        self.pre = utils.DetPreProcess(736, "min", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        self.post = utils.DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6,
                                        score_mode="fast", use_dilation=True)
        options = ort.SessionOptions()  # RapidOCR's OrtInferSession settings, our thread count
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(pkg / "models" / "ch_PP-OCRv4_det_infer.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @staticmethod
    def decode(path: Path) -> np.ndarray:
        """RapidOCR's LoadImage for a path: PIL, then RGB -> BGR."""
        from PIL import Image

        return cv2.cvtColor(np.array(Image.open(path)), cv2.COLOR_RGB2BGR)

    def network(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def postprocess(self, pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        boxes, _ = self.post(pred, shape)
        return filter_tag_det_res(boxes, shape)

    def run(self, paths: list[Path], batch: int = 1) -> list[np.ndarray]:
        out = []
        for i in range(0, len(paths), batch):
            images = [self.decode(p) for p in paths[i:i + batch]]
            inputs = [self.pre(img) for img in images]
            if len({x.shape for x in inputs}) == 1:
                preds = self.network(np.concatenate(inputs))
                out.extend(self.postprocess(preds[j:j + 1], img.shape[:2]) for j, img in enumerate(images))
            else:
                out.extend(self.postprocess(self.network(x), img.shape[:2]) for x, img in zip(inputs, images))
        return out


def filter_tag_det_res(dt_boxes, image_shape):
    """RapidOCR's ``TextDetector.filter_tag_det_res`` (order clockwise, clip, drop boxes <= 3 px)."""
    img_height, img_width = image_shape
    kept = []
    for box in dt_boxes:
        x_sorted = box[np.argsort(box[:, 0]), :]
        left, right = x_sorted[:2, :], x_sorted[2:, :]
        tl, bl = left[np.argsort(left[:, 1]), :]
        tr, br = right[np.argsort(right[:, 1]), :]
        box = np.array([tl, tr, br, bl], dtype="float32")
        for pno in range(box.shape[0]):
            box[pno, 0] = int(min(max(box[pno, 0], 0), img_width - 1))
            box[pno, 1] = int(min(max(box[pno, 1], 0), img_height - 1))
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        kept.append(box)
    return np.array(kept)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=8, help="images (at least the largest batch)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--short-side", type=int, default=736)
    ap.add_argument("--images", help="a folder of real images instead of synthetic 1280x720 JPEGs")
    ap.add_argument("--weights", nargs="+", help="dbnet .pt files or shipped names (default: general and "
                    "icdar15-r18; the last is the speed-ratio baseline)")
    ap.add_argument("--rapidocr", help="the unpacked rapidocr_onnxruntime package folder (or its det .onnx)")
    ap.add_argument("--fetch-rapidocr", action="store_true",
                    help=f"pip-download rapidocr-onnxruntime=={RAPIDOCR_VERSION} into {RAPIDOCR_CACHE} first")
    ap.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                    help="also time the torch backend at --precision bf16 (auto: when the CPU has native "
                         "bfloat16, AVX512-BF16 or AMX)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-stage table")
    ap.add_argument("--busy", action="store_true",
                    help="time the contenders again while one competing CPU-bound process runs (started "
                         "and stopped here), as on a shared machine")
    args = ap.parse_args(argv)

    from dbcli.cpu import quiet_openmp, tune_malloc

    tune_malloc()  # as `dbnet detect` does (dbcli/cli.py): the whole process, RapidOCR's rows too
    quiet_openmp()  # as `dbnet detect` does, before torch loads

    import torch

    threads = torch.get_num_threads()
    header(f"end-to-end detect, decode -> polygons, short side {args.short_side}")
    if args.fetch_rapidocr:
        fetch_rapidocr()
    with tempfile.TemporaryDirectory(prefix="dbnet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        paths = list_images(Path(args.images), args.count) if args.images else make_images(tmp, args.count, args.seed)
        first = cv2.imread(str(paths[0]))
        from dbcli.backends.loading import load_model
        from dbcli.cpu import cpu_supports_bf16

        print(f"# {len(paths)} images ({'from ' + args.images if args.images else 'synthetic'}, first "
              f"{first.shape[1]}x{first.shape[0]}); {threads} threads for torch and onnxruntime")
        models = {}
        weights_list = resolve_weights(args.weights, tmp)
        for label, weights, weights_note in weights_list:
            t0 = time.perf_counter()
            onnx_path = export_onnx(weights, tmp / f"{label}.onnx")
            print(f"# {label}: {weights_note} ({load_model(weights, 'torch', device='cpu').info['arch']}); "
                  f"ONNX export {time.perf_counter() - t0:.1f} s")
            models.update(load_backends(label, weights, onnx_path))
            if args.bf16 == "yes" or (args.bf16 == "auto" and cpu_supports_bf16()):
                models[f"{label} torch bf16"] = load_model(weights, "torch", device="cpu", precision="bf16")
        baseline = f"{weights_list[-1][0]} torch"  # the ratio column's reference: the last weights, fp32
        rapid_pkg, why = find_rapidocr(args.rapidocr)
        rapid = None
        if rapid_pkg is not None:
            try:
                rapid = RapidDet(rapid_pkg, threads)
                print(f"# PP-OCRv4 det from rapidocr_onnxruntime {rapidocr_version(rapid_pkg)} at {rapid_pkg}")
            except Exception as exc:  # a broken copy must not stop the bench
                why = f"RapidOCR at {rapid_pkg} could not be loaded ({exc.__class__.__name__}: {exc})"
        if rapid is None:
            print(f"# skipping the PP-OCR row: {why}")

        contenders, counts = {}, {}
        for backend in models:
            for b in args.batches:
                name = f"dbcli {backend}, batch {b}"
                contenders[name] = (lambda m=models[backend], b=b: run_dbcli(m, paths, args.short_side, b))
        if rapid is not None:
            for b in args.batches:
                contenders[f"PP-OCRv4 det (RapidOCR), batch {b}"] = (lambda b=b: rapid.run(paths, b))
        for name, fn in contenders.items():
            counts[name] = sum(len(d) for d in fn()) / len(paths)  # (also the warm-up)
        for phase in (["idle", "busy"] if args.busy else ["idle"]):
            with Busy(phase == "busy"):
                load0 = os.getloadavg()[0]
                times = interleaved(contenders, args.repeats, warmup=0)
                load1 = os.getloadavg()[0]
            ips = {name: len(paths) / median(t) for name, t in times.items()}
            rows = []
            for name in contenders:
                b = name.rsplit(" ", 1)[1]
                ref = ips.get(f"PP-OCRv4 det (RapidOCR), batch {b}")
                base = ips.get(f"dbcli {baseline}, batch {b}")
                rows.append([name, f"{ips[name]:.2f}", f"{1e3 / ips[name]:.0f}", spread(times[name]),
                             f"{counts[name]:.1f}", f"{ips[name] / base:.2f}x" if base else "",
                             f"{ips[name] / ref:.2f}x" if ref and not name.startswith("PP-OCR") else ""])
            what = ("with ONE competing CPU-bound process" if phase == "busy" else "nothing of the bench's beside")
            print_table(f"end-to-end images/s, {what} ({len(paths)} images, median of {args.repeats} interleaved "
                        f"passes; load average {load0:.2f} -> {load1:.2f} on {os.cpu_count()} CPUs)",
                        ["pipeline", "images/s", "ms/image", "spread", "dets/image", f"vs {baseline}",
                         "speed vs PP-OCR"], rows)

        if not args.no_breakdown:
            breakdown(paths, models, rapid, args, threads)
    return 0


def breakdown(paths, models, rapid, args, threads) -> None:
    """Per-stage ms per image, each stage run on its own (sequentially, no overlap)."""
    from dbcli.imaging import prepare, read_image
    from dbcli.postprocess.boxes import boxes_from_prob_map

    images = [read_image(p) for p in paths]
    inputs = [prepare(img, args.short_side) for img in images]
    maps = {}
    stages = {
        "decode: dbcli (PIL, EXIF, RGB)": lambda: [read_image(p) for p in paths],
        "resize + normalise: dbcli": lambda: [prepare(img, args.short_side) for img in images],
    }
    for backend in models:
        fn = prob_fn_of(models[backend])
        for b in args.batches:
            batches = [np.stack(inputs[i:i + b]) for i in range(0, len(inputs) - b + 1, b)]
            stages[f"network: dbcli {backend}, batch {b}"] = (
                lambda fn=fn, batches=batches: [fn(x) for x in batches])
        maps[backend] = [fn(x[None])[0] for x in inputs]
    first_onnx = next(name for name in maps if name.endswith("onnx"))  # (not the default's row)
    stages[f"post-processing: dbcli, {first_onnx} maps"] = lambda: [
        boxes_from_prob_map(m, img.shape[1], img.shape[0]) for m, img in zip(maps[first_onnx], images)]
    icdar_like = [synthetic.prob_map(np.random.default_rng([args.seed, 9, i]), 736, 1312)[0] for i in range(len(paths))]
    stages["post-processing: dbcli, ICDAR-like map"] = lambda: [boxes_from_prob_map(m, 1280, 720) for m in icdar_like]
    if rapid is not None:
        bgr = [rapid.decode(p) for p in paths]
        rin = [rapid.pre(img) for img in bgr]
        stages["decode: RapidOCR (PIL, RGB->BGR)"] = lambda: [rapid.decode(p) for p in paths]
        stages["resize + normalise: RapidOCR"] = lambda: [rapid.pre(img) for img in bgr]
        for b in args.batches:
            rb = [np.concatenate(rin[i:i + b]) for i in range(0, len(rin) - b + 1, b)]
            stages[f"network: PP-OCRv4 det, batch {b}"] = lambda rb=rb: [rapid.network(x) for x in rb]
        rmaps = [rapid.network(x) for x in rin]
        stages["post-processing: RapidOCR, its maps"] = lambda: [
            rapid.postprocess(m, img.shape[:2]) for m, img in zip(rmaps, bgr)]
        stages["post-processing: RapidOCR, ICDAR-like map"] = lambda: [
            rapid.postprocess(m[None, None], (720, 1280)) for m in icdar_like]
    times = interleaved(stages, args.repeats)
    rows = []
    for name in stages:
        per = median(times[name]) * 1e3
        n = len(paths)
        if name.startswith("network"):
            b = int(name.rsplit(" ", 1)[1])
            n = (len(paths) // b) * b
        rows.append([name, f"{per / n:.1f}", spread(times[name])])
    print_table(f"where the time goes: ms per image per stage ({inputs[0].shape[2]}x{inputs[0].shape[1]} "
                f"network input, stages run one at a time, {threads} threads)",
                ["stage", "ms/image", "spread"], rows,
                ["dbnet detect overlaps decoding + resizing with the network (thread pool), so its "
                 "end-to-end time per image is below the sum of the stages."])


if __name__ == "__main__":
    raise SystemExit(main())
