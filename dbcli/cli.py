"""The ``dbnet`` command line: parses options and calls the library. Nothing else lives here."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer

from dbcli import __version__
from dbcli.errors import DBNetError
from dbcli.progress import plural
from dbcli.train_config import TrainConfig
from dbcli.weights import SHIPPED, shipped_names

# Help is click's plain two-column layout (rich_markup_mode=None): every option name stays whole and
# its description wraps beside it on an 80-column terminal (rich's table cut long names to "--no-time-…"
# and squeezed the descriptions into a narrow column); up to 120 columns wide on wider terminals.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
                  help="DBNet scene-text detection: train, evaluate, detect, export, visualize.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dbnet {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """DBNet (Liao et al., AAAI 2020) scene-text detector."""


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(1)


def _max_megapixels_opt():
    return typer.Option(200.0, "--max-megapixels", show_default=True,
                        help="Refuse (warn and skip) images of more million pixels than this before "
                             "decoding them: a small file can hold a huge image (decompression bomb).")


def _max_candidates_opt():
    return typer.Option(None, "--max-candidates", min=1, show_default=False,
                        help="Most candidate regions post-processed per image (default 1000; the rest "
                             "are dropped with a warning).")


@app.command(short_help="Train DBNet (the paper's recipe by default) into a run folder.")
def train(
    dataset: str = typer.Option(TrainConfig.dataset, help="icdar15, td500, totaltext, ctw1500 or custom."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder (default: $DBNET_DATA/<dataset>)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: runs/<dataset>-<arch>-<time>)."),
    arch: Optional[str] = typer.Option(None, show_default=False,
                                       help="resnet18, resnet34, resnet50 or mobilenet_v3 (default: the "
                                            "--init-weights file's, else resnet18)."),
    dcn: Optional[bool] = typer.Option(None, "--dcn/--no-dcn", show_default=False,
                                       help="Deformable convolution in stages 3-5 (ResNets; default: the "
                                            "--init-weights file's, else off)."),
    epochs: int = typer.Option(TrainConfig.epochs, help="Passes over the training images (paper: 1200)."),
    batch_size: int = typer.Option(TrainConfig.batch_size, help="Images per step per process (paper: 16)."),
    lr: float = typer.Option(TrainConfig.lr, help="Initial learning rate, poly decay with power 0.9."),
    warmup_steps: int = typer.Option(TrainConfig.warmup_steps, min=0,
                                     help="Raise the lr linearly from ~0 over the first N steps "
                                          "(fine-tuning with --init-weights: a few hundred; paper: none)."),
    optimizer: str = typer.Option(TrainConfig.optimizer,
                                  help="sgd (paper: momentum 0.9) or adamw (from-scratch runs on a small budget "
                                       "leave the constant-map plateau sooner; use --lr 0.001)."),
    crop_size: int = typer.Option(TrainConfig.crop_size, help="Square training crop side in pixels."),
    scale_min: float = typer.Option(TrainConfig.scale_min, help="Smallest random rescale factor."),
    scale_max: float = typer.Option(TrainConfig.scale_max, help="Largest random rescale factor."),
    workers: Optional[int] = typer.Option(None, min=0, show_default=False,
                                          help="DataLoader worker processes (labels are made there). Default: "
                                               "4, or the CPUs available if fewer; with --resume: the run's."),
    seed: int = typer.Option(TrainConfig.seed),
    device: str = typer.Option(TrainConfig.device, help="auto, cpu, cuda or cuda:N."),
    amp: bool = typer.Option(TrainConfig.amp,
                             help="Mixed precision (fp16 on CUDA, bf16 on CPUs with AVX512-BF16/AMX)."),
    val_fraction: float = typer.Option(TrainConfig.val_fraction,
                                       help="Share of training images held out for validation."),
    val_every: int = typer.Option(TrainConfig.val_every, help="Validate every N epochs."),
    val_limit: Optional[int] = typer.Option(None, show_default=False,
                                            help="Validate on at most N held-out images (default: all; "
                                                 "with --resume: the run's)."),
    val_short_side: int = typer.Option(TrainConfig.val_short_side,
                                       help="Validation test scale: shorter side in pixels."),
    resume: Optional[Path] = typer.Option(None, help="Run folder or checkpoint to continue exactly."),
    pretrained_backbone: Optional[Path] = typer.Option(None, help="torchvision ImageNet ResNet state dict."),
    init_weights: Optional[Path] = typer.Option(None, help="Fine-tune: start from this dbnet weights file "
                                                f"or shipped name ({shipped_names()}) "
                                                "with a new optimizer and schedule; its architecture is used."),
    cache_images: bool = typer.Option(TrainConfig.cache_images, help="Decode all images once and keep them in memory."),
    max_steps: int = typer.Option(TrainConfig.max_steps,
                                  help="Stop after N optimizer steps in this run (0: no limit)."),
    time_limit: Optional[float] = typer.Option(None, show_default=False,
                                               help="Stop with a checkpoint once the run has trained N minutes, "
                                                    "earlier sessions of a resumed run included, with the lr "
                                                    "schedule fitted into them (see --time-schedule). Default: "
                                                    "no limit; with --resume: the run's."),
    time_schedule: Optional[bool] = typer.Option(None, "--time-schedule/--no-time-schedule", show_default=False,
                                                 help="With --time-limit: the poly lr decay ends at the time "
                                                      "limit (or the last epoch, if sooner), so that a run "
                                                      "stopped by it ends at a low lr. Default: on with "
                                                      "--time-limit; with --resume: the run's."),
    thresh: Optional[float] = typer.Option(None, min=0.0, max=1.0, show_default=False,
                                           help="Binarisation threshold for validation (default: the "
                                                "--init-weights file's or a resumed run's, else 0.3)."),
    box_thresh: Optional[float] = typer.Option(None, min=0.0, max=1.0, show_default=False,
                                               help="Box score threshold for validation (default: the "
                                                    "--init-weights file's or a resumed run's, else 0.6)."),
) -> None:
    """Train DBNet with the paper's recipe; writes checkpoints, logs and weights.pt to the run folder."""
    from dbcli.train import train as run_training

    config = TrainConfig(dataset=dataset, data_root=str(data_root) if data_root else None,
                         out=str(out) if out else None, arch=arch, dcn=dcn, epochs=epochs,
                         batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, optimizer=optimizer,
                         crop_size=crop_size, scale_min=scale_min,
                         scale_max=scale_max, workers=workers, seed=seed, device=device, amp=amp,
                         val_fraction=val_fraction, val_every=val_every, val_limit=val_limit,
                         val_short_side=val_short_side,
                         resume=str(resume) if resume else None,
                         pretrained_backbone=str(pretrained_backbone) if pretrained_backbone else None,
                         init_weights=str(init_weights) if init_weights else None,
                         cache_images=cache_images, max_steps=max_steps, time_limit=time_limit,
                         time_schedule=time_schedule,
                         post={k: v for k, v in (("thresh", thresh), ("box_thresh", box_thresh)) if v is not None})
    try:
        run_training(config, command_line=shlex.join(["dbnet", *sys.argv[1:]]))
    except DBNetError as exc:
        fail(str(exc))


