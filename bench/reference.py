"""Reference implementations in the style of the DBNet authors' code (MhLiao/DB), for the benchmarks
and the parity tests.

``ref_boxes_from_prob_map`` follows ``SegDetectorRepresenter.boxes_from_bitmap`` /
``polygons_from_bitmap`` and ``ref_make_targets`` follows ``MakeSegDetectionData`` +
``MakeBorderMap`` (per polygon, per edge, the law-of-cosines ``_distance`` over the dilated
polygon's bounding-box grid), written from the algorithm's description: straightforward per-contour
and per-polygon Python with shapely and pyclipper, as those files do it.

Where dbcli deliberately differs from the authors, a keyword switches the reference to dbcli's
convention so that the parity tests compare like with like; the defaults are the authors':

- post-processing ``score_on``: ``"box"`` (authors: mean of P inside the minimum-area quad) or
  ``"contour"`` (dbcli: mean inside the contour polygon, SPEC's "exact polygon mean").
- ``round_coords``: pyclipper truncates float coordinates toward zero (authors pass floats);
  dbcli rounds them to the nearest integer first.
- ``float_out``: the authors round output coordinates to integers; dbcli keeps them float.
- ``polygon_epsilon`` / polygon ``unclip_ratio``: authors 0.01 and 2.0; dbcli 0.002 and the
  configured ratio, with the min-size check before unclipping.
- ``largest_piece``: when unclipping splits a region, the authors drop it (polygons) or take the
  first piece (boxes); dbcli keeps the largest piece.
- labels ``size_on``: ``"bbox"`` (authors: shorter side of the axis-aligned box) or ``"rect"``
  (dbcli: of the minimum-area rectangle); ``round_coords`` as above for the polygons given to
  pyclipper and ``cv2.fillPoly``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

# --------------------------------------------------------------------------- post-processing

def get_mini_boxes(contour):
    bounding_box = cv2.minAreaRect(contour)
    points = sorted(list(cv2.boxPoints(bounding_box)), key=lambda x: x[0])
    if points[1][1] > points[0][1]:
        index_1, index_4 = 0, 1
    else:
        index_1, index_4 = 1, 0
    if points[3][1] > points[2][1]:
        index_2, index_3 = 2, 3
    else:
        index_2, index_3 = 3, 2
    box = [points[index_1], points[index_2], points[index_3], points[index_4]]
    return box, min(bounding_box[1])


def box_score_fast(bitmap, _box):
    h, w = bitmap.shape[:2]
    box = _box.copy()
    xmin = np.clip(np.floor(box[:, 0].min()).astype(int), 0, w - 1)
    xmax = np.clip(np.ceil(box[:, 0].max()).astype(int), 0, w - 1)
    ymin = np.clip(np.floor(box[:, 1].min()).astype(int), 0, h - 1)
    ymax = np.clip(np.ceil(box[:, 1].max()).astype(int), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] = box[:, 0] - xmin
    box[:, 1] = box[:, 1] - ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(bitmap[ymin:ymax + 1, xmin:xmax + 1], mask)[0]


def unclip(box, unclip_ratio=1.5, round_coords=False):
    poly = Polygon(box)
    distance = poly.area * unclip_ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    path = np.round(box).astype(np.int64).tolist() if round_coords else box
    offset.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    # (the authors wrap the pieces in one np.array; a list of arrays also survives several pieces)
    return [np.array(piece) for piece in offset.Execute(distance)]


def ref_boxes_from_prob_map(pred: np.ndarray, dest_width: int, dest_height: int, thresh: float = 0.3,
                            box_thresh: float = 0.6, unclip_ratio: float = 1.5, max_candidates: int = 1000,
                            min_size: float = 3, polygon: bool = False, score_on: str = "box",
                            round_coords: bool = False, float_out: bool = False,
                            polygon_epsilon: float = 0.01, polygon_unclip_ratio: float = 2.0,
                            polygon_min_size_first: bool = False, largest_piece: bool = False
                            ) -> list[tuple[np.ndarray, float]]:
    """``[(points (K, 2) in dest pixels, score)]`` as the authors' representer computes them."""
    bitmap = pred > thresh
    height, width = bitmap.shape
    contours, _ = cv2.findContours((bitmap * 255).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours[:max_candidates]:
        if polygon:
            epsilon = polygon_epsilon * cv2.arcLength(contour, True)
            points = cv2.approxPolyDP(contour, epsilon, True).reshape((-1, 2))
            if points.shape[0] < 4:
                continue
            if polygon_min_size_first:
                _, sside = get_mini_boxes(points.reshape((-1, 1, 2)))
                if sside < min_size:
                    continue
            score = box_score_fast(pred, points.reshape(-1, 2))
            if box_thresh > score:
                continue
            pieces = unclip(points, polygon_unclip_ratio, round_coords)
            if not pieces or (len(pieces) > 1 and not largest_piece):  # authors: skip split regions
                continue
            box = max(pieces, key=lambda p: abs(pyclipper.Area(p.tolist()))).reshape(-1, 2)
            if len(box) < 3:
                continue
            _, sside = get_mini_boxes(box.reshape((-1, 1, 2)))
            if sside < min_size + 2:
                continue
        else:
            if len(contour) < 3:  # (dbcli skips these; with min_size >= 1 the size check drops them anyway)
                continue
            points, sside = get_mini_boxes(contour)
            if sside < min_size:
                continue
            points = np.array(points)
            scored = points if score_on == "box" else contour.reshape(-1, 2).astype(np.float64)
            score = box_score_fast(pred, scored.reshape(-1, 2))
            if box_thresh > score:
                continue
            pieces = unclip(points, unclip_ratio, round_coords)
            if not pieces:
                continue
            expanded = max(pieces, key=lambda p: abs(pyclipper.Area(p.tolist()))) if largest_piece else pieces[0]
            box, sside = get_mini_boxes(expanded.reshape(-1, 1, 2).astype(np.float32))
            if sside < min_size + 2:
                continue
            box = np.array(box)
        box = np.asarray(box, np.float64)
        if float_out:
            box[:, 0] = np.clip(box[:, 0] / width * dest_width, 0, dest_width)
            box[:, 1] = np.clip(box[:, 1] / height * dest_height, 0, dest_height)
        else:
            box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_width), 0, dest_width)
            box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_height), 0, dest_height)
        out.append((box, float(score)))
    return out


