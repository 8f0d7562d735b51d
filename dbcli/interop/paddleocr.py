"""``dbnet convert``: a PaddleOCR DB detector exported to ONNX -> a dbnet weights file.

Converts the family of PP-OCRv3's detector: MobileNetV3-large backbone (any width, SE on or off),
RSE-FPN neck, DB head, BatchNorm kept as separate layers (``ch_PP-OCRv3_det_infer.onnx``,
``en_PP-OCRv3_det_infer.onnx`` and the like). Paddle names its tensors by creation order
(``conv2d_12.w_0``), which is not the order the network runs them, so layers are matched by
*execution* order instead: the ONNX graph's Conv / ConvTranspose / BatchNormalization nodes in
topological order against the dbnet model's modules in the order its ``forward`` calls them, with
every tensor shape, stride, group and kernel checked. The threshold branch (absent from inference
exports) starts as a copy of the probability branch.

PP-OCR feeds its network BGR pixels normalised with the RGB-order ImageNet statistics; the converted
model records ``input_order="bgr"`` and turns dbnet's RGB input into exactly that in its first layer
(``dbcli.models.dbnet.BgrInput``). Before anything is written the converted model's probability
maps are compared with onnxruntime's on the source model (``TOLERANCE``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dbcli import defaults
from dbcli.errors import DBNetError
from dbcli.files import check_regular_file
from dbcli.interop import check_tolerance

TOLERANCE = 1e-4
# PaddleOCR's DB post-processing defaults (det_db_thresh, det_db_box_thresh, det_db_unclip_ratio).
PADDLE_POSTPROCESS = {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5}
LAYER_OPS = ("Conv", "ConvTranspose", "BatchNormalization")


@dataclass
class OnnxLayer:
    """One Conv / ConvTranspose / BatchNormalization node with its constant tensors."""

    op: str
    name: str  # the node's first constant input (Paddle's parameter name, e.g. conv2d_0.w_0)
    tensors: dict[str, np.ndarray]  # weight, bias | weight, bias, running_mean, running_var
    attrs: dict = field(default_factory=dict)


def check_self_contained(graph, source: str) -> None:
    """``DBNetError`` when a tensor of ``graph`` keeps its data in another file (ONNX external data):
    convert reads the one file it is given, nothing beside it."""
    from onnx import TensorProto

    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            raise DBNetError(f"{source}: tensor {tensor.name!r} keeps its data in another file (ONNX "
                             "external data); convert takes a self-contained .onnx (re-save it with "
                             "onnx.save_model(onnx.load(path), out) to embed the data)")


def _constants(graph) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of ``graph``, by name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Graph:
    """An ONNX graph's constants and the nodes that produce and consume each tensor."""

    def __init__(self, graph) -> None:
        self.consts = _constants(graph)
        self.producers = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def constant_of(self, name: str) -> np.ndarray | None:
        """The constant ``name`` is, directly or through a ``Reshape``, else None."""
        if name in self.consts:
            return self.consts[name]
        node = self.producers.get(name)
        if node is not None and node.op_type == "Reshape" and node.input[0] in self.consts:
            return self.consts[node.input[0]]
        return None

    def added_bias(self, node, channels: int) -> np.ndarray | None:
        """The bias of a conv exported without one: a following ``Add`` of a ``channels``-long constant."""
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            return None
        other = [n for n in users[0].input if n != node.output[0]]
        value = self.constant_of(other[0]) if len(other) == 1 else None
        return value.reshape(-1) if value is not None and value.size == channels else None


def _bn_layer(node, consts: dict) -> OnnxLayer:
    scale, bias, mean, var = (consts[n] for n in node.input[1:5])
    return OnnxLayer("bn", node.input[1], {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var},
                     {"epsilon": _attrs(node).get("epsilon", 1e-5)})


def _conv_layer(node, graph: _Graph) -> OnnxLayer:
    tensors = {"weight": graph.consts[node.input[1]]}
    if len(node.input) > 2 and node.input[2]:
        tensors["bias"] = graph.consts[node.input[2]]
    else:
        bias = graph.added_bias(node, tensors["weight"].shape[0 if node.op_type == "Conv" else 1])
        if bias is not None:
            tensors["bias"] = bias
    kind = "conv" if node.op_type == "Conv" else "conv_transpose"
    return OnnxLayer(kind, node.input[1], tensors, _attrs(node))


def onnx_layers(graph, source: str) -> list[OnnxLayer]:
    """The graph's parameterised layers in execution (topological) order. A conv's bias is either its
    third input or a following ``Add`` of a (reshaped) constant, which Paddle's exporter emits."""
    g = _Graph(graph)
    layers = []
    for node in graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        missing = [n for n in node.input[1:] if n and n not in g.consts]
        if missing:
            raise DBNetError(f"{source}: layer {node.name or node.op_type} takes a non-constant "
                             f"parameter {missing[0]!r}; not a plain inference export")
        layers.append(_bn_layer(node, g.consts) if node.op_type == "BatchNormalization" else _conv_layer(node, g))
    return layers


