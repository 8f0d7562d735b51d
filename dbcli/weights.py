"""The weights file format shared by train, detect, eval, export and visualize.

A weights file is a plain dict saved with ``torch.save`` and loadable with ``weights_only=True``::

    {"format": "dbnet-weights", "version": 1,
     "model": {"arch": "resnet18", "dcn": False, "k": 50.0},
     "state_dict": {...},              # fp16 or fp32 tensors
     "postprocess": {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5, ...},
     "short_side": 736,
     "train": {...}, "metrics": {...}} # free-form metadata (command line, data, figures)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dbcli.errors import DBNetError
from dbcli.fileio import atomic_torch_save

if TYPE_CHECKING:  # torch is imported lazily: the ONNX detect path uses this module without torch
    import torch

    from dbcli.model import DBNet

FORMAT = "dbnet-weights"
VERSION = 1  # the newest format version this dbnet reads
DEFAULT_WEIGHTS_NAME = "dbnet_resnet18_icdar15.pt"


def default_weights_path() -> Path:
    """``weights/`` beside the package (a source checkout or an editable install); ``$DBNET_WEIGHTS``
    overrides it."""
    import os

    env = os.environ.get("DBNET_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "weights" / DEFAULT_WEIGHTS_NAME


def make_weights(model: DBNet, half: bool = True, **meta) -> dict:
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(), "state_dict": state, **meta}


def save_weights(path: str | Path, model: DBNet, half: bool = True, **meta) -> Path:
    return atomic_torch_save(make_weights(model, half, **meta), path)


def load_weights(path: str | Path | None) -> dict:
    """Read and check a weights file (``None``: the default one). Raises ``DBNetError``."""
    path = Path(path) if path is not None else default_weights_path()
    if not path.exists():
        hint = " (train one with `dbnet train`, or pass --weights)" if path == default_weights_path() else ""
        raise DBNetError(f"{path}: weights file not found{hint}")
    if path.suffix == ".onnx":
        raise DBNetError(f"{path}: an ONNX model; use --backend onnx")
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DBNetError(f"{path}: not a loadable weights file ({exc.__class__.__name__})") from None
    if isinstance(data, dict) and data.get("format") != FORMAT and "model_state" in data:
        data = data["weights"]  # a training checkpoint carries its weights dict
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DBNetError(f"{path}: not a dbnet weights file (no format tag {FORMAT!r})")
    problem = weights_problem(data)
    if problem:
        raise DBNetError(f"{path}: {problem}")
    data["path"] = str(path)
    return data


def _is_number(value) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def weights_problem(data: dict) -> str | None:
    """What makes a loaded weights dict unusable (a file from a newer dbnet, an unknown architecture,
    a non-numeric threshold, ...), or None. The architectures known are ``dbcli.model.ARCHS``."""
    from dataclasses import fields

    from dbcli.model import ARCHS, ModelConfig
    from dbcli.postprocess import post_entries_problem

    version = data.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        return f"bad format version {version!r}"
    if version > VERSION:
        return f"format version {version}, newer than this dbnet reads ({VERSION}); update dbnet"
    model = data.get("model")
    if not isinstance(model, dict):
        return "no \"model\" entry (architecture settings)"
    unknown = sorted(set(model) - {f.name for f in fields(ModelConfig)})
    if unknown:
        return f"unknown model setting(s) {', '.join(map(str, unknown))} (a file from a newer dbnet?)"
    arch = model.get("arch", ModelConfig.arch)
    if arch not in ARCHS:
        return f"unknown architecture {arch!r} (this dbnet knows {', '.join(ARCHS)})"
    if not isinstance(model.get("dcn", False), bool) or not _is_number(model.get("k", 1.0)):
        return "bad model entry (dcn must be true/false, k a number)"
    if not isinstance(data.get("state_dict"), dict):
        return "no \"state_dict\" entry (the weights)"
    post = post_entries_problem(data.get("postprocess"))
    if post:
        return post
    side = data.get("short_side")
    if side is not None and not (isinstance(side, int) and not isinstance(side, bool) and side >= 32):
        return f"short_side must be a whole number of pixels >= 32, got {side!r}"
    return None


def build_model(weights: dict, device: str | torch.device = "cpu") -> DBNet:
    """A DBNet in eval mode with the weights loaded, in float32 on ``device``."""
    from dbcli.model import DBNet, ModelConfig

    model = DBNet(ModelConfig(**weights["model"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DBNetError(f"{weights.get('path', 'weights')}: does not match the model "
                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()
