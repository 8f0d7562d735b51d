"""The first ``dbnet detect`` after an install against the second (issue 35): the shipped models run from
their shipped ONNX files, so the first run exports nothing and should cost what the second does.

Each repetition gives every contender a fresh, empty ONNX cache (``$DBNET_CACHE``) and runs, in a
rotating order, ``dbnet detect INPUTS`` twice in new processes: "first" (empty cache, as after an install)
and "second" (the cache as the first left it). The baseline, same run: a copy of the ``general`` ``.pt``
under another name, which is not a shipped file and goes through the one-time export (what every first
run of the shipped model cost before; needs torch, else its rows are skipped).

    python bench/bench_install.py [--repeats 3] [--inputs examples/] [--dbnet "/venv/bin/dbnet" --no-baseline]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path)
from bench.common import ROOT, header, median, print_table, spread

from dbcli.extras import torch_available
from dbcli.weights import resolve_weights


def timed_detect(command: list[str], inputs: str, cache: Path, weights: str | None, out: Path) -> float:
    """Wall seconds of one ``dbnet detect`` process (start to exit) with ``cache`` as its ONNX cache."""
    args = [*command, "detect", inputs, "--out", str(out), *(["--weights", weights] if weights else [])]
    env = {**os.environ, "DBNET_CACHE": str(cache), "DBNET_PROGRESS": "0"}
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(args)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def first_and_second(command: list[str], inputs: str, weights: str | None, work: Path) -> tuple[float, float]:
    """``(first, second)``: two runs on one fresh cache."""
    cache = Path(tempfile.mkdtemp(dir=work))
    first = timed_detect(command, inputs, cache, weights, work / "out.json")
    return first, timed_detect(command, inputs, cache, weights, work / "out.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inputs", default="examples/", help="what dbnet detect reads (relative to the checkout)")
    parser.add_argument("--dbnet", default=f"{shlex.quote(sys.executable)} -m dbcli.cli",
                        help="the dbnet command to time (default: this Python's dbcli)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="leave out the exported .pt rows (a --dbnet installed without torch)")
    args = parser.parse_args()
    header("first vs second dbnet detect after an install")
    command = shlex.split(args.dbnet)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        contenders: dict[str, str | None] = {"shipped general (its ONNX file)": None}
        if torch_available() and not args.no_baseline:
            copy = work / "my_general.pt"  # not a shipped file: exported at its first run
            shutil.copyfile(resolve_weights("general"), copy)
            contenders["a copy of general's .pt (exported at first run)"] = str(copy)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for rep in range(args.repeats):
            names = list(contenders)
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                samples[name].append(first_and_second(command, args.inputs, contenders[name], work))
    rows = []
    for name, pairs in samples.items():
        firsts, seconds = [p[0] for p in pairs], [p[1] for p in pairs]
        rows.append([name, f"{median(firsts):.2f} ({spread(firsts)})", f"{median(seconds):.2f} ({spread(seconds)})",
                     f"{median(firsts) / median(seconds):.2f}x"])
    notes = [f"{args.repeats} repetitions, each on a fresh cache; medians (spread); target: first <= 1.2x second "
             f"for the shipped model. Command: {args.dbnet} detect {args.inputs}"]
    if len(rows) == 1:
        notes.append("the exported .pt baseline is left out (torch not installed, or --no-baseline)")
    print_table("`dbnet detect`, whole process, seconds", ["weights", "first run", "second run", "first / second"],
                rows, notes)


if __name__ == "__main__":
    main()
