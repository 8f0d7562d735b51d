"""Timing and reporting helpers shared by the bench scripts.

Timings are taken INTERLEAVED: every repetition runs each contender once (in a rotating order), so
that a machine that gets busier or quieter during the run affects all of them alike; figures are
medians over the repetitions and ratios are computed from those medians.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python bench/x.py`` from anywhere
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine_line() -> str:
    """One line: CPU, cores, notable ISA extensions, library versions, load and GPU."""
    import cv2
    import numpy as np

    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    parts = [f"{cpu_model()}, {usable} cores" + (f" ({'/'.join(isa)})" if isa else ""),
             f"Python {platform.python_version()}", f"numpy {np.__version__}", f"OpenCV {cv2.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    load = load_average()
    if load is not None:
        busy = " - BUSY: other work running, figures are noisy" if load > 0.5 * max(usable, 1) + 0.5 else ""
        parts.append(f"load {load:.2f}{busy}")
    return "; ".join(parts)


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1,
                cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall seconds per call of each contender, ``repeats`` samples each, interleaved (rotating
    order). ``cpu_times``, when given, receives the calling thread's CPU seconds of the same calls:
    for single-threaded code on a machine busy with other work, these leave out the time spent
    waiting for a core (not the slowdown from shared caches and memory bandwidth)."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    if cpu_times is not None:
        cpu_times.update({name: [] for name in names})
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            c0, t0 = time.thread_time(), time.perf_counter()
            contenders[name]()
            t1, c1 = time.perf_counter(), time.thread_time()
            times[name].append(t1 - t0)
            if cpu_times is not None:
                cpu_times[name].append(c1 - c0)
    return times


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def spread(values: list[float]) -> str:
    """``min-max`` of the samples relative to the median, e.g. ``-3%/+12%``."""
    m = median(values)
    if m <= 0:
        return ""
    return f"{(min(values) / m - 1) * 100:+.0f}%/{(max(values) / m - 1) * 100:+.0f}%"


def print_table(title: str, columns: list[str], rows: list[list[object]], notes: list[str] = ()) -> None:
    """A table with rich when it is installed, plain aligned text otherwise."""
    cells = [[c if isinstance(c, str) else f"{c}" for c in row] for row in rows]
    if not sys.stdout.isatty():  # a Markdown table: readable in a log, pastes into bench/README.md
        print(f"\n{title}\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(columns))) + "|")
        for row in cells:
            print("| " + " | ".join(row) + " |")
        for note in notes:
            print(f"\n{note}")
        print()
        return
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in cells:
            table.add_row(*row)
        console = Console()
        console.print(table)
        for note in notes:
            console.print(note, markup=False, highlight=False)
        return
    except ImportError:
        pass
    widths = [max(len(str(col)), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    print(title)
    print("  ".join(col.ljust(w) if i == 0 else col.rjust(w) for i, (col, w) in enumerate(zip(columns, widths))))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for note in notes:
        print(note)


def header(what: str) -> None:
    print(f"# {what}")
    print(f"# machine: {machine_line()}")
