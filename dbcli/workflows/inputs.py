"""Command-line INPUTs -> what the engine reads: image files as given, folders recursively, glob
patterns; a PDF file becomes its pages (``dbcli.engine.pdf.PdfPage``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

from dbcli import defaults
from dbcli.engine.pdf import PdfPage, check_dpi, is_pdf, pdf_pages
from dbcli.errors import DBNetError
from dbcli.imaging import IMAGE_EXTENSIONS
from dbcli.outputs.targets import Target

Input = Union[Path, PdfPage]  # an image file, or one page of a PDF


def _is_input_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS or is_pdf(path)


def _not_regular(path: Path) -> str | None:
    """Why ``path`` (which exists) is not read as a file: a FIFO, device or socket would block or never
    end; else None."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:  # a symlink loop
        return f"{path}: cannot read ({exc.strerror or exc}); skipped"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    from dbcli.files import kind_of

    return f"{path}: {kind_of(mode)}, not a regular file; skipped"


def _inputs_in(directory: Path, problems: list[str]) -> list[Path]:
    """The image and PDF files under ``directory`` (recursively, symlinked folders not followed);
    a sub-folder that cannot be read is named in ``problems``."""
    def unreadable(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot read this folder ({exc.strerror or exc}); its files are skipped")

    found = []
    for folder, subfolders, names in os.walk(directory, onerror=unreadable):
        subfolders.sort()
        for name in names:
            p = Path(folder) / name
            if _is_input_name(p) and p.is_file():
                found.append(p)
    return sorted(found, key=str)


def expand_inputs(inputs: Iterable[str | os.PathLike], dpi: float = defaults.DPI) -> tuple[list[Input], list[str]]:
    """Files as given (any extension: a non-image gets a decode warning later), directories
    recursively (image and PDF extensions only), glob patterns (``*``, ``?``, ``[...]``, ``**``;
    matched files with those extensions, matched directories recursively). A PDF gives its pages,
    to be rendered at ``dpi``. Returns ``(inputs, problems)``: duplicates removed, order kept;
    ``problems`` names inputs that matched nothing, a FIFO, device or socket named directly (never
    opened: it could block; inside folders only regular files are taken), sub-folders that cannot be
    read and PDFs that cannot be read (encrypted, damaged, no pages, no pypdfium2)."""
    check_dpi(dpi)
    found: list[Input] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.normcase(os.path.abspath(p))
        if key in seen:
            return
        seen.add(key)
        if not is_pdf(p):
            found.append(p)
            return
        try:
            found.extend(pdf_pages(p, dpi))
        except DBNetError as exc:
            problems.append(str(exc))

    for item in inputs:
        text = os.fspath(item)
        if not text.strip():  # "$UNSET" must not mean the current directory
            raise DBNetError("an empty INPUT argument (an unset shell variable?); name files, folders or "
                             "patterns (. for the current directory)")
        p = Path(text)
        if p.is_dir():
            files = _inputs_in(p, problems)
            if not files:
                problems.append(f"{text}: no image or PDF files in this directory")
            for f in files:
                add(f)
        elif p.exists():
            problem = _not_regular(p)
            if problem:
                problems.append(problem)
            else:
                add(p)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            files = []
            for m in map(Path, matches):
                if m.is_dir():
                    files.extend(_inputs_in(m, problems))
                elif m.is_file() and _is_input_name(m):
                    files.append(m)
            if not files:
                problems.append(f"{text}: the pattern matches no image or PDF file")
            for f in files:
                add(f)
        else:
            problems.append(f"{text}: no such file or directory")
    return found, problems


def input_name(item: Input) -> str:
    """How results name an input: the file's path, or ``report.pdf#page=3`` for a PDF page."""
    return item.name if isinstance(item, PdfPage) else str(item)


def output_keys(items: Sequence[Input]) -> list[str]:
    """A distinct relative path without suffix for each input's own output files (crops, drawings):
    the file's path below the folder all inputs share, its suffix dropped (``sub/photo``), and
    ``_p<N>`` added for a PDF page (``report_p3``). Two files that would get the same key (``a.jpg``
    and ``a.png``) keep their suffix in it (``a-png``)."""
    files = [item.path if isinstance(item, PdfPage) else Path(item) for item in items]
    parents = {os.path.abspath(f.parent) for f in files}
    try:
        root = os.path.commonpath(sorted(parents)) if parents else ""
    except ValueError:  # different drives
        root = ""
    keys: list[str] = []
    taken: set[str] = set()
    for item, f in zip(items, files):
        folder = os.path.relpath(os.path.abspath(f.parent), root) if root else ""
        folder = "" if folder == "." else folder
        stem = item.stem if isinstance(item, PdfPage) else f.stem
        key = os.path.join(folder, stem)
        if key.lower() in taken:
            key = os.path.join(folder, f"{stem}-{f.suffix.lstrip('.').lower() or 'file'}")
            n = 2
            while key.lower() in taken:
                key, n = os.path.join(folder, f"{stem}-{n}"), n + 1
        taken.add(key.lower())
        keys.append(key)
    return keys


def output_targets(items: Sequence[Input], keys: Sequence[str]) -> list[Target]:
    """What ``dbcli.outputs.targets`` checks of each input: the file read (a PDF page: its PDF), its
    name in results (``input_name``), its output key (``output_keys``) and the input itself."""
    return [Target(item.path if isinstance(item, PdfPage) else Path(item), input_name(item), key, item)
            for item, key in zip(items, keys)]
