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

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbcli.errors import DBNetError
from dbcli.outputs.atomic import atomic_torch_save

if TYPE_CHECKING:  # torch is imported lazily: the ONNX detect path uses this module without torch
    import torch

    from dbcli.models import DBNet

FORMAT = "dbnet-weights"
VERSION = 1  # the newest format version this dbnet reads


@dataclass(frozen=True)
class ShippedWeights:
    """A weights file shipped in ``weights/`` (installed as ``dbcli/shipped_weights/``), selectable by a
    short name (``--weights general``)."""

    name: str
    file: str
    use: str  # what it is for, one line (shown in --help)
    # the SHA-256 of its ONNX export shipped beside it (``onnx``; made by scripts/export_shipped.py), which the
    # onnxruntime path runs (no export at first run); "": none shipped
    onnx_sha256: str = ""
    in_wheel: bool = True  # False: in the repository's weights/ only (the wheel leaves it out: pyproject.toml)

    @property
    def onnx(self) -> str:
        """The file name of its shipped ONNX export (``<file stem>.onnx``)."""
        return Path(self.file).with_suffix(".onnx").name


GENERAL_ONNX_SHA256 = "c5746fb158af79340f531399995fb6d6c9be9411554ab63779bbb6fd5b8a69ce"
ICDAR15_ONNX_SHA256 = "d5d02ab6e17b239a164c81987e25751f4c5eaa79ef98ed788925ad054409743c"
SHIPPED = (
    ShippedWeights("general", "dbnet_mobilenetv3_general.pt",
                   "text lines in documents, receipts, screenshots, signs and photos: PaddleOCR's "
                   "PP-OCRv3 detector, converted (the default)", onnx_sha256=GENERAL_ONNX_SHA256),
    ShippedWeights("icdar15", "dbnet_mobilenetv3_icdar15.pt",
                   "words in street-level photos: the best ICDAR 2015 file shipped (now icdar15-mv3; the "
                   "default of `dbnet eval --dataset icdar15`)", onnx_sha256=ICDAR15_ONNX_SHA256),
    ShippedWeights("icdar15-r18", "dbnet_resnet18_icdar15.pt",
                   "words in street-level photos: DB-ResNet-18 trained here from scratch on ICDAR 2015 "
                   "(slower and less accurate than icdar15-mv3; in the repository, not in the wheel)",
                   in_wheel=False),
    ShippedWeights("icdar15-mv3", "dbnet_mobilenetv3_icdar15.pt",
                   "words in street-level photos: the general model fine-tuned here on ICDAR 2015, "
                   "5x faster than icdar15-r18 and more accurate", onnx_sha256=ICDAR15_ONNX_SHA256),
)
DEFAULT_WEIGHTS = "general"
DEFAULT_ICDAR15_WEIGHTS = "icdar15"
DEFAULT_WEIGHTS_NAME = next(w.file for w in SHIPPED if w.name == DEFAULT_WEIGHTS)


def weights_dir() -> Path:
    """The folder of the shipped weights files and their model card (``README.md``).

    In the repository they are the top-level ``weights/`` folder; a wheel installs that folder as
    package data at ``dbcli/shipped_weights/`` (``setup.py`` maps it). An installed package looks
    there first; a checkout (and an editable install, whose ``dbcli`` is the checkout's) finds
    ``weights/`` beside the package."""
    package = Path(__file__).resolve().parent
    installed = package / "shipped_weights"
    return installed if installed.is_dir() else package.parent / "weights"


def shipped_files() -> list[Path]:
    """The weights files shipped with dbnet (never to be replaced by an output: ``dbcli.outputs.paths``)."""
    return [weights_dir() / w.file for w in SHIPPED] + [weights_dir() / w.onnx for w in SHIPPED if w.onnx_sha256]


def shipped_names() -> str:
    """``general, icdar15, icdar15-r18, icdar15-mv3``: the short names, for messages and --help."""
    return ", ".join(w.name for w in SHIPPED)


def resolve_weights(value: str | Path | None, default: str = DEFAULT_WEIGHTS) -> Path:
    """The weights file meant by ``value``: a short name of ``SHIPPED`` (``general``) is its file in
    ``weights_dir()``, even when a file of that name lies in the working directory (write
    ``./general`` for that one); anything else is a path (which the loader reports when missing).
    ``None``: ``$DBNET_WEIGHTS`` if set, else the shipped file named ``default``."""
    import os

    if value is None:
        env = os.environ.get("DBNET_WEIGHTS")
        value = env if env else default
    text = os.fspath(value)
    names = {shipped.name: shipped.file for shipped in SHIPPED}
    if text in names:
        return weights_dir() / names[text]
    path = Path(text)
    # ``./general`` means the local file: made absolute, so that reading the path again (the loader
    # resolves what it is given) cannot take it for the short name
    return path.absolute() if str(path) in names else path


def shipped_onnx(path: Path) -> Path | None:
    """The shipped ONNX export of ``path`` when ``path`` is a shipped ``.pt`` detector that has one
    (``dbnet_mobilenetv3_general.onnx`` beside ``dbnet_mobilenetv3_general.pt``), else None: the
    onnxruntime path runs it (its SHA-256 checked against ``onnx_sha256``), so a shipped model is never
    exported at run time."""
    folder = weights_dir().resolve()
    for shipped in SHIPPED:
        if shipped.onnx_sha256 and path.name == shipped.file and path.resolve().parent == folder:
            onnx = folder / shipped.onnx
            return onnx if onnx.is_file() else None
    return None