# --- eval: owned by the datasets/eval work -------------------------------------------------------
@app.command("eval", short_help="Score weights or a predictions file on a dataset: P, R, hmean.")
def eval_command(
    dataset: str = typer.Option("icdar15", help="icdar15, td500, totaltext, ctw1500 or custom."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder (default: $DBNET_DATA/<dataset>)."),
    split: Optional[str] = typer.Option(None, help="train or test (default: test)."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", show_default=False,
                                           help=f"Weights: a shipped name ({shipped_names()}), a dbnet .pt "
                                                "or an exported .onnx (default: "
                                                "icdar15 for --dataset icdar15, else general)."),
    pred: Optional[Path] = typer.Option(None, help="Score this predictions file (dbnet detect's JSON or JSONL) "
                                                   "instead of running a model."),
    short_side: Optional[int] = typer.Option(None, help="Test scale: shorter side in pixels "
                                                        "(default: the weights file's, else 736)."),
    max_side: Optional[int] = typer.Option(None, show_default=False,
                                           help="Cap on the network input's longer side in pixels (default 4096)."),
    thresh: Optional[float] = typer.Option(None, help="Binarization threshold (default: the weights file's)."),
    box_thresh: Optional[float] = typer.Option(None, help="Minimum region score (default: the weights "
                                                          "file's); with --pred, drops lower-scored predictions."),
    unclip_ratio: Optional[float] = typer.Option(None, help="Region expansion ratio (default: the weights file's)."),
    polygon: Optional[bool] = typer.Option(None, "--polygon/--box", help="Polygons (curved text) or "
                                           "4-point boxes (default: polygons on totaltext and ctw1500)."),
    max_candidates: Optional[int] = _max_candidates_opt(),
    max_megapixels: float = _max_megapixels_opt(),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N (default: auto)."),
    precision: Optional[str] = typer.Option(None, "--dtype", "--precision", show_default=False,
                                            help="fp32 (default), bf16 or fp16 (CUDA): the network's "
                                                 "arithmetic (torch backend), as dbnet detect --precision; "
                                                 "not the precision metric."),
    batch_size: Optional[int] = typer.Option(None, help="Images per forward pass (default: 1)."),
    limit: int = typer.Option(0, help="Score only the first N images (0: all)."),
    holdout_from_train: Optional[float] = typer.Option(
        None, help="Score the images this fraction of the train split held out, exactly as dbnet train "
                   "--val-fraction does (with --seed)."),
    seed: int = typer.Option(0, help="Seed of --holdout-from-train (dbnet train's --seed)."),
    sweep: bool = typer.Option(False, help="Score a grid of thresh x box_thresh (network run once per "
                                           "image) and report the best setting."),
    sweep_thresh: str = typer.Option("0.2,0.25,0.3,0.35", help="thresh grid: list or start:stop:step."),
    sweep_box_thresh: str = typer.Option("0.3:0.8:0.05", help="box_thresh grid: list or start:stop:step."),
    allow_test_sweep: bool = typer.Option(False, help="Allow --sweep on the test split."),
    json_path: Optional[Path] = typer.Option(None, "--json", "--out", "-o",
                                             help="Also write the figures to this JSON file."),
) -> None:
    """Evaluate on a dataset split (ICDAR 2015 IoU protocol): precision, recall, hmean, images/s."""
    from dbcli.cpu import quiet_openmp, tune_malloc
    from dbcli.eval_cli import EvalOptions
    from dbcli.eval_cli import run as run_eval

    tune_malloc()  # this process runs the network over and over: keep its buffers mapped
    quiet_openmp()  # torch's threads sleep when idle: fast on shared cores too
    try:
        run_eval(EvalOptions(
            dataset=dataset, data_root=data_root, split=split, weights=weights, pred=pred, short_side=short_side,
            max_side=max_side, thresh=thresh, box_thresh=box_thresh, unclip_ratio=unclip_ratio, polygon=polygon,
            device=device, precision=precision, batch_size=batch_size, limit=limit,
            holdout_from_train=holdout_from_train, seed=seed, sweep=sweep, sweep_thresh=sweep_thresh,
            sweep_box_thresh=sweep_box_thresh, allow_test_sweep=allow_test_sweep, json_path=json_path,
            max_candidates=max_candidates, max_megapixels=max_megapixels))
    except DBNetError as exc:
        fail(str(exc))


# --- detect / visualize / export: owned by the inference work ------------------------------------
def _inputs_arg():
    return typer.Argument(..., metavar="INPUT", show_default=False,
                          help="Image and PDF files, folders (searched recursively for them) or glob patterns; "
                               "a PDF gives one result per page.")


def _shipped_help() -> str:
    return "; ".join(f"{w.name}: {w.use}" for w in SHIPPED)


def _weights_opt():
    return typer.Option(None, "--weights", "-w", show_default=False,
                        help="Weights: a shipped name, a dbnet .pt file, or a .onnx from `dbnet export` "
                             f"(default: general). Shipped: {_shipped_help()}.")


def _backend_opt():
    return typer.Option("auto", "--backend",
                        help="auto, torch or onnx (onnxruntime; a .pt file is exported once and cached). "
                             "auto: onnx for a .onnx file; torch on CUDA, for --precision bf16/fp16 and "
                             "--maps, or without onnxruntime; else onnx (fastest on a CPU, also when "
                             "other programs share the cores).")


def _device_opt():
    return typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")


def _precision_opt():
    return typer.Option("fp32", "--precision",
                        help="Network arithmetic (torch backend): fp32; bf16, about 2x faster on CPUs with "
                             "AVX512-BF16/AMX and on GPUs; fp16 (CUDA). Probabilities move by ~1e-3, so a "
                             "region right at a threshold may come and go.")


def _short_side_opt():
    return typer.Option(None, "--short-side", show_default=False,
                        help="Test scale: the shorter side is resized to this (rounded to a multiple of 32). "
                             "Default: the weights file's, else 736 (the paper's ICDAR 2015 fast setting).")


def _max_side_opt():
    return typer.Option(None, "--max-side", show_default=False,
                        help="Cap on the network input's longer side in pixels (default 4096, with a note "
                             "when it shrinks an image; at most 16384): bounds the memory of panoramas "
                             "and long receipts.")


def _thresh_opt():
    return typer.Option(None, "--thresh", show_default=False,
                        help="Binarization threshold of the probability map (default: the weights file's, "
                             "else 0.3).")


def _box_thresh_opt():
    return typer.Option(None, "--box-thresh", show_default=False,
                        help="Drop regions whose mean probability is below this (default: the weights "
                             "file's, else 0.6). Lower it to find more text, raise it for fewer false alarms.")


def _unclip_opt():
    return typer.Option(None, "--unclip-ratio", show_default=False,
                        help="How far each region is expanded (D = area x ratio / perimeter; default: the "
                             "weights file's, else 1.5). Raise it if boxes cut letters, lower it if nearby "
                             "lines merge.")


def _polygon_opt():
    return typer.Option(None, "--polygon/--box", show_default=False,
                        help="Polygons for curved text, or 4-point rotated boxes (default: the weights "
                             "file's, else boxes).")


def _batch_opt():
    return typer.Option(None, "--batch-size", "-b", min=1, show_default=False,
                        help="Images per forward pass (images of the same input size are batched). "
                             "Default: 8 on CUDA, 1 on a CPU (larger batches are no faster there and hold "
                             "more memory).")


def _sort_opt():
    return typer.Option("lines", "--sort",
                        help="Order of each image's detections (and crop numbers): lines (text lines top to "
                             "bottom, left to right within a line, tolerant to tilt), columns (multi-column "
                             "documents: each column top to bottom, columns left to right) or none (the "
                             "post-processing's order).")


def _dpi_opt():
    return typer.Option(144.0, "--dpi", min=1.0,
                        help="PDF inputs: render pages at this many pixels per inch (144: 10-12 pt text is "
                             "~20-24 px high); points are in these page pixels (x_pt = x * 72 / dpi). "
                             "Needs pip install 'dbnet[pdf]'.")


def _no_exif_opt():
    return typer.Option(False, "--no-exif",
                        help="Ignore EXIF orientation: work in stored pixels (for datasets such as "
                             "MSRA-TD500 whose boxes are in stored-pixel coordinates).")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler stopping the job) ends the command like Ctrl-C: the work done is kept and
    said, instead of the process vanishing mid-write. Main thread only; restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load(weights, backend, device, precision, short_side, max_side, thresh, box_thresh, unclip_ratio,
          polygon, batch_size, no_exif, max_megapixels, max_candidates, sort, maps=False):
    from dbcli.detect import load_model, resolve_settings

    model = load_model(weights, backend, device, precision, maps=maps)
    settings = resolve_settings(model, short_side, max_side, thresh, box_thresh, unclip_ratio, polygon,
                                batch_size, not no_exif, max_megapixels, max_candidates, sort)
    return model, settings


