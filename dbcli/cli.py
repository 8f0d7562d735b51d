"""The ``dbnet`` command line: parses options and calls the library. Nothing else lives here."""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from dbcli import __version__
from dbcli.errors import DBNetError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
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


@app.command()
def train(
    dataset: str = typer.Option("icdar15", help="icdar15, td500, totaltext, ctw1500 or custom."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder (default: $DBNET_DATA/<dataset>)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: runs/<dataset>-<arch>-<time>)."),
    arch: str = typer.Option("resnet18", help="resnet18, resnet34 or resnet50."),
    dcn: bool = typer.Option(False, help="Deformable convolution in stages 3-5."),
    epochs: int = typer.Option(1200, help="Passes over the training images (paper: 1200)."),
    batch_size: int = typer.Option(16, help="Images per step per process (paper: 16)."),
    lr: float = typer.Option(0.007, help="Initial learning rate, poly decay with power 0.9."),
    crop_size: int = typer.Option(640, help="Square training crop side in pixels."),
    scale_min: float = typer.Option(0.5, help="Smallest random rescale factor."),
    scale_max: float = typer.Option(3.0, help="Largest random rescale factor."),
    workers: int = typer.Option(4, help="DataLoader worker processes (labels are made there)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    amp: bool = typer.Option(True, help="Mixed precision (fp16 on CUDA, bf16 on CPUs with AVX512-BF16/AMX)."),
    val_fraction: float = typer.Option(0.1, help="Share of training images held out for validation."),
    val_every: int = typer.Option(10, help="Validate every N epochs."),
    val_limit: int = typer.Option(0, help="Validate on at most N held-out images (0: all)."),
    resume: Optional[Path] = typer.Option(None, help="Run folder or checkpoint to continue exactly."),
    pretrained_backbone: Optional[Path] = typer.Option(None, help="torchvision ImageNet ResNet state dict."),
    cache_images: bool = typer.Option(True, help="Decode all images once and keep them in memory."),
    max_steps: int = typer.Option(0, help="Stop after N optimizer steps in this run (0: no limit)."),
    time_limit: float = typer.Option(0.0, help="Stop with a checkpoint after N minutes (0: no limit)."),
    box_thresh: float = typer.Option(0.6, help="Post-processing box threshold used for validation."),
) -> None:
    """Train DBNet with the paper's recipe; writes checkpoints, logs and weights.pt to the run folder."""
    from dbcli.postprocess import PostConfig
    from dbcli.train import TrainConfig, train as run_training

    config = TrainConfig(dataset=dataset, data_root=str(data_root) if data_root else None,
                         out=str(out) if out else None, arch=arch, dcn=dcn, epochs=epochs,
                         batch_size=batch_size, lr=lr, crop_size=crop_size, scale_min=scale_min,
                         scale_max=scale_max, workers=workers, seed=seed, device=device, amp=amp,
                         val_fraction=val_fraction, val_every=val_every, val_limit=val_limit,
                         resume=str(resume) if resume else None,
                         pretrained_backbone=str(pretrained_backbone) if pretrained_backbone else None,
                         cache_images=cache_images, max_steps=max_steps, time_limit=time_limit,
                         post=asdict(PostConfig(box_thresh=box_thresh)))
    try:
        run_training(config, command_line=shlex.join(["dbnet", *sys.argv[1:]]))
    except DBNetError as exc:
        fail(str(exc))


# --- eval: owned by the datasets/eval work -------------------------------------------------------
@app.command("eval")
def eval_command() -> None:
    """Evaluate on a dataset split (ICDAR 2015 IoU protocol)."""
    fail("not implemented yet")


# --- detect / visualize / export: owned by the inference work ------------------------------------
@app.command()
def detect() -> None:
    """Detect text in images and write polygons."""
    fail("not implemented yet")


@app.command()
def visualize() -> None:
    """Draw detections (and optionally the probability/threshold maps) over images."""
    fail("not implemented yet")


@app.command()
def export() -> None:
    """Export weights to ONNX or TorchScript and verify the export."""
    fail("not implemented yet")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