# --------------------------------------------------------------------------- labels

def _coords(polygon: np.ndarray, round_coords: bool):
    return np.round(polygon) if round_coords else polygon


def polygon_area(polygon):
    edge = 0
    for i in range(polygon.shape[0]):
        next_index = (i + 1) % polygon.shape[0]
        edge += (polygon[next_index, 0] - polygon[i, 0]) * (polygon[next_index, 1] + polygon[i, 1])
    return edge / 2.


def validate_polygons(polygons, ignore_tags, h, w):
    """MakeSegDetectionData.validate_polygons: clip to the image, flag |area| < 1, orient."""
    for polygon in polygons:
        polygon[:, 0] = np.clip(polygon[:, 0], 0, w - 1)
        polygon[:, 1] = np.clip(polygon[:, 1], 0, h - 1)
    for i in range(len(polygons)):
        area = polygon_area(polygons[i])
        if abs(area) < 1:
            ignore_tags[i] = True
        if area > 0:
            polygons[i] = polygons[i][::-1, :]
    return polygons, ignore_tags


def ref_shrink(polygons, ignore_tags, h, w, min_text_size=8, shrink_ratio=0.4, size_on="bbox",
               round_coords=False, validate=True):
    """MakeSegDetectionData (after its ``validate_polygons``): ``(gt, mask, ignore_tags)``."""
    ignore_tags = list(ignore_tags)
    if validate:
        polygons, ignore_tags = validate_polygons([np.array(p, np.float64) for p in polygons], ignore_tags, h, w)
    gt = np.zeros((h, w), dtype=np.float32)
    mask = np.ones((h, w), dtype=np.float32)
    for i, polygon in enumerate(polygons):
        fill = (np.round(polygon) if round_coords else polygon).astype(np.int32)[np.newaxis, :, :]
        if size_on == "bbox":
            size = min(max(polygon[:, 1]) - min(polygon[:, 1]), max(polygon[:, 0]) - min(polygon[:, 0]))
        else:
            size = min(cv2.minAreaRect(polygon.astype(np.float32))[1])
        if ignore_tags[i] or size < min_text_size:
            cv2.fillPoly(mask, fill, 0)
            ignore_tags[i] = True
            continue
        polygon_shape = Polygon(polygon)
        distance = polygon_shape.area * (1 - np.power(shrink_ratio, 2)) / polygon_shape.length
        subject = [tuple(p) for p in _coords(polygon, round_coords)]
        padding = pyclipper.PyclipperOffset()
        padding.AddPath(subject, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        shrinked = padding.Execute(-distance)
        if shrinked == []:
            cv2.fillPoly(mask, fill, 0)
            ignore_tags[i] = True
            continue
        # (the authors fill the first piece; dbcli fills every piece of a shrunk polygon that splits)
        for piece in shrinked if round_coords else shrinked[:1]:
            cv2.fillPoly(gt, [np.array(piece).reshape(-1, 2).astype(np.int32)], 1)
    return gt, mask, ignore_tags


def law_of_cosines_distance(xs, ys, point_1, point_2):
    """The authors' point-to-edge distance (MakeBorderMap.distance)."""
    square_distance_1 = np.square(xs - point_1[0]) + np.square(ys - point_1[1])
    square_distance_2 = np.square(xs - point_2[0]) + np.square(ys - point_2[1])
    square_distance = np.square(point_1[0] - point_2[0]) + np.square(point_1[1] - point_2[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        cosin = (square_distance - square_distance_1 - square_distance_2) / \
            (2 * np.sqrt(square_distance_1 * square_distance_2))
        square_sin = 1 - np.square(cosin)
        square_sin = np.nan_to_num(square_sin)
        result = np.sqrt(square_distance_1 * square_distance_2 * square_sin / square_distance)
    result[cosin < 0] = np.sqrt(np.fmin(square_distance_1, square_distance_2))[cosin < 0]
    return result


def draw_border_map(polygon, canvas, mask, shrink_ratio=0.4, round_coords=False):
    polygon = np.array(polygon, np.float64)
    polygon_shape = Polygon(polygon)
    distance = polygon_shape.area * (1 - np.power(shrink_ratio, 2)) / polygon_shape.length
    subject = [tuple(p) for p in _coords(polygon, round_coords)]
    padding = pyclipper.PyclipperOffset()
    padding.AddPath(subject, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    pieces = padding.Execute(distance)
    padded_polygon = np.array(max(pieces, key=lambda p: abs(pyclipper.Area(p))) if round_coords else pieces[0])
    cv2.fillPoly(mask, [padded_polygon.astype(np.int32)], 1.0)

    xmin, xmax = padded_polygon[:, 0].min(), padded_polygon[:, 0].max()
    ymin, ymax = padded_polygon[:, 1].min(), padded_polygon[:, 1].max()
    width, height = xmax - xmin + 1, ymax - ymin + 1
    polygon[:, 0] = polygon[:, 0] - xmin
    polygon[:, 1] = polygon[:, 1] - ymin
    xs = np.broadcast_to(np.linspace(0, width - 1, num=width).reshape(1, width), (height, width))
    ys = np.broadcast_to(np.linspace(0, height - 1, num=height).reshape(height, 1), (height, width))

    distance_map = np.zeros((polygon.shape[0], height, width), dtype=np.float32)
    for i in range(polygon.shape[0]):
        j = (i + 1) % polygon.shape[0]
        absolute_distance = law_of_cosines_distance(xs, ys, polygon[i], polygon[j])
        distance_map[i] = np.clip(absolute_distance / distance, 0, 1)
    distance_map = distance_map.min(axis=0)

    xmin_valid = min(max(0, xmin), canvas.shape[1] - 1)
    xmax_valid = min(max(0, xmax), canvas.shape[1] - 1)
    ymin_valid = min(max(0, ymin), canvas.shape[0] - 1)
    ymax_valid = min(max(0, ymax), canvas.shape[0] - 1)
    canvas[ymin_valid:ymax_valid + 1, xmin_valid:xmax_valid + 1] = np.fmax(
        1 - distance_map[ymin_valid - ymin:ymax_valid - ymax + height,
                         xmin_valid - xmin:xmax_valid - xmax + width],
        canvas[ymin_valid:ymax_valid + 1, xmin_valid:xmax_valid + 1])


def ref_border(polygons, ignore_tags, h, w, shrink_ratio=0.4, thresh_min=0.3, thresh_max=0.7,
               round_coords=False):
    """MakeBorderMap: ``(thresh_map, thresh_mask)``."""
    canvas = np.zeros((h, w), dtype=np.float32)
    mask = np.zeros((h, w), dtype=np.float32)
    for polygon, ign in zip(polygons, ignore_tags):
        if ign:
            continue
        draw_border_map(polygon, canvas, mask, shrink_ratio, round_coords)
    canvas = canvas * (thresh_max - thresh_min) + thresh_min
    return canvas, mask


def ref_make_targets(polygons, ignore_tags, h, w, size_on="bbox", round_coords=False):
    """``(gt, mask, thresh_map, thresh_mask)`` as the authors' two data processes make them."""
    polygons, ignore_tags = validate_polygons([np.array(p, np.float64) for p in polygons], list(ignore_tags), h, w)
    gt, mask, ignore_tags = ref_shrink(polygons, ignore_tags, h, w, size_on=size_on, round_coords=round_coords,
                                       validate=False)
    thresh_map, thresh_mask = ref_border(polygons, ignore_tags, h, w, round_coords=round_coords)
    return gt, mask, thresh_map, thresh_mask