def missing_weights_message(path: Path) -> str:
    """The one line for a weights file that is not there: a shipped file left out of the wheel says
    where to get it; anything else names the shipped short names."""
    for shipped in SHIPPED:
        if not shipped.in_wheel and path.name == shipped.file and path.parent.resolve() == weights_dir().resolve():
            return (f"{shipped.name} ({shipped.file}) is not in the installed package (the wheel leaves it out): "
                    f"take it from the repository's weights/ folder and pass the file with --weights FILE")
    return f"{path}: weights file not found (pass a file or one of the shipped names: {shipped_names()})"


def default_weights_path() -> Path:
    """The file ``dbnet detect`` uses without ``--weights`` (``$DBNET_WEIGHTS`` overrides it)."""
    return resolve_weights(None)


FP16_MAX = 65504.0


def storage_tensor(tensor: torch.Tensor, half: bool = True) -> torch.Tensor:
    """``tensor`` as stored in a weights file: fp16 when ``half`` and its values fit fp16's range,
    else as it is. (A BatchNorm running variance can exceed fp16's 65504: PaddleOCR's DB heads keep
    ~1e8 there, and an fp16 copy would turn it into inf and the model's output into zeros.)"""
    tensor = tensor.detach().cpu()
    if half and tensor.is_floating_point() and bool(tensor.abs().max() < FP16_MAX if tensor.numel() else True):
        return tensor.half()
    return tensor.clone()


def make_weights(model: DBNet, half: bool = True, **meta) -> dict:
    state = {k: storage_tensor(v, half) for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(), "state_dict": state, **meta}


def save_weights(path: str | Path, model: DBNet, half: bool = True, **meta) -> Path:
    return atomic_torch_save(make_weights(model, half, **meta), path)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip with ``code/`` and
    ``constants.pkl`` entries), which ``torch.load`` cannot read as a weights file."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_weights(path: str | Path | None, onnx_hint: str = "") -> dict:
    """Read and check a weights file: a path or a shipped short name (``None``: the default one).
    ``onnx_hint``: what the caller's command offers for an ONNX file (e.g. ``"; use --backend onnx"``;
    only commands that have that option say so). Raises ``DBNetError``."""
    from dbcli.files import check_regular_file

    path = resolve_weights(path)
    if not path.exists():
        raise DBNetError(missing_weights_message(path))
    # (a FIFO would block torch.load forever; a folder, a device or a name too long is one line too)
    check_regular_file(path, "weights file", f" (pass a file or one of the shipped names: {shipped_names()})")
    if path.suffix.lower() == ".onnx":
        raise DBNetError(f"{path}: an ONNX model, not a .pt weights file{onnx_hint}")
    if is_torchscript(path):
        raise DBNetError(f"{path}: a TorchScript file; dbnet loads .pt weights files or .onnx exports "
                         "(--weights takes the .pt file the export was made from)")
    from dbcli.extras import require_torch

    require_torch(f"{path}: reading a .pt weights file")
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc).strip() else ""
        raise DBNetError(f"{path}: not a loadable weights file ({exc.__class__.__name__}"
                         f"{': ' + detail if detail else ''}; dbnet reads the .pt files that dbnet train, "
                         "dbnet convert and the shipped weights are)") from None
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


def _state_dict_problem(state: dict) -> str | None:
    """A ``state_dict`` entry that is not a tensor of numbers (a list, a string, None), or None."""
    import torch

    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            return f"state_dict entry {str(key)[:80]!r} is a {type(value).__name__}, not a tensor (a damaged file?)"
    return None  # (NaN / inf values are not refused here: an unused threshold head may hold inf; the
    # engine makes a non-finite probability map safe and says so, dbcli.engine.pipeline.finite_map)


def weights_problem(data: dict) -> str | None:
    """What makes a loaded weights dict unusable (a file from a newer dbnet, an unknown architecture,
    a non-numeric threshold, ...), or None. The architectures known are ``dbcli.models.ARCHS``."""
    from dbcli.models import ModelConfig
    from dbcli.postprocess.boxes import post_entries_problem

    version = data.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        return f"bad format version {version!r}"
    if version > VERSION:
        return f"format version {version}, newer than this dbnet reads ({VERSION}); update dbnet"
    model = data.get("model")
    if not isinstance(model, dict):
        return "no \"model\" entry (architecture settings)"
    try:
        ModelConfig.from_dict(model)
    except (TypeError, ValueError) as exc:
        return str(exc)
    if not isinstance(model.get("dcn", False), bool) or not _is_number(model.get("k", 1.0)):
        return "bad model entry (dcn must be true/false, k a number)"
    if not isinstance(data.get("state_dict"), dict):
        return "no \"state_dict\" entry (the weights)"
    state_problem = _state_dict_problem(data["state_dict"])
    if state_problem:
        return state_problem
    post = post_entries_problem(data.get("postprocess"))
    if post:
        return post
    side = data.get("short_side")
    if side is not None and not (isinstance(side, int) and not isinstance(side, bool) and side >= 32):
        return f"short_side must be a whole number of pixels >= 32, got {side!r}"
    return None


def build_model(weights: dict, device: str | torch.device = "cpu") -> DBNet:
    """A DBNet in eval mode with the weights loaded, in float32 on ``device``."""
    from dbcli.models import DBNet, ModelConfig

    try:
        config = ModelConfig.from_dict(weights["model"])
    except (TypeError, ValueError) as exc:
        raise DBNetError(f"{weights.get('path', 'weights')}: bad model entry ({exc})") from None
    model = DBNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DBNetError(f"{weights.get('path', 'weights')}: does not match the model "
                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()
