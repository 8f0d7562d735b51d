"""Command-line INPUTs -> image files: files as given, folders recursively, glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from dbcli.errors import DBNetError
from dbcli.imaging import IMAGE_EXTENSIONS


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _images_in(directory: Path) -> list[Path]:
    return sorted((p for p in directory.rglob("*") if _is_image_name(p) and p.is_file()), key=str)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files as given (any extension: a non-image gets a decode warning later), directories
    recursively (image extensions only), glob patterns (``*``, ``?``, ``[...]``, ``**``; matched
    files with image extensions, matched directories recursively). Returns ``(paths, problems)``:
    duplicates removed, order kept; ``problems`` names inputs that matched nothing."""
    paths: list[Path] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.normcase(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for item in inputs:
        text = os.fspath(item)
        if not text.strip():  # "$UNSET" must not mean the current directory
            raise DBNetError("an empty INPUT argument (an unset shell variable?); name files, folders or "
                             "patterns (. for the current directory)")
        p = Path(text)
        if p.is_dir():
            found = _images_in(p)
            if not found:
                problems.append(f"{text}: no image files in this directory")
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            found = []
            for m in map(Path, matches):
                if m.is_dir():
                    found.extend(_images_in(m))
                elif m.is_file() and _is_image_name(m):
                    found.append(m)
            if not found:
                problems.append(f"{text}: the pattern matches no image file")
            for f in found:
                add(f)
        else:
            problems.append(f"{text}: no such file or directory")
    return paths, problems
