"""Test helpers for detect / export / visualize: a DBNet whose weights are set by hand ("planted")
so that its probability map marks the DARK parts of an image, and images with dark rectangles at
known places. With it, the real network code (backbone, neck, head, export, both backends) gives
detections whose right answer is known, without trained weights.

How the planted weights work (every other weight is zero):
- stem conv1 + bn1: channel 0 = relu(1 - gray/255) (darkness) at stride 2; max-pool to stride 4;
- residual branches are off (their last BN has weight 0 and bias 0), downsample 1x1 convs pass
  channel 0 on, so C2..C5 carry the darkness in channel 0;
- FPN: only C2's lateral conv passes channel 0; its 3x3 smooth conv box-filters it into fused
  channel 192 (the concat order is P5, P4, P3, P2);
- prob head: a 3x3 box filter of channel 192, two transposed convs that copy it up 4x, and
  sigmoid(GAIN * (darkness - 0.5)).
The threshold head keeps its random weights (only the maps view uses it).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

GAIN = 12.0
BACKGROUND = 225  # light grey
INK = 20  # near black
_CACHE: dict = {}


def planted_model():
    import torch
    from torch import nn

    from dbcli.imaging import MEAN, STD
    from dbcli.models import DBNet

    torch.manual_seed(0)
    model = DBNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # identity BN: y = x
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
                m.weight.fill_(1.0)
                m.bias.zero_()
        bb = model.backbone
        for m in list(bb.modules()) + list(model.neck.modules()) + list(model.prob_head.modules()):
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
        # stem: darkness = 1 - mean_c(x_c * std_c + mean_c) / 255
        for c in range(3):
            bb.conv1.weight[0, c, 3, 3] = -float(STD[c]) / (3 * 255.0)
        bb.bn1.weight.zero_()
        bb.bn1.weight[0] = 1.0
        bb.bn1.bias[0] = 1.0 - float(MEAN.sum()) / (3 * 255.0)
        for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
            for block in layer:
                last = block.bn3 if hasattr(block, "bn3") else block.bn2
                last.weight.zero_()
                last.bias.zero_()
                if block.downsample is not None:
                    block.downsample[0].weight[0, 0] = 1.0
        model.neck.lateral[0].weight[0, 0] = 1.0
        model.neck.smooth[0].weight[0, 0] = 1.0 / 9.0
        body = model.prob_head.body
        body[0].weight[0, 192] = 1.0 / 9.0
        body[3].weight[0, 0] = 1.0
        body[6].weight[0, 0] = GAIN
        body[6].bias.fill_(-GAIN * 0.5)
    return model


def save_planted(path: Path, **meta) -> Path:
    from dbcli.weights import save_weights

    meta.setdefault("postprocess", {"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.5})
    meta.setdefault("short_side", 256)
    return save_weights(path, planted_model(), half=False, **meta)


def planted_files(root: Path) -> dict:
    """``{"pt": weights, "onnx": export}`` under ``root``, made once per test session."""
    key = str(root)
    if key not in _CACHE:
        from dbcli.interop.export import export

        root.mkdir(parents=True, exist_ok=True)
        pt = save_planted(root / "planted.pt")
        result = export(pt, "onnx", root / "planted.onnx")
        _CACHE[key] = {"pt": pt, "onnx": result.path, "onnx_max_diff": result.max_diff}
    return _CACHE[key]


def rect_image(width: int, height: int, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: light background with a little texture, dark filled rectangles
    ``(x0, y0, x1, y1)``."""
    rng = np.random.default_rng(width * 1000 + height)
    img = np.full((height, width, 3), BACKGROUND, np.int16)
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    img = img.clip(0, 255).astype(np.uint8)
    for x0, y0, x1, y1 in rects:
        img[y0:y1, x0:x1] = INK
    return img


def centre(points) -> np.ndarray:
    return np.asarray(points, np.float64).reshape(-1, 2).mean(axis=0)


def match_rects(detections: list[dict], rects: list[tuple[int, int, int, int]], tol: float = 6.0) -> bool:
    """Each rectangle has exactly one detection whose centre lies within ``tol`` px of its centre
    and whose polygon covers it; no other detections."""
    if len(detections) != len(rects):
        return False
    used = set()
    for x0, y0, x1, y1 in rects:
        c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        hits = [i for i, d in enumerate(detections)
                if i not in used and np.linalg.norm(centre(d["points"]) - c) <= tol]
        if len(hits) != 1:
            return False
        pts = np.asarray(detections[hits[0]]["points"], np.float32).reshape(-1, 1, 2)
        inside = all(cv2.pointPolygonTest(pts, (float(x), float(y)), False) >= 0
                     for x, y in ((x0 + 2, y0 + 2), (x1 - 2, y0 + 2), (x1 - 2, y1 - 2), (x0 + 2, y1 - 2)))
        if not inside:
            return False
        used.add(hits[0])
    return True
