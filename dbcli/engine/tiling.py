"""Detection on an image at any scale in bounded memory: overlapping tiles through the network, their
probability maps stitched into full-width bands, bands post-processed in windows with a margin.

``detect_at_scale(prob_fn, image, size, post)`` resizes ``image`` to ``size`` (the network-scale
``(H', W')``, multiples of 32) and runs:

1. **tiles**: ``tile`` x ``tile`` network inputs (a multiple of 32) overlapping by at least
   ``overlap`` pixels, evenly spread from edge to edge; a tile whose pixels are flat (no ink: max - min of its grey
   levels at most ``FLAT_RANGE``) is not run, its map is 0;
2. **stitching**: each map pixel is taken from the tile that sees it with the most context (the seam
   between two neighbours lies in the middle of their overlap), so one tile row gives the map rows it
   owns across the whole width: a line crossing a vertical seam is one connected region;
3. **windows**: the stitched rows are post-processed (``dbcli.postprocess.boxes``) in windows of one
   tile row's rows plus ``margin`` rows above and below, and a window keeps the regions whose centre
   lies in its own rows. Neighbouring windows see the same stitched pixels, so a region near a
   horizontal seam comes out once, from the window that holds its centre, and whole as long as it
   reaches less than ``margin`` network pixels from its centre (text lines up to ~100 px tall at
   network scale with the default margin; the scale policy makes text ~20 px tall).

``tiled_map`` gives the whole stitched map of steps 1-2 instead: the engine's first pass at a size
over ``MAX_PASS_PIXELS`` (``needs_tiles``: an option such as ``--short-side 4096 --max-side 16384``)
runs that way, so no network pass is ever larger than that budget.

Peak memory: the resized image (uint8), one tile's input and maps, and about three tile rows of
stitched map (float32): ~150 MB for an 8000-pixel-wide image, whatever its height.
``post.max_candidates`` applies per window. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from dbcli.backends.base import Backend
from dbcli.imaging import normalize, resize_to
from dbcli.postprocess.boxes import Detection, PostConfig, detections_and_candidates

TILE = 1536  # tile side in network pixels (multiple of 32)
OVERLAP = 256  # overlap of neighbouring tiles in network pixels (multiple of 32): 128 px of context each side
MAX_PASS_PIXELS = 1152 * 4096  # the largest untiled network pass (H' x W'): larger ones run in tiles
MARGIN = 192  # rows above and below a post-processing window's own rows
FLAT_RANGE = 16  # a tile whose grey levels span at most this is blank paper: not run


@dataclass
class TiledResult:
    """Detections (original-image pixels), candidate regions counted over the windows, whether a
    window hit ``max_candidates``, tiles run and tiles skipped as blank, and the full ``(H', W')``
    probability map when the image was one tile (else None)."""

    detections: list[Detection]
    candidates: int
    capped: bool
    tiles_run: int
    tiles_blank: int
    prob: np.ndarray | None = None


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Offsets of the tiles along one side of ``length`` pixels: as few tiles as overlap by at least
    ``overlap`` pixels, evenly spread, the first at 0 and the last flush with the end; ``[0]`` when
    one tile covers it."""
    if length <= tile:
        return [0]
    count = -(-(length - tile) // (tile - overlap)) + 1
    return [round(k * (length - tile) / (count - 1)) for k in range(count)]


def owned_ranges(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """The ``[begin, end)`` pixels each tile owns: the seams lie in the middle of each overlap."""
    bounds = [0] + [(starts[k] + tile + starts[k + 1]) // 2 for k in range(len(starts) - 1)] + [length]
    return [(bounds[k], bounds[k + 1]) for k in range(len(starts))]


def needs_tiles(size: tuple[int, int], max_pixels: int = MAX_PASS_PIXELS) -> bool:
    """Whether a network pass at ``size`` = ``(H', W')`` holds more than ``max_pixels`` network pixels
    (``MAX_PASS_PIXELS``: the largest pass the shipped weights' own settings make, 1152 x 4096): such a
    pass always runs in tiles, whatever chose its scale (its activations grow with its area: > 7 GB
    at 4096x16384). Every pass the default settings make stays one pass, as before (a wide receipt
    at 736 x 1920 too: tiles would only add seams)."""
    return size[0] * size[1] > max_pixels


def _tile_prob(prob_fn: Backend, pixels: np.ndarray) -> np.ndarray | None:
    """``(h, w)`` probability map of one ``(h, w, 3)`` uint8 tile (``(C, h, w)`` when ``prob_fn``
    gives ``C`` maps per image), or None when it is blank."""
    low, high, _, _ = cv2.minMaxLoc(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))
    if high - low <= FLAT_RANGE:
        return None
    prob = prob_fn(normalize(pixels)[None])[0]
    # as the first pass's map (engine.pipeline.finite_map, which notes it): NaN -> 0, scores in [0, 1]
    return np.clip(np.nan_to_num(prob, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def stitched_rows(prob_fn: Backend, scaled: np.ndarray, tile: int = TILE, overlap: int = OVERLAP,
                  counts: list[int] | None = None, channels: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(y0, rows)`` per tile row: the ``(h, W')`` float32 map rows it owns, top to bottom, of the
    ``(H', W', 3)`` uint8 ``scaled`` image (``(channels, h, W')`` when ``prob_fn`` gives ``channels``
    maps per image). ``counts`` (``[run, blank]``) is updated."""
    height, width = scaled.shape[:2]
    xs, ys = tile_starts(width, tile, overlap), tile_starts(height, tile, overlap)
    x_owned, y_owned = owned_ranges(xs, tile, width), owned_ranges(ys, tile, height)
    lead = () if channels is None else (channels,)
    for y, (ya, yb) in zip(ys, y_owned):
        rows = np.zeros((*lead, yb - ya, width), np.float32)
        for x, (xa, xb) in zip(xs, x_owned):
            prob = _tile_prob(prob_fn, scaled[y:y + tile, x:x + tile])
            if counts is not None:
                counts[0 if prob is not None else 1] += 1
            if prob is not None:
                rows[..., xa:xb] = prob[..., ya - y:yb - y, xa - x:xb - x]
        yield ya, rows


def tiled_map(prob_fn: Backend, scaled: np.ndarray, tile: int = TILE, overlap: int = OVERLAP,
              channels: int | None = None, counts: list[int] | None = None) -> np.ndarray:
    """The whole ``(H', W')`` float32 map of ``prob_fn`` over the ``(H', W', 3)`` uint8 ``scaled`` image
    (``(channels, H', W')`` for a ``prob_fn`` of ``channels`` maps), stitched from tiles
    (``stitched_rows``): the network never sees more than ``tile`` x ``tile`` pixels at once; blank
    tiles are 0. Costs the map (4 bytes per pixel and channel) besides one tile's activations.
    ``counts`` (``[run, blank]``) is updated."""
    height, width = scaled.shape[:2]
    out = np.zeros((height, width) if channels is None else (channels, height, width), np.float32)
    for y0, rows in stitched_rows(prob_fn, scaled, tile, overlap, counts, channels):
        out[..., y0:y0 + rows.shape[-2], :] = rows
    return out


def _window(buffer: np.ndarray, top: int, own: tuple[int, int], size: tuple[int, int], scale: tuple[float, float],
            post: PostConfig) -> tuple[list[Detection], int]:
    """Detections of the map rows ``buffer`` (its first row is row ``top``) whose centre lies in the
    rows ``own``, in original pixels (``size``: original (w, h); ``scale``: original / network)."""
    sx, sy = scale
    dets, candidates = detections_and_candidates(buffer, size[0], buffer.shape[0] * sy, post)
    kept = []
    for det in dets:
        det.points[:, 1] += top * sy
        centre = det.points[:, 1].mean() / sy
        if own[0] <= centre < own[1]:
            det.points[:, 1] = np.clip(det.points[:, 1], 0, size[1])
            kept.append(det)
    return kept, candidates


def detect_at_scale(prob_fn: Backend, image: np.ndarray, size: tuple[int, int], post: PostConfig,
                    tile: int = TILE, overlap: int = OVERLAP, margin: int = MARGIN) -> TiledResult:
    """Detections of ``image`` (``(H, W, 3)`` uint8 RGB) run at the network size ``size`` =
    ``(H', W')`` (multiples of 32) in tiles (see the module doc); points in original pixels."""
    height, width = image.shape[:2]
    new_h, new_w = size
    scaled = resize_to(image, size)
    scale = (width / new_w, height / new_h)
    counts = [0, 0]
    if new_h <= tile and new_w <= tile:  # one tile: the whole map, kept for the caller
        prob = _tile_prob(prob_fn, scaled)
        counts[0 if prob is not None else 1] += 1
        prob = np.zeros((new_h, new_w), np.float32) if prob is None else prob
        dets, candidates = detections_and_candidates(prob, width, height, post)
        return TiledResult(dets, candidates, candidates > post.max_candidates, counts[0], counts[1], prob)
    detections: list[Detection] = []
    candidates, capped = 0, False
    buffer, top = np.zeros((0, new_w), np.float32), 0  # stitched rows [top, top + len(buffer))
    pending: list[tuple[int, int]] = []  # owned row ranges not post-processed yet

    def flush(final: bool) -> None:
        nonlocal buffer, top, candidates, capped
        end = top + buffer.shape[0]
        while pending and (final or end >= min(pending[0][1] + margin, new_h)):
            a, b = pending.pop(0)
            lo = max(top, a - margin)
            window = buffer[lo - top:min(end, b + margin) - top]
            dets, found = _window(window, lo, (a, b), (width, height), scale, post)
            detections.extend(dets)
            candidates += found
            capped |= found > post.max_candidates
            keep_from = max(top, b - margin)  # the next window starts at b - margin
            buffer, top = buffer[keep_from - top:], keep_from

    for y0, rows in stitched_rows(prob_fn, scaled, tile, overlap, counts):
        buffer = np.concatenate([buffer, rows]) if buffer.size else rows
        pending.append((y0, y0 + rows.shape[0]))
        flush(False)
    flush(True)
    return TiledResult(detections, candidates, capped, counts[0], counts[1])