@app.command(short_help="Find text in images and PDF pages and write its polygons.")
def detect(
    inputs: list[str] = _inputs_arg(),
    out: Optional[str] = typer.Option(None, "--out", "-o", show_default=False, metavar="<path>",
                                      help="Output file (json, jsonl; a folder such as results/ gets "
                                           "polygons.json inside it) or folder (icdar). Without it, a "
                                           "summary table is printed."),
    crops: Optional[Path] = typer.Option(None, "--crops", show_default=False,
                                         help="Also cut every detected region out as an upright PNG into this "
                                              "folder (tilted text straightened, vertical text turned to read "
                                              "left to right): <stem>_001.png, ... in --sort order; each JSON "
                                              "detection names its file in \"crop\"."),
    sort: str = _sort_opt(),
    dpi: float = _dpi_opt(),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", show_default=False,
                                      help="json: one file {model, settings, images}; jsonl: one image per "
                                           "line, streamed (large jobs); icdar: res_<stem>.txt per image in "
                                           "the --out folder (x1,y1,...,xn,yn,score lines). Default: jsonl "
                                           "for an --out ending in .jsonl, else json."),
    weights: Optional[Path] = _weights_opt(),
    backend: Optional[str] = _backend_opt(),
    device: str = _device_opt(),
    precision: str = _precision_opt(),
    short_side: Optional[int] = _short_side_opt(),
    max_side: Optional[int] = _max_side_opt(),
    thresh: Optional[float] = _thresh_opt(),
    box_thresh: Optional[float] = _box_thresh_opt(),
    unclip_ratio: Optional[float] = _unclip_opt(),
    polygon: Optional[bool] = _polygon_opt(),
    batch_size: Optional[int] = _batch_opt(),
    no_exif: bool = _no_exif_opt(),
    max_megapixels: float = _max_megapixels_opt(),
    max_candidates: Optional[int] = _max_candidates_opt(),
    resume: bool = typer.Option(False, "--resume",
                                help="--format jsonl: skip the images already in --out (or in the "
                                     "<out>.partial file an interrupted run left) and append the others."),
) -> None:
    """Detect text in images and PDF pages and write polygons in original-image pixel coordinates.

    Detections are in reading order (--sort). A PDF gives one result per page ("report.pdf#page=3", with
    its page number, size in points and --dpi). Unreadable, truncated and oversized files, and encrypted
    or damaged PDFs, are skipped with a warning; the exit status is non-zero only when no image could be
    processed. With --format jsonl, an interrupted run leaves the images done in
    <out>.partial, and --resume continues it.
    Under torchrun, each process takes its share of the images and rank 0 writes the merged output.
    """
    from dbcli.cpu import quiet_openmp, tune_malloc
    from dbcli.detect import FORMATS, DetectInterrupted
    from dbcli.detect import detect as run_detect

    tune_malloc()  # this process runs the network over and over: keep its buffers mapped
    quiet_openmp()  # torch's threads sleep when idle: fast on shared cores too
    if fmt is None:
        fmt = "jsonl" if out is not None and Path(out).suffix.lower() == ".jsonl" else "json"
    if fmt.lower() not in FORMATS:
        fail(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    try:
        with _status("loading the model ..."):
            model, settings = _load(weights, backend, device, precision, short_side, max_side, thresh,
                                    box_thresh, unclip_ratio, polygon, batch_size, no_exif, max_megapixels,
                                    max_candidates, sort)
        with _sigterm_as_interrupt():
            summary = run_detect(inputs, out, fmt, model, settings, resume=resume, crops=crops, dpi=dpi)
    except DetectInterrupted as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(130) from None
    except DBNetError as exc:
        fail(str(exc))
    if summary.lead:
        where = f"wrote {summary.out}: " if summary.out is not None else ""
        skipped = f", {summary.failed} skipped" if summary.failed else ""
        skipped += f", {summary.resumed} done before" if summary.resumed else ""
        rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
        crop_files = f"; {plural(summary.crops, 'crop')} written to {crops}" if crops is not None else ""
        typer.echo(f"{where}{plural(summary.images, 'image')}, {plural(summary.detections, 'text region')}{skipped} "
                   f"in {summary.seconds:.1f} s ({rate:.1f} images/s){crop_files}", err=True)


@app.command(short_help="Draw the detections over each image or page as PNG files.")
def visualize(
    inputs: list[str] = _inputs_arg(),
    out: Path = typer.Option(..., "--out", "-o", show_default=False,
                             help="Folder for the PNGs: <stem>.png per input (and <stem>_maps.png with --maps)."),
    pred: Optional[Path] = typer.Option(None, "--pred", show_default=False,
                                        help="Draw the detections of this `dbnet detect` JSON/JSONL file "
                                             "instead of running the model."),
    maps: bool = typer.Option(False, "--maps",
                              help="Also save the probability and threshold maps as colour heatmaps side "
                                   "by side with the image (torch backend)."),
    numbers: bool = typer.Option(False, "--numbers",
                                 help="Label each region with its number in reading order (as --crops names "
                                      "its file) instead of its score."),
    sort: str = _sort_opt(),
    dpi: float = _dpi_opt(),
    weights: Optional[Path] = _weights_opt(),
    backend: Optional[str] = _backend_opt(),
    device: str = _device_opt(),
    precision: str = _precision_opt(),
    short_side: Optional[int] = _short_side_opt(),
    max_side: Optional[int] = _max_side_opt(),
    thresh: Optional[float] = _thresh_opt(),
    box_thresh: Optional[float] = _box_thresh_opt(),
    unclip_ratio: Optional[float] = _unclip_opt(),
    polygon: Optional[bool] = _polygon_opt(),
    batch_size: Optional[int] = _batch_opt(),
    no_exif: bool = _no_exif_opt(),
    max_megapixels: float = _max_megapixels_opt(),
    max_candidates: Optional[int] = _max_candidates_opt(),
) -> None:
    """Draw detected polygons with their scores (or numbers) over each image or PDF page and save PNGs.

    With --maps, also what the network sees: its probability and threshold maps. With --pred, the
    regions are numbered in the file's order.
    """
    from dbcli.cpu import quiet_openmp, tune_malloc
    from dbcli.detect import Settings
    from dbcli.visualize import visualize as run_visualize

    tune_malloc()  # this process runs the network over and over: keep its buffers mapped
    quiet_openmp()  # torch's threads sleep when idle: fast on shared cores too
    try:
        if pred is None or maps:
            model, settings = _load(weights, backend, device, precision, short_side, max_side, thresh, box_thresh,
                                    unclip_ratio, polygon, batch_size, no_exif, max_megapixels, max_candidates,
                                    sort, maps=maps)
        else:
            model, settings = None, Settings(batch_size=batch_size or 1, exif=not no_exif,
                                             max_megapixels=max_megapixels)
        summary = run_visualize(inputs, out, pred, maps, model, settings, numbers=numbers, dpi=dpi)
    except DBNetError as exc:
        fail(str(exc))
    skipped = f", {summary.failed} skipped" if summary.failed else ""
    typer.echo(f"wrote {plural(len(summary.written), 'PNG file')} to {out}{skipped}", err=True)


@app.command(short_help="Export weights to ONNX or TorchScript, checked against PyTorch.")
def export(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", show_default=False,
                                           help="dbnet weights file or shipped name (default: general)."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default=False,
                                       help="Output file (default: the weights file's name with .onnx or .ts)."),
    opset: int = typer.Option(17, help="ONNX opset."),
    tolerance: float = typer.Option(1e-4, help="Largest allowed max |P_export - P_torch| in the check."),
) -> None:
    """Export weights to ONNX (dynamic batch, height and width) or TorchScript.

    BatchNorm is folded into the convolutions and the graph outputs the probability map only.
    The export is then checked against PyTorch: it fails if the probability maps differ by 1e-4 or more.
    """
    from dbcli.export import export as run_export

    try:
        from dbcli.weights import resolve_weights

        if out is None:
            source = resolve_weights(weights)
            out = source.with_suffix(".onnx" if fmt.lower() == "onnx" else ".ts")
        with _status(f"exporting to {out} and checking it against PyTorch ..."):
            result = run_export(weights, fmt, out, opset=opset, tolerance=tolerance)
    except DBNetError as exc:
        fail(str(exc))
    label = "ONNX" if result.format == "onnx" else "TorchScript"
    opset_note = f", opset {opset}" if result.format == "onnx" else ""
    typer.echo(f"wrote {result.path} ({label}{opset_note}, {result.size_bytes / 1e6:.1f} MB)")
    typer.echo(f"verified: max |P_{result.format} - P_torch| = {result.max_diff:.3g} on a "
               f"{'x'.join(map(str, result.input_shape))} input (limit {tolerance:g})")