def check_family(graph, source: str) -> None:
    """``DBNetError`` unless ``graph`` looks like a PP-OCRv3-style DB detector: BatchNorm kept, the
    squeeze-excite pooling of MobileNetV3 / RSE-FPN, the DB head's two transposed convs, a sigmoid,
    and one (N, 3, H, W) input."""
    ops = [node.op_type for node in graph.node]
    if "GlobalAveragePool" not in ops or ops.count("ConvTranspose") != 2 or "Sigmoid" not in ops:
        raise DBNetError(f"{source}: not a PP-OCRv3-style DB detector (MobileNetV3 backbone, RSE-FPN "
                         "neck, DB head); other families do not convert")
    if "BatchNormalization" not in ops:
        raise DBNetError(f"{source}: no BatchNormalization layers (an export with BN folded, e.g. "
                         "PP-OCRv4/v5 or a dbnet export); only the PP-OCRv3-style DB detector "
                         "(MobileNetV3 + RSE-FPN, BN kept) converts")
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(inputs) != 1 or len(dims) != 4 or dims[1] != 3:
        raise DBNetError(f"{source}: not an inference export of an image model (expected one "
                         "(N, 3, H, W) input)")


def torch_layers(model) -> list[tuple[str, object]]:
    """``(name, module)`` of the model's Conv2d / ConvTranspose2d / BatchNorm2d in the order an
    inference forward (probability branch only) calls them."""
    import torch
    from torch import nn

    names = {m: n for n, m in model.named_modules()}
    order: list[tuple[str, object]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append((names[mod], mod)))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 64, 64), with_thresh=False)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _mismatch(onnx_layer: OnnxLayer, name: str, module: Any) -> str | None:
    """Why ``onnx_layer`` cannot load into ``module`` (None when it can)."""
    from torch import nn

    kinds: dict[str, type[nn.Module]] = {"conv": nn.Conv2d, "conv_transpose": nn.ConvTranspose2d,
                                         "bn": nn.BatchNorm2d}
    if type(module) is not kinds[onnx_layer.op]:
        return f"{onnx_layer.name} is a {onnx_layer.op}, {name} a {type(module).__name__}"
    for key, value in onnx_layer.tensors.items():
        target = getattr(module, key, None)
        if target is None:
            return f"{onnx_layer.name} has a {key}, {name} none"
        if tuple(value.shape) != tuple(target.shape):
            return f"{onnx_layer.name} {key} {tuple(value.shape)} vs {name} {tuple(target.shape)}"
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):  # the exact type was checked above
        if (module.bias is not None) != ("bias" in onnx_layer.tensors):
            return f"{onnx_layer.name} and {name} differ in having a bias"
        attrs = onnx_layer.attrs
        if tuple(attrs.get("strides", (1, 1))) != tuple(module.stride) or \
                int(attrs.get("group", 1)) != module.groups:
            return f"{onnx_layer.name} stride/group {attrs.get('strides')}/{attrs.get('group', 1)} vs {name}"
    elif isinstance(module, nn.BatchNorm2d) and abs(float(onnx_layer.attrs["epsilon"]) - module.eps) > 1e-9:
        return f"{onnx_layer.name} epsilon {onnx_layer.attrs['epsilon']:g} vs {module.eps:g}"
    return None


def candidate_configs(layers: list[OnnxLayer]):
    """The MobileNetV3 configurations that could have produced ``layers`` (by the stem's width and
    the head's input width), most likely first."""
    from dbcli.models import ModelConfig
    from dbcli.models.mobilenetv3 import SCALES, STEM_CHANNELS, make_divisible

    first_transpose = next((i for i, layer in enumerate(layers) if layer.op == "conv_transpose"), 0)
    convs = [layer for layer in layers[:first_transpose] if layer.op == "conv"]
    if len(convs) < 2 or layers[0].op != "conv":  # a backbone's stem, ..., the head's first conv
        return
    stem = convs[0].tensors["weight"].shape[0]
    neck = int(convs[-1].tensors["weight"].shape[1])
    if neck < 4 or neck % 4:  # the neck concatenates four branches of neck / 4 channels each
        return
    for se in (False, True):
        for scale in SCALES:
            if make_divisible(STEM_CHANNELS * scale) == stem:
                yield ModelConfig(arch="mobilenet_v3", scale=scale, se=se, neck_channels=neck, input_order="bgr")


