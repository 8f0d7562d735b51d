"""Label generation per 640x640 training crop: dbcli vs the authors' per-polygon code.

    python bench/bench_labels.py [--crops 20] [--repeats 7] [--seed 0]

Crops are synthetic (bench/synthetic.py): ~15 text polygons after the random rescale (heights
4-90 px, aspect 1.5-10, rotated up to 10 degrees, ~10 % don't-care); a second set has curved
14-point polygons. Contenders, timed interleaved in the same run (median of ``--repeats`` passes):

- dbcli: ``dbcli.data.labels.make_targets`` (shrink map + mask, threshold map + mask);
- reference: bench/reference.py, ``MakeSegDetectionData`` + ``MakeBorderMap`` as the authors
  wrote them (law-of-cosines distance per edge over the dilated polygon's whole bounding box).
Then the data-loader cost per image and worker: ``dbcli.data.augment.augment`` of a 1280x720 picture
(flip, rotation, rescale, crop) + labels + normalisation, with dbcli's labels and with the
reference's. Target (issue 6): labels >= 3x faster than the reference, so that 4 workers feed
>= 300 images/s.
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
from bench import synthetic
from bench.common import header, interleaved, median, print_table, spread
from bench.reference import ref_make_targets

from dbcli.data.augment import augment
from dbcli.data.labels import make_targets
from dbcli.imaging import normalize

SIZE = 640


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=4, help="loader workers for the throughput estimate")
    args = ap.parse_args(argv)

    header("label generation per 640x640 crop")
    quads = [synthetic.crop_polygons(np.random.default_rng([args.seed, 1, i])) for i in range(args.crops)]
    curved = [synthetic.crop_polygons(np.random.default_rng([args.seed, 2, i]), curved_fraction=1.0)
              for i in range(args.crops)]
    photos = [synthetic.photo(np.random.default_rng([args.seed, 3, i])) for i in range(args.crops)]
    photo_polys = [[p.copy() for p in words] for _, words in photos]

    def labels(fn, data):
        return lambda: [fn(p, i, SIZE, SIZE) for p, i in data]

    def ref(p, i, h, w):
        return ref_make_targets(p, i, h, w)

    def augmented(i):
        rng = np.random.default_rng([args.seed, 4, i])
        return augment(photos[i][0], photo_polys[i], [False] * len(photo_polys[i]), rng)

    aug_out = [augmented(i) for i in range(args.crops)]
    aug_polys = [(p, ign) for _, p, ign in aug_out]
    contenders = {
        "quads: dbcli": labels(make_targets, quads),
        "quads: reference": labels(ref, quads),
        "curved: dbcli": labels(make_targets, curved),
        "curved: reference": labels(ref, curved),
        "augment 1280x720 -> 640 crop": lambda: [augmented(i) for i in range(args.crops)],
        "normalise crop": lambda: [normalize(c) for c, _, _ in aug_out],
        "labels of those crops: dbcli": labels(make_targets, aug_polys),
        "labels of those crops: reference": labels(ref, aug_polys),
    }
    cpu: dict[str, list[float]] = {}
    times = interleaved(contenders, args.repeats, cpu_times=cpu)
    ms = {name: median(t) / args.crops * 1e3 for name, t in times.items()}
    cpu_ms = {name: median(t) / args.crops * 1e3 for name, t in cpu.items()}
    polys_per_crop = {"quads": np.mean([len(p) for p, _ in quads]), "curved": np.mean([len(p) for p, _ in curved])}

    rows = []
    for name in contenders:
        kind = name.split(":")[0]
        ratio = cpu_ratio = ""
        if name.endswith("reference"):
            ours = name.replace("reference", "dbcli")
            ratio, cpu_ratio = f"{ms[name] / ms[ours]:.2f}x", f"{cpu_ms[name] / cpu_ms[ours]:.2f}x"
        rows.append([name, f"{ms[name]:.2f}", f"{1e3 / ms[name]:.0f}", spread(times[name]), ratio,
                     f"{cpu_ms[name]:.2f}", cpu_ratio, f"{polys_per_crop[kind]:.1f}" if kind in polys_per_crop else ""])
    quad_ratio = ms["quads: reference"] / ms["quads: dbcli"]
    print_table(f"{args.crops} crops {SIZE}x{SIZE} (median of {args.repeats} interleaved passes)",
                ["contender", "ms/crop", "crops/s", "spread", "time vs dbcli", "CPU ms/crop", "CPU vs dbcli",
                 "polygons"], rows, ["ms: wall time; CPU ms: this thread's CPU time (on a busy machine it "
                                     "leaves out the waits for a core; it does not count OpenCV's own worker "
                                     "threads, which augment's warpAffine/resize use)."])

    base = ms["augment 1280x720 -> 640 crop"] + ms["normalise crop"]
    per_image = {"dbcli labels": base + ms["labels of those crops: dbcli"],
                 "reference labels": base + ms["labels of those crops: reference"]}
    rows = [[name, f"{v:.2f}", f"{1e3 / v:.0f}", f"{args.workers * 1e3 / v:.0f}"] for name, v in per_image.items()]
    print_table("data loader per image (augment + labels + normalise; decoded images cached in memory)",
                ["loader", "ms/image", "images/s/worker", f"images/s, {args.workers} workers*"], rows,
                [f"* assumes {args.workers} free cores, one per worker (this machine has fewer if it "
                 "says 2 cores above).",
                 f"target: labels >= 3x faster than the reference: {quad_ratio:.2f}x "
                 f"({'met' if quad_ratio >= 3 else 'NOT met'}); {args.workers} workers >= 300 images/s: "
                 f"{args.workers * 1e3 / per_image['dbcli labels']:.0f} "
                 f"({'met' if args.workers * 1e3 / per_image['dbcli labels'] >= 300 else 'NOT met'})"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
