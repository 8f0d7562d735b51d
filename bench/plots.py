"""Plots for the docs, drawn from the figures the bench scripts wrote into ``bench/README.md``.

    python bench/plots.py            # writes docs/img/speed_vs_peer.png and docs/img/scale_coverage.png

The figures are read from the Markdown tables of ``bench/README.md`` (the bench results, with their
machine, date and load), never typed in here: re-run a bench script, paste its table, re-run this.
Needs matplotlib (not a dependency of dbnet: ``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
Table = list[dict[str, str]]


def markdown_tables(text: str) -> list[Table]:
    """Every pipe table of a Markdown text, as a list of rows keyed by the header cells."""
    tables: list[Table] = []
    lines = text.splitlines()
    i = 0
    while i + 1 < len(lines):
        if lines[i].startswith("|") and re.match(r"^\|\s*:?-{3,}", lines[i + 1]):
            header = _cells(lines[i])
            rows: Table = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]))))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _number(cell: str) -> float:
    """``**7.25**`` -> 7.25, ``100.0%`` -> 100.0."""
    match = re.search(r"-?\d+(?:\.\d+)?", cell.replace(",", ""))
    if match is None:
        raise ValueError(f"bench/README.md: no number in table cell {cell!r}")
    return float(match.group())


def _plain(cell: str) -> str:
    """A cell's text without Markdown emphasis, code marks or a parenthesised remark at the end."""
    return re.sub(r"\s*\([^()]*\)$", "", re.sub(r"[*`]", "", cell)).strip()


def find_table(tables: list[Table], first_header: str) -> Table:
    """The first table whose first header cell starts with ``first_header``."""
    for table in tables:
        if table and next(iter(table[0])).startswith(first_header):
            return table
    raise ValueError(f"bench/README.md: no table whose first column starts with {first_header!r}")


def speed_figures(tables: list[Table]) -> dict[str, dict[str, float]]:
    """images/s of each contender of ``bench_detect.py --busy``: {condition: {contender: images/s}}."""
    out: dict[str, dict[str, float]] = {}
    for first, condition in (("as it is", "idle"), ("one competing", "one competing process")):
        table = find_table(tables, first)
        key = next(iter(table[0]))
        out[condition] = {_plain(row[key]): _number(row["images/s"]) for row in table}
    return out


def coverage_figures(tables: list[Table]) -> dict[str, dict[str, float]]:
    """Coverage of the words per generated page of ``bench_scale.py``: {page: {method: percent}}."""
    table = next(t for t in tables if t and "coverage" in t[0] and "method" in t[0])
    out: dict[str, dict[str, float]] = {}
    page = ""
    for row in table:
        page = _plain(row["page"]) or page
        if "photo" in page:  # the large photo: a different question (text the first pass reads)
            continue
        out.setdefault(page, {})[_plain(row["method"])] = _number(row["coverage"])
    return out


def plot_speed(figures: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bars: images/s per contender, idle and beside one competing process."""
    import matplotlib.pyplot as plt

    contenders = list(next(iter(figures.values())))
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    width = 0.8 / len(figures)
    for k, (condition, values) in enumerate(figures.items()):
        xs = [i + k * width for i in range(len(contenders))]
        bars = ax.bar(xs, [values[c] for c in contenders], width, label=condition)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks([i + width * (len(figures) - 1) / 2 for i in range(len(contenders))])
    ax.set_xticklabels([_wrap(c) for c in contenders], fontsize=8)
    ax.set_ylabel("images/s (1280x720, 2 CPU cores)")
    ax.set_title("dbnet detect (general) vs RapidOCR's PP-OCRv4 detector")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_coverage(figures: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bars: share of the words found per large page, per method."""
    import matplotlib.pyplot as plt

    pages = list(figures)
    methods = sorted({m for values in figures.values() for m in values}, key=lambda m: ("policy" not in m, m))
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        xs = [i + k * width for i, page in enumerate(pages) if method in figures[page]]
        values = [figures[page][method] for page in pages if method in figures[page]]
        bars = ax.bar(xs, values, width, label=method)
        ax.bar_label(bars, fmt="%.0f%%", fontsize=8)
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(pages))])
    ax.set_xticklabels([_wrap(p, 30) for p in pages], fontsize=8)
    ax.set_ylabel("words found (%)")
    ax.set_ylim(0, 115)
    ax.set_title("Large pages of small text: the scale policy against a fixed 736 scale")
    ax.legend(fontsize=8, loc="upper right")
    _save(fig, path)


def _wrap(text: str, width: int = 22) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _save(fig: object, path: Path) -> None:
    """Write the PNG atomically (temp file in the same folder, then rename)."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.tight_layout()  # type: ignore[attr-defined]
        fig.savefig(tmp, metadata={"Software": None})  # type: ignore[attr-defined]
        os.replace(tmp, path)
    finally:
        plt.close(fig)  # type: ignore[arg-type]
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    tables = markdown_tables(args.results.read_text(encoding="utf-8"))
    plot_speed(speed_figures(tables), args.out / "speed_vs_peer.png")
    plot_coverage(coverage_figures(tables), args.out / "scale_coverage.png")


if __name__ == "__main__":
    main()
