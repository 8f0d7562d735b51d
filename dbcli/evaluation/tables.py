"""``dbnet eval``'s tables on the console (rich): the scores of one setting, or a sweep's grid of
hmeans with the best setting highlighted."""

from __future__ import annotations

from typing import Any

from dbcli.progress import plural


def print_scores(console: Any, title: str, result: Any) -> None:
    """``result`` (an ``EvalResult``) as a table of metrics under ``title``."""
    from rich.table import Table

    s = result.scores
    console.print(title, soft_wrap=True)
    table = Table(show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("precision", f"{s.precision:.4f}")
    table.add_row("recall", f"{s.recall:.4f}")
    table.add_row("hmean", f"[bold]{s.hmean:.4f}[/bold]")
    table.add_row("ground truth (care)", str(s.num_gt))
    table.add_row("detections (care)", str(s.num_det))
    table.add_row("matched", str(s.num_matched))
    table.add_row("images scored", str(s.num_images))
    if result.skipped:
        table.add_row("images skipped (undecodable)", str(len(result.skipped)))
    if result.missing:
        table.add_row("images without predictions", str(len(result.missing)))
    table.add_row("images/s", f"{result.images_per_s:.2f}")
    if getattr(result, "text", None) is not None:
        _text_rows(table, result.text)
    console.print(table)


def _text_rows(table: Any, text: Any) -> None:
    """``--text``'s rows (a ``TextScores``): end to end, words, CER."""
    e, w = text.end_to_end, text.words
    table.add_row("end to end precision", f"{e.precision:.4f}")
    table.add_row("end to end recall", f"{e.recall:.4f}")
    table.add_row("end to end hmean", f"[bold]{e.f1:.4f}[/bold]")
    table.add_row("word precision", f"{w.precision:.4f}")
    table.add_row("word recall", f"{w.recall:.4f}")
    table.add_row("word F1", f"[bold]{w.f1:.4f}[/bold]")
    table.add_row("CER", f"{text.cer:.4f}")


def print_sweep(console: Any, title: str, result: Any) -> None:
    """``result`` (a ``SweepResult``): hmean by box_thresh and thresh, and the best setting."""
    from rich.table import Table

    console.print(title, soft_wrap=True)
    console.print("hmean by box_thresh (rows) and thresh (columns):")
    table = Table()
    table.add_column("box_thresh")
    for t in result.thresholds:
        table.add_column(f"thresh {t:g}", justify="right")
    best = result.best
    for b in result.box_thresholds:
        cells = []
        for t in result.thresholds:
            row = next(r for r in result.rows if r["thresh"] == t and r["box_thresh"] == b)
            cell = f"{row['hmean']:.4f}"
            cells.append(f"[bold reverse]{cell}[/bold reverse]" if row is best else cell)
        table.add_row(f"{b:g}", *cells)
    console.print(table)
    n = best["num_images"]
    console.print(f"best: thresh {best['thresh']:g}, box_thresh {best['box_thresh']:g}: precision "
                  f"{best['precision']:.4f}, recall {best['recall']:.4f}, hmean {best['hmean']:.4f} "
                  f"({plural(n, 'image')}, {result.seconds:.1f} s, {n / max(result.seconds, 1e-9):.2f} images/s)")
    if best["num_matched"] == 0:
        console.print("no setting of the grid matched any ground truth: nothing to choose from")
    else:
        console.print(f"use: dbnet detect --thresh {best['thresh']:g} --box-thresh {best['box_thresh']:g}")
    if result.skipped:
        console.print(f"{plural(len(result.skipped), 'undecodable image')} skipped")
