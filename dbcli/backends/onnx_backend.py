"""onnxruntime backend: a ``prob_fn`` for ``dbcli.backends.torch_backend`` that never imports torch.

Reads a file written by ``dbnet export --format onnx``; the model's ``metadata_props`` (see
``dbcli.backends.export``) give the architecture, the test scale and the post-processing defaults, so the
``.pt`` weights file is not needed.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dbcli.errors import DBNetError

FORMAT_PREFIX = "dbnet-onnx/"
FORMATS_READ = ("dbnet-onnx/1",)  # the export format versions this dbnet understands


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use, shared among the local processes when
    launched by torchrun (one session per rank)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return max(1, cpus // local)


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise DBNetError("the onnx backend needs onnxruntime (a dependency of dbnet-cli: "
                         "pip install onnxruntime)") from None
    ort.set_default_logger_severity(3)  # errors only: no per-node placement notices
    return ort


def make_session(model: str | Path | bytes, device: str = "auto", threads: int | None = None):
    """An ``InferenceSession`` with all graph optimisations, sequential execution and
    ``threads`` intra-op threads (default: ``default_threads()``) that do not spin; CUDA when asked for or, with
    ``auto``, when onnxruntime has the CUDA provider."""
    ort = _import_ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    # Idle worker threads sleep instead of spinning: with every core busy elsewhere (a browser, a CI
    # neighbour, another job) a spinning thread takes the core the working one needs; as fast when idle
    # (bench/README.md, "Shared CPUs").
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise DBNetError("--device cuda asked for, but onnxruntime has no CUDA provider "
                             "(install onnxruntime-gpu)")
        index = int(device.split(":")[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", 0))
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    elif device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise DBNetError(f"unknown device {device!r} (auto, cpu, cuda or cuda:N)")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:
        name = "ONNX model" if isinstance(model, bytes) else str(model)
        raise DBNetError(f"{name}: not a loadable ONNX model ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:200]})") from None


def run_interruptibly(session: Any, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run(outputs, feeds)``; in the main thread, run in a worker thread while the main thread
    waits, so that a signal (SIGTERM, Ctrl-C) is handled at once: its exception (``KeyboardInterrupt``)
    sets the run's ``terminate`` flag, which stops onnxruntime within a node (a looping model
    included), and is raised. A plain ``session.run`` blocks every Python signal handler until it
    returns (forever, for a looping model)."""
    ort = _import_ort()
    options = ort.RunOptions()
    options.log_severity_level = 4  # (a failure, a terminated run included, is raised, not logged)
    if threading.current_thread() is not threading.main_thread():
        return session.run(outputs, feeds, options)
    result: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            result["out"] = session.run(outputs, feeds, options)
        except BaseException as exc:  # handed to the caller
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="dbnet-onnx-run", daemon=True).start()
    try:
        while not done.wait(0.5):  # (a signal's handler runs between these waits)
            pass
    except BaseException:
        options.terminate = True
        done.wait(10.0)  # (an interrupted Thread.join may return early: an event is waited for afresh)
        raise
    if "error" in result:
        raise result["error"]
    return result["out"]