@app.command(short_help="Convert a PaddleOCR DB detector (ONNX) into a dbnet weights file.")
def convert(
    source: Path = typer.Argument(..., metavar="MODEL.onnx", show_default=False,
                                  help="A PaddleOCR DB detector exported to ONNX with its BatchNorm layers "
                                       "(PP-OCRv3 det: MobileNetV3 + RSE-FPN), e.g. ch_PP-OCRv3_det_infer.onnx."),
    out: Path = typer.Option(..., "--out", "-o", show_default=False, help="The dbnet weights file to write."),
    licence: str = typer.Option("Apache-2.0", help="The source model's licence, recorded in the file."),
    origin: str = typer.Option("", help="Where the source came from (URL, package), recorded in the file."),
    tolerance: float = typer.Option(1e-4, help="Largest allowed max |P_dbnet - P_source| in the check."),
) -> None:
    """Convert a PaddleOCR DB text detector (ONNX) into a dbnet weights file.

    Layers are matched by execution order with every shape checked; the converted model is then
    compared with onnxruntime on the source (PP-OCR's own BGR input convention) and nothing is written
    unless the probability maps agree within --tolerance. Other model families get an error.
    """
    from dbcli.convert import convert as run_convert

    try:
        with _status(f"converting {source} ..."):
            result = run_convert(source, out, licence=licence, origin=origin, tolerance=tolerance)
    except DBNetError as exc:
        fail(str(exc))
    typer.echo(f"wrote {result.path} (DB-MobileNetV3 x{result.config['scale']}, "
               f"{result.parameters / 1e6:.2f}M parameters, licence {licence})")
    typer.echo(f"verified: max |P_dbnet - P_source| = {result.max_diff:.3g} (limit {tolerance:g})")


def _status(message: str):
    """A spinner on stderr while a silent step runs (on a terminal, or with DBNET_PROGRESS=1)."""
    from rich.console import Console

    from dbcli.progress import status

    return status(Console(stderr=True), message)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
