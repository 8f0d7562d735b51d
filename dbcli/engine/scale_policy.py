"""The scale policy (``dbnet detect``'s default; ``--short-side N`` turns it off): pick, per image, the
scale at which its text is a size the model reads well, from the first pass's regions.

The first pass is today's fixed-scale pass (shorter side ``Settings.short_side``); ``choose`` then
says whether to run the image again at a larger scale (``dbcli.engine.tiling`` runs it, in tiles
when large):

- no: when the first pass was not a downscale worth undoing (the image's ``rescale_cap`` is less
  than ``MIN_GAIN`` x the first scale: ordinary photos, ICDAR 2015's 1280x720, small images, which
  the first pass upscales as before), or when its regions are text of a good height (median box
  height at least ``LOW_HEIGHT`` network pixels) and strong evidence of it (``first_pass_evidence``);
- else the scale that brings the text to ``TARGET_HEIGHT`` network pixels: estimated from the
  first pass's own regions when they are strong evidence, else from a **probe**: the ``PROBES`` most
  ink-dense ``PROBE_SIZE``-pixel crops of the image at the largest scale allowed (text too small to
  show at the first scale shows there), whose answer wins over the first pass's regions; the probe
  finding no text means no re-run. The re-run's scale is at most native resolution (``rescale_cap``:
  1, less for images of more than ``MAX_PIXELS``), and is used only when it is ``MIN_GAIN`` x the
  first scale or more.

**Evidence.** On a heavily shrunk page, lines of small text melt into grey textures that the network
half-believes: a handful of blobs, each over many lines, whose heights say nothing of the text's.
So a first-pass region counts only when it looks like a text line at that scale (``line_like``: mean
probability at least ``LINE_SCORE``, at least ``LINE_ASPECT`` x as long as tall), and the evidence is
strong only when at least ``MIN_REGIONS`` regions do (``MIN_REGIONS_HEAVY`` on a first pass shrunk
``HEAVY_SHRINK`` x or more below the cap), they are at least half of all regions and their heights
agree (``MAX_SPREAD``). Each image's ``scale`` entry gives the reason, and names the evidence a probe
overruled (``"small text (probe: 5 first-pass regions, 0 like text lines)"``).

Heights are measured on detection boxes (the short side of each region's minimum-area rectangle,
after unclipping): on rendered text the shipped ``general`` model finds all words from ~8 px
capital height at network scale (box ~10 px), 60% at 6 px, none at 4 px (bench/README.md).
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dbcli.backends.base import Backend
from dbcli.engine.tiling import MARGIN, detect_at_scale
from dbcli.imaging import normalize
from dbcli.postprocess.boxes import Detection, PostConfig, detections_and_candidates

LOW_HEIGHT = 12.0  # median box height (network px) under which text is small for the model
TARGET_HEIGHT = 20.0  # the box height (network px) a re-run aims at
MIN_REGIONS = 3  # text-like regions needed to trust the first pass's median height ...
MIN_REGIONS_HEAVY = 6  # ... and on a first pass shrunk HEAVY_SHRINK x or more below the cap
HEAVY_SHRINK = 4.0
LINE_SCORE = 0.95  # a text line's mean probability is at least this (rendered text: 0.97-1; blobs: 0.7-0.94)
LINE_ASPECT = 1.2  # ... and its length at least this x its height
MAX_SPREAD = 2.0  # the text-like heights' upper quartile at most this x their lower quartile
MIN_GAIN = 1.25  # a re-run must raise the scale by at least this factor
MAX_PIXELS = 64_000_000  # a re-run's network-scale image is at most this many pixels (8000x8000)
MAX_SIDE = 16384  # ... and at most this long
PROBE_SIZE = 736  # side of a probe crop in network pixels
PROBES = 2  # probe crops per image


@dataclass(frozen=True)
class ScaleChoice:
    """What the policy decided for one image: ``factor`` (network / original pixels) to run again
    at, or None to keep the first pass; ``reason`` in a few words; ``text_height``: the median box
    height it measured in network pixels at its scale (None when it found none); ``note``: a line for
    the user when the cap keeps the re-run's text too small to read (else None)."""

    factor: float | None
    reason: str
    text_height: float | None = None
    note: str | None = None