def build_converted(layers: list[OnnxLayer], source: str):
    """A dbnet model holding ``layers``'s weights; ``DBNetError`` naming the first layer that does not
    fit when no MobileNetV3 configuration matches."""
    import torch

    from dbcli.models import DBNet

    best: tuple[int, str] = (-1, "no MobileNetV3 configuration matches its stem convolution and its head's input width")
    for config in candidate_configs(layers):
        model = DBNet(config)
        targets = torch_layers(model)
        problem = None if len(targets) == len(layers) else \
            f"{len(layers)} layers in the file, {len(targets)} in a DB-MobileNetV3 x{config.scale}"
        for i, (layer, (name, module)) in enumerate(zip(layers, targets)):
            why = _mismatch(layer, name, module)
            if why:
                if i > best[0]:
                    best = (i, why)
                problem = problem or why
                break
        if problem is None:
            with torch.no_grad():
                for layer, (_, module) in zip(layers, targets):
                    for key, value in layer.tensors.items():
                        getattr(module, key).copy_(torch.from_numpy(np.array(value, np.float32)))
            model.thresh_head.load_state_dict(model.prob_head.state_dict())
            return model.eval()
        if len(targets) != len(layers) and best[0] < 0:
            best = (0, problem)
    raise DBNetError(f"{source}: does not fit a DB-MobileNetV3 ({best[1]})")


def paddle_input(images: list[np.ndarray]) -> np.ndarray:
    """PP-OCR's network input for ``(H, W, 3)`` uint8 RGB images: BGR, /255, RGB-order ImageNet
    mean/std applied to the BGR channels. ``(N, 3, H, W)`` float32."""
    from dbcli.models.dbnet import IMAGENET_MEAN, IMAGENET_STD

    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 1, 3)
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 1, 3)
    return np.stack([((img[:, :, ::-1].astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
                     for img in images]).astype(np.float32)


def verification_images(seed: int = 0) -> list[np.ndarray]:
    """Two deterministic RGB test images with text-like strokes, 160x224 (multiples of 32, as PP-OCR
    resizes its input)."""
    from dbcli.backends.export import verification_images as text_images

    return text_images(2, 160, 224, seed)


def verify(model, source_bytes: bytes) -> float:
    """Max |P_converted - P_source| on ``verification_images()``, the source run by onnxruntime on
    PP-OCR's own input convention."""
    import torch

    from dbcli.backends.onnx_backend import make_session
    from dbcli.imaging import normalize

    images = verification_images()
    session = make_session(source_bytes, device="cpu")
    expected = session.run(None, {session.get_inputs()[0].name: paddle_input(images)})[0]
    with torch.inference_mode():
        got = model(torch.from_numpy(np.stack([normalize(img) for img in images])))["prob"].numpy()
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def check_source(source: Path) -> None:
    """``DBNetError`` naming ``source`` unless it is an existing regular file: a missing file, a folder
    (even one named ``x.onnx``) and a FIFO or device (reading one could block forever) each say so
    (``dbcli.files.check_regular_file``)."""
    check_regular_file(source, "ONNX model file", ": no such file")


@dataclass
class ConvertResult:
    path: Path
    max_diff: float
    parameters: int
    config: dict


def convert(source: str | Path, out: str | Path, *, licence: str = "Apache-2.0",
            origin: str = "", tolerance: float = TOLERANCE, overwrite: bool = False) -> ConvertResult:
    """Convert the ONNX model ``source`` and write the dbnet weights file ``out`` (atomically, fp32).
    ``licence`` and ``origin`` (where the file came from) are recorded with it. Raises ``DBNetError``
    (writing nothing) for another model family or when the maps differ by ``tolerance`` or more, and
    before any work when ``out`` is ``source`` or a shipped weights file, or exists and ``overwrite``
    is off (an existing weights file is earlier work: ``dbcli.outputs.paths``)."""
    from dbcli.models import count_parameters
    from dbcli.outputs.paths import Protected, check_file_output, nothing_ours
    from dbcli.weights import save_weights, shipped_files

    source, out = Path(source), Path(out)
    check_tolerance(tolerance)
    check_source(source)
    protected = Protected().add([source], "the source model").add(shipped_files(), "the shipped weights file")
    check_file_output(out, "--out", protected, nothing_ours, "", overwrite)
    try:
        import onnx
    except ImportError:
        raise DBNetError("dbnet convert needs the onnx package (pip install 'dbnet-cli[train]')") from None
    data = source.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:
        raise DBNetError(f"{source}: not an ONNX model ({exc.__class__.__name__})") from None
    check_self_contained(proto.graph, str(source))
    check_family(proto.graph, str(source))
    layers = onnx_layers(proto.graph, str(source))
    model = build_converted(layers, str(source))
    max_diff = verify(model, data)
    if not np.isfinite(max_diff) or max_diff >= tolerance:
        raise DBNetError(f"{source}: conversion verification FAILED: max |P_dbnet - P_source| = "
                         f"{max_diff:.3g} (must be < {tolerance:g}); nothing written")
    meta = {"file": source.name, "sha256": hashlib.sha256(data).hexdigest(), "licence": licence,
            "origin": origin, "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "converted_by": "dbnet convert", "verified_max_diff": float(f"{max_diff:.3g}")}
    save_weights(out, model, half=False, postprocess=dict(PADDLE_POSTPROCESS), short_side=defaults.SHORT_SIDE,
                 source=meta)
    return ConvertResult(out, max_diff, count_parameters(model), model.config.to_dict())
