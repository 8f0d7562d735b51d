"""Every network pass over the pass budget runs in tiles, whatever chose its scale (issue 37, item 4):
``--short-side 4096 --max-side 16384`` on a tall page must not run one 4096x16384 pass (> 7 GB).
A spy backend (a hand-set "model" whose map marks dark pixels) records the size of every input."""

from __future__ import annotations

import numpy as np
from planted_model import INK, match_rects, rect_image

from dbcli.backends.base import Model
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.settings import Settings
from dbcli.engine.tiling import MAX_PASS_PIXELS, TILE, needs_tiles, tiled_map
from dbcli.imaging import MEAN, STD, inference_size
from dbcli.postprocess.boxes import PostConfig


class DarknessSpy:
    """``(N, 3, H, W)`` normalised input -> ``(N, H, W)`` map: 1 where the pixel is dark, else 0;
    records every input's ``(H, W)``. ``maps`` also gives a threshold map of 0.3."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(batch.shape[-2:])
        gray = (batch * STD[None, :, None, None] + MEAN[None, :, None, None]).mean(axis=1)
        return (gray < (INK + 100)).astype(np.float32)

    def maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob = self(batch)
        return prob, np.full_like(prob, 0.3)


RECTS = [(10, 20, 40, 28), (8, 150, 50, 160), (30, 380, 56, 390)]  # dark "words" on a 64x400 page


def _run(spy: DarknessSpy, short_side: int, max_side: int, **wanted):
    image = rect_image(64, 400, RECTS)
    settings = Settings(short_side=short_side, max_side=max_side, scale_policy="fixed",
                        post=PostConfig(thresh=0.3, box_thresh=0.5, unclip_ratio=1.5))
    return list(run_pipeline([image], Model(spy, {"backend": "spy"}, maps_fn=spy), settings, **wanted))[0]


def test_a_pass_larger_than_a_tile_runs_in_tiles_with_the_same_detections():
    big = DarknessSpy()
    record = _run(big, 1600, 16384)  # 1600x9984 network pixels
    assert (record.height, record.width) == (400, 64)
    assert big.sizes and all(h <= TILE and w <= TILE for h, w in big.sizes)
    assert len(big.sizes) > 1
    assert match_rects([{"points": d.points.tolist()} for d in record.detections], RECTS)
    assert record.scale["tiles"] == len(big.sizes)  # the JSON says how many tiles ran


def test_a_pass_within_a_tile_is_one_untiled_pass():
    small = DarknessSpy()
    record = _run(small, 128, 16384)
    assert small.sizes == [(800, 128)]
    assert match_rects([{"points": d.points.tolist()} for d in record.detections], RECTS)


def test_maps_of_a_tiled_pass_are_whole():
    spy = DarknessSpy()
    record = _run(spy, 1600, 16384, with_maps=True)
    assert all(h <= TILE and w <= TILE for h, w in spy.sizes)
    size = inference_size(400, 64, 1600, 16384)
    assert record.prob.shape == size and record.thresh.shape == size and size[0] > TILE
    assert np.allclose(record.thresh[record.prob > 0], 0.3)


def test_tiled_map_equals_the_untiled_map_of_a_pointwise_model():
    rng = np.random.default_rng(0)
    scaled = rng.integers(0, 256, (96, 160, 3), np.uint8)
    spy = DarknessSpy()
    whole = spy(((scaled - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32))[0]
    stitched = tiled_map(spy, scaled, tile=64, overlap=32)
    assert all(h <= 64 and w <= 64 for h, w in spy.sizes[1:])
    assert np.array_equal(stitched, whole)
    assert needs_tiles((4096, 16384)) and needs_tiles((16384, 4096)) and needs_tiles((1600, 9984))
    assert MAX_PASS_PIXELS == 1152 * 4096 and needs_tiles((1153, 4096)) and not needs_tiles((1152, 4096))


def test_every_pass_of_the_default_settings_stays_one_pass():
    """A wide receipt at the default short side (736 x 1920 network pixels) or a panorama at the cap
    (736 x 4096) runs as one pass, as before tiling existed: tiles would only add seams."""
    assert not needs_tiles((736, 1920)) and not needs_tiles((736, 4096)) and not needs_tiles((1152, 2048))
    wide = DarknessSpy()
    image = rect_image(480, 184, [(20, 30, 200, 60), (20, 100, 300, 140)])
    settings = Settings(short_side=736, max_side=4096, scale_policy="fixed",
                        post=PostConfig(thresh=0.3, box_thresh=0.5, unclip_ratio=1.5))
    record = list(run_pipeline([image], Model(wide, {"backend": "spy"}, maps_fn=wide), settings))[0]
    assert wide.sizes == [(736, 1920)] and record.scale.get("tiles", 1) == 1