def capped_note(height: int, width: int, wanted: float, cap: float) -> str | None:
    """The note for an image whose small text wanted a re-run at ``wanted`` (network / original
    pixels) but got ``cap`` (``rescale_cap``: at most ``MAX_PIXELS``), when its text then stays under
    ``LOW_HEIGHT`` network pixels, else None."""
    reached = TARGET_HEIGHT * cap / wanted
    if wanted <= cap or reached >= LOW_HEIGHT:
        return None
    return (f"{width}x{height} pixels ({height * width / 1e6:.0f} megapixels): its small text needs a re-run "
            f"at scale {wanted:.2f}, capped at {cap:.2f} (a network input holds at most {MAX_PIXELS / 1e6:g} "
            f"megapixels), where its text is ~{reached:.0f} px high, under the {LOW_HEIGHT:.0f} px the model "
            "reads well: much of it may be unreadable; split the page into parts")


def box_heights(detections: list[Detection]) -> np.ndarray:
    """Each detection's height: the short side of its minimum-area rectangle (its own pixels)."""
    return np.array([min(cv2.minAreaRect(d.points.astype(np.float32))[1]) for d in detections], np.float64)


def rescale_cap(height: int, width: int) -> float:
    """The largest scale (network / original pixels) a re-run may use: native resolution, less for
    images over ``MAX_PIXELS`` pixels or ``MAX_SIDE`` long."""
    return float(min(1.0, (MAX_PIXELS / (height * width)) ** 0.5, MAX_SIDE / max(height, width)))


def may_rescale(height: int, width: int, first_scale: float) -> bool:
    """Whether the policy could re-run an image of this size first run at ``first_scale`` (so its
    pixels must be kept past the first pass)."""
    return rescale_cap(height, width) >= MIN_GAIN * first_scale


def network_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """``(H', W')``: the image's size at ``factor``, rounded to multiples of 32 (at least 32)."""
    return max(32, int(round(height * factor / 32)) * 32), max(32, int(round(width * factor / 32)) * 32)