class OnnxBackend:
    """An exported DBNet as a ``prob_fn``: ``(N, 3, H, W)`` float32 -> ``(N, H, W)`` float32."""

    def __init__(self, path: str | Path | bytes, device: str = "auto", threads: int | None = None,
                 name: str | None = None):
        """``path``: an ONNX file, or its bytes (an export made in memory); ``name`` names it in
        messages (default: the path)."""
        if not isinstance(path, bytes):
            from dbcli.files import check_regular_file

            path = Path(path)  # (a FIFO would block onnxruntime forever, a folder gets a misleading error)
            check_regular_file(path, "ONNX model", " (make one with `dbnet export --format onnx`)")
        self.path = path
        self.note: str | None = None  # said once before the work (e.g. why an export is kept in memory)
        label = name or ("ONNX model" if isinstance(path, bytes) else str(path))
        self.session = make_session(path, device, threads)
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.model_config, self.postprocess, self.short_side, self.train = read_metadata(meta, label)
        from dbcli.postprocess.boxes import post_entries_problem

        problem = post_entries_problem(self.postprocess)
        if problem:
            raise DBNetError(f"{label}: bad dbnet metadata ({problem})")
        self.metadata = dict(meta)
        self.label = label
        self.input_name, self.input_type = _image_input(self.session, label)
        self.output_name = _prob_output(self.session, label)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, H, W)`` float32 -> ``(N, H, W)`` float32 probability maps. Raises ``DBNetError``
        naming the model when onnxruntime cannot run it."""
        batch = np.ascontiguousarray(batch, dtype=np.float16 if self.input_type == "tensor(float16)" else np.float32)
        try:
            prob = run_interruptibly(self.session, [self.output_name], {self.input_name: batch})[0]
        except Exception as exc:
            raise DBNetError(f"{self.label}: onnxruntime cannot run it on a {tuple(batch.shape)} input "
                             f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from None
        prob = prob[:, 0] if prob.ndim == 4 else prob
        if prob.shape != (batch.shape[0], batch.shape[2], batch.shape[3]):
            raise DBNetError(f"{self.label}: output {self.output_name!r} has shape {tuple(prob.shape)} for an "
                             f"input of {tuple(batch.shape)}; a dbnet export gives (N, 1, H, W)")
        return prob.astype(np.float32, copy=False)  # scores outside [0, 1]: engine.pipeline.finite_map


def _json_object(meta: dict, key: str, label: str) -> dict | None:
    """The JSON object stored under ``key`` (None when absent); ``DBNetError`` when it is not one."""
    if key not in meta:
        return None
    try:
        value = json.loads(meta[key])
    except ValueError as exc:
        raise DBNetError(f"{label}: bad dbnet metadata ({key}: {exc})") from None
    if not isinstance(value, dict):
        raise DBNetError(f"{label}: bad dbnet metadata ({key} is a JSON {type(value).__name__}, "
                         "not an object)")
    return value


def read_metadata(meta: dict, label: str) -> tuple[dict, dict, int | None, dict | None]:
    """``(model config, post-processing, short side or None, training record or None)`` from a dbnet
    export's ``metadata_props``. ``DBNetError`` naming ``label`` for a file that is no dbnet export,
    one of a format version this dbnet does not read, or bad values."""
    tag = meta.get("dbnet.format", "")
    if not tag.startswith(FORMAT_PREFIX):
        raise DBNetError(f"{label}: not a dbnet ONNX export (no dbnet metadata); "
                         "make one with `dbnet export --format onnx`")
    if tag not in FORMATS_READ:
        raise DBNetError(f"{label}: export format {tag!r}, which this dbnet does not read (it reads "
                         f"{', '.join(FORMATS_READ)}); re-export it with this version's `dbnet export` "
                         "or upgrade dbnet")
    model = _json_object(meta, "dbnet.model", label) or {}
    post = _json_object(meta, "dbnet.postprocess", label) or {}
    train = _json_object(meta, "dbnet.train", label)
    short_side = None
    if "dbnet.short_side" in meta:
        try:
            short_side = int(meta["dbnet.short_side"])
        except ValueError:
            short_side = 0
        if short_side <= 0:
            raise DBNetError(f"{label}: bad dbnet metadata (dbnet.short_side "
                             f"{meta['dbnet.short_side']!r} is not a positive whole number)")
    return model, post, short_side, train


_FLOAT_TYPES = ("tensor(float)", "tensor(float16)")


def _is_static(dim) -> bool:
    return isinstance(dim, int) and dim > 0


def _map_shaped(shape: list) -> bool:
    """Whether an output of this shape can be a probability map: ``(N, H, W)`` or ``(N, 1, H, W)``."""
    return len(shape) == 3 or (len(shape) == 4 and not (_is_static(shape[1]) and shape[1] != 1))


def _image_input(session, label: str) -> tuple[str, str]:
    """The name and element type of the model's one image input ``(N, 3, H, W)``, float32 or float16
    (cast to), with a free height and width (dbnet feeds every image at its own size). Raises
    ``DBNetError`` for anything else."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise DBNetError(f"{label}: {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a dbnet export "
                         "has one, the (N, 3, H, W) images")
    first = inputs[0]
    shape = list(first.shape or [])
    if len(shape) != 4 or (_is_static(shape[1]) and shape[1] != 3):
        raise DBNetError(f"{label}: input {first.name!r} has shape {shape}; dbnet feeds (N, 3, H, W) images")
    if _is_static(shape[2]) or _is_static(shape[3]):
        raise DBNetError(f"{label}: input {first.name!r} has a fixed size {shape[3]}x{shape[2]}; dbnet feeds "
                         "each image at its own size (export with `dbnet export --format onnx`: dynamic "
                         "height and width)")
    if first.type not in _FLOAT_TYPES:
        raise DBNetError(f"{label}: input {first.name!r} is {first.type}; dbnet feeds float32 (or float16) images")
    return first.name, first.type


def _prob_output(session, label: str) -> str:
    """The probability map among the outputs: the one named ``prob`` (what ``dbnet export`` writes),
    else the only float output of shape ``(N, 1, H, W)`` or ``(N, H, W)``. Raises ``DBNetError`` when
    there is none or the choice is ambiguous."""
    outputs = session.get_outputs()
    named = [o for o in outputs if o.name == "prob"]
    candidates = named or [o for o in outputs if o.type in _FLOAT_TYPES and _map_shaped(list(o.shape or []))]
    listed = ", ".join(f"{o.name} {list(o.shape or [])}" for o in outputs)
    if len(candidates) != 1:
        raise DBNetError(f"{label}: cannot tell which output is the probability map ({listed}); a dbnet "
                         "export has one output, prob (N, 1, H, W)")
    chosen = candidates[0]
    if chosen.type not in _FLOAT_TYPES:
        raise DBNetError(f"{label}: output {chosen.name!r} is {chosen.type}; the probability map of a dbnet "
                         "export is float32 (or float16) scores in [0, 1]")
    shape = list(chosen.shape or [])
    if not _map_shaped(shape):
        raise DBNetError(f"{label}: output {chosen.name!r} has shape {shape}; the probability map of a dbnet "
                         "export is (N, 1, H, W)")
    return chosen.name