def probe_windows(image: np.ndarray, side: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners ``(x, y)`` in original pixels of up to ``count`` non-overlapping ``side`` x
    ``side`` windows of ``image`` with the most fine detail (ink edges), best first."""
    height, width = image.shape[:2]
    step = max(1, side // 32)  # edge energy on a grid of about 32 x 32 cells per window
    small = cv2.cvtColor(cv2.resize(image, (max(1, width // step), max(1, height // step)),
                                    interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    energy = np.abs(cv2.Laplacian(small.astype(np.float32), cv2.CV_32F))
    cells = max(1, min(side // step, min(small.shape)))
    density = cv2.boxFilter(energy, -1, (cells, cells), normalize=False, borderType=cv2.BORDER_CONSTANT)
    corners = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(density)), density.shape)
        if density[y, x] <= 0:
            break
        x0 = int(min(max(0, (x - cells // 2) * step), max(0, width - side)))
        y0 = int(min(max(0, (y - cells // 2) * step), max(0, height - side)))
        corners.append((x0, y0))
        density[max(0, y - cells):y + cells, max(0, x - cells):x + cells] = 0
    return corners


def probe_height(prob_fn: Backend, image: np.ndarray, factor: float, post: PostConfig) -> float | None:
    """The median box height (network px) of the text found in the ``PROBES`` most detailed crops of
    ``image`` run at ``factor``, or None when they hold none."""
    side = int(round(PROBE_SIZE / factor))
    heights: list[np.ndarray] = []
    for x0, y0 in probe_windows(image, side, PROBES):
        crop = image[y0:y0 + side, x0:x0 + side]
        h, w = network_size(crop.shape[0], crop.shape[1], factor)
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        pixels = cv2.resize(crop, (w, h), interpolation=interp) if (h, w) != crop.shape[:2] else crop
        prob = prob_fn(normalize(pixels)[None])[0]
        dets, _ = detections_and_candidates(prob, w, h, post)  # network pixels
        heights.append(box_heights(dets))
    found = np.concatenate(heights) if heights else np.zeros(0)
    return float(np.median(found)) if len(found) else None


@dataclass(frozen=True)
class Evidence:
    """What the first pass says about the text's size: its ``regions`` count, how many of them look
    like text lines at that scale (``text_like``), their box heights in network pixels (``heights``),
    whether those heights agree (``agree``) and whether all that is enough to trust (``strong``)."""

    regions: int
    text_like: int
    heights: np.ndarray
    agree: bool
    strong: bool

    def note(self) -> str:
        """The evidence in a few words, for the ``reason`` of a probe that overruled it."""
        return f"{self.regions} first-pass regions, {self.text_like} like text lines" + (
            "" if self.agree else " of disagreeing heights")


def line_like(detections: list[Detection], factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, heights)``: which ``detections`` (original pixels) look like text lines at the network
    scale ``factor`` (mean probability at least ``LINE_SCORE``: a blob over several lines is a grey
    texture to the network, which it scores lower; length at least ``LINE_ASPECT`` x height), and
    every detection's box height in network pixels. ``(N,)`` each."""
    if not detections:
        return np.zeros(0, bool), np.zeros(0)
    sides = np.array([sorted(cv2.minAreaRect(d.points.astype(np.float32))[1]) for d in detections], np.float64)
    scores = np.array([d.score for d in detections], np.float64)
    mask = (scores >= LINE_SCORE) & (sides[:, 1] >= LINE_ASPECT * sides[:, 0])
    return mask, sides[:, 0] * factor


def first_pass_evidence(first: list[Detection], first_scale: float, needed: int = MIN_REGIONS) -> Evidence:
    """The first pass's regions (``first``, original pixels, run at ``first_scale``) as evidence of
    the text's height: strong when at least ``needed`` of them look like text lines (``line_like``),
    they are at least half of all regions (a page of blobs with a few lucky ones is not) and their
    heights agree (upper quartile at most ``MAX_SPREAD`` x the lower one: not two sizes, the median
    of which would be neither)."""
    mask, heights = line_like(first, first_scale)
    good = heights[mask]
    q1, q3 = np.percentile(good, [25, 75]) if len(good) else (0.0, 0.0)
    agree = bool(q3 <= MAX_SPREAD * q1)
    strong = len(good) >= needed and 2 * len(good) >= len(first) and agree
    return Evidence(len(first), len(good), good, agree, strong)


def choose(prob_fn: Backend, image: np.ndarray, first_scale: float, first: list[Detection],
           post: PostConfig) -> ScaleChoice:
    """The policy's decision for ``image`` (``(H, W, 3)`` uint8 RGB) whose first pass ran at
    ``first_scale`` (network / original pixels) and found ``first`` (original pixels): the first
    pass's text-like regions give the text's height when they are strong evidence
    (``first_pass_evidence``), else a probe does, and its answer wins."""
    height, width = image.shape[:2]
    cap = rescale_cap(height, width)
    if cap < MIN_GAIN * first_scale:
        return ScaleChoice(None, "first scale")
    evidence = first_pass_evidence(first, first_scale, MIN_REGIONS_HEAVY if cap >= HEAVY_SHRINK * first_scale
                                   else MIN_REGIONS)
    if evidence.strong:
        median = float(np.median(evidence.heights))
        wanted, reason = first_scale * TARGET_HEIGHT / max(median, 1.0), "small text"
        if median >= LOW_HEIGHT:
            return ScaleChoice(None, "text large enough", median)
    else:
        note = f": {evidence.note()}" if evidence.regions else ""
        probed = probe_height(prob_fn, image, cap, post)
        if probed is None:
            return ScaleChoice(None, f"no text found (probe{note})")
        wanted, median = cap * TARGET_HEIGHT / max(probed, 1.0), probed
        reason = f"small text (probe{note})"
        if min(cap, wanted) < MIN_GAIN * first_scale:
            return ScaleChoice(None, f"text large enough (probe{note})", median)
    factor = min(cap, wanted)
    if factor < MIN_GAIN * first_scale:
        return ScaleChoice(None, "text large enough", median)
    return ScaleChoice(factor, reason, median, capped_note(height, width, wanted, cap))


@dataclass
class Rescaled:
    """An image's detections after the policy (original pixels), its candidate count and cap flag,
    the probability map to report (the re-run's when it was one tile, else the first pass's), and
    its ``scale`` entry for the JSON."""

    detections: list[Detection]
    candidates: int
    capped: bool
    prob: np.ndarray
    scale: dict
    note: str | None = None  # the policy's line for the user (ScaleChoice.note)


def scale_entry(factor: float, size: tuple[int, int], policy: str, reason: str | None = None,
                tiles: int = 1) -> dict:
    """An image's ``scale`` entry in the JSON: the ``policy`` (``auto`` or ``fixed``), the ``factor``
    used (network / original pixels), the network-scale ``size`` [w, h], the ``tiles`` run and, under
    ``auto``, the ``reason`` for the scale."""
    entry: dict = {"policy": policy, "factor": round(float(factor), 4), "size": [int(size[1]), int(size[0])],
                   "tiles": int(tiles)}
    if reason is not None:
        entry["reason"] = reason
    return entry


def keep_large(first: list[Detection], rerun: list[Detection], factor: float) -> list[Detection]:
    """The re-run's detections (``factor``: its scale), where a region of the first pass too tall for
    the re-run's tiles (over ``MARGIN / 2`` px at ``factor``: a headline, which tiles may cut) stands
    in for the re-run's regions centred inside it when those are tall too (its pieces). A first-pass
    region with small text inside (a blob over several lines) is dropped."""
    if not first or not rerun:
        return rerun
    tall = box_heights(first) * factor > MARGIN / 2
    if not tall.any():
        return rerun
    rerun_tall = box_heights(rerun) * factor > MARGIN / 4
    centres = [tuple(map(float, d.points.mean(axis=0))) for d in rerun]
    dropped: set[int] = set()
    kept_first = []
    for det in (d for d, t in zip(first, tall) if t):
        outline = det.points.astype(np.float32).reshape(-1, 1, 2)
        inside = [k for k, c in enumerate(centres) if cv2.pointPolygonTest(outline, c, False) >= 0]
        if all(rerun_tall[k] for k in inside):
            kept_first.append(det)
            dropped.update(inside)
    return kept_first + [d for k, d in enumerate(rerun) if k not in dropped]


def apply_policy(prob_fn: Backend, image: np.ndarray, first_size: tuple[int, int], first: list[Detection],
                 candidates: int, prob: np.ndarray, post: PostConfig) -> Rescaled:
    """The policy on one image whose first pass ran at network size ``first_size`` (H', W') and gave
    ``first``, ``candidates`` and ``prob``: the first pass's results, or those of a re-run at the
    chosen scale (``dbcli.engine.tiling``)."""
    height, width = image.shape[:2]
    first_scale = (first_size[0] / height + first_size[1] / width) / 2
    choice = choose(prob_fn, image, first_scale, first, post)
    if choice.factor is None:
        return Rescaled(first, candidates, candidates > post.max_candidates, prob,
                        scale_entry(first_scale, first_size, "auto", choice.reason))
    size = network_size(height, width, choice.factor)
    result = detect_at_scale(prob_fn, image, size, post)
    detections = keep_large(first, result.detections, choice.factor)
    return Rescaled(detections, result.candidates, result.capped, result.prob if result.prob is not None else prob,
                    scale_entry(choice.factor, size, "auto", choice.reason, result.tiles_run), choice.note)
