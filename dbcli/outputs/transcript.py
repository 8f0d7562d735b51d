"""``dbnet ocr``'s outputs: an image's text as lines, written as plain text, Markdown or JSON.

``text_lines`` joins the regions of each text line (``dbcli.postprocess.reading_order.line_labels``),
in the order of the detections (``--sort``), with a space. The formats (``OCR_FORMATS``, chosen by the
``--out`` suffix):

- ``txt``: per image (or PDF page) a header line ``=== <file> ===``, then one line of text per line;
- ``md``: a first line ``<!-- dbnet ocr -->``, per image a ``## <file>`` heading, then each line of
  text as its own paragraph (Markdown's special characters escaped);
- ``json``: ``{"model", "settings", "images"}`` as ``dbnet detect``'s JSON, each image entry with its
  ``lines`` (strings) besides its detections (each with ``text`` and ``text_score``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dbcli.errors import DBNetError
from dbcli.postprocess.reading_order import line_labels

OCR_FORMATS = ("txt", "md", "json")
MD_MARK = "<!-- dbnet ocr -->"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")  # inline markup
_MD_LEADING = re.compile(r"^(\s*)([#>+\-=])")  # a heading, quote, list or rule at a line's start
_MD_NUMBERED = re.compile(r"^(\s*\d+)([.)])")  # a numbered list item


def ocr_format(out: Path | None) -> str:
    """The format ``--out`` asks for by its suffix (``.txt``, ``.md``, ``.json``); stdout and None:
    ``txt``. Raises ``DBNetError`` for another suffix."""
    if out is None or str(out) == "-":
        return "txt"
    suffix = out.suffix.lower().lstrip(".")
    if suffix == "markdown":
        return "md"
    if suffix not in OCR_FORMATS:
        raise DBNetError(f"--out {out}: dbnet ocr writes .txt, .md or .json files")
    return suffix


def text_lines(detections: Sequence[Any]) -> list[str]:
    """The text of ``detections`` (each with ``.points`` and ``.text``, in reading order) as lines:
    consecutive regions on one text line joined with a space; regions that read as nothing left
    out."""
    labels = line_labels([d.points for d in detections])
    lines: list[list[str]] = []
    last = None
    for det, label in zip(detections, labels):
        if label != last:
            lines.append([])
            last = label
        if det.text:
            lines[-1].append(det.text)
    return [" ".join(words) for words in lines if words]


def txt_block(name: str, lines: Sequence[str]) -> str:
    """One image's text: ``=== name ===`` then its lines."""
    return "".join(f"{line}\n" for line in [f"=== {name} ===", *lines])


def md_escape(text: str) -> str:
    """``text`` with Markdown's inline markup characters and a leading block marker (``#``, ``-``,
    ``1.``) backslash-escaped: it reads as written."""
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_NUMBERED.sub(r"\1\\\2", _MD_LEADING.sub(r"\1\\\2", text))


def md_block(name: str, lines: Sequence[str]) -> str:
    """One image's text as Markdown: a ``## name`` heading, then each line as a paragraph."""
    parts = [f"## {md_escape(name)}", *(md_escape(line) for line in lines)]
    return "".join(f"{part}\n\n" for part in parts)


def ocr_text(fmt: str, blocks: Sequence[tuple[str, list[str]]]) -> str:
    """The ``txt`` or ``md`` document of ``blocks`` (each image's name and lines)."""
    if fmt == "md":
        return MD_MARK + "\n\n" + "".join(md_block(name, lines) for name, lines in blocks)
    return "".join(txt_block(name, lines) for name, lines in blocks)


def ocr_output(path: Path) -> bool:
    """Whether an existing ``path`` is a ``dbnet ocr`` output (or empty), so a rerun may replace it:
    text starting with a ``===`` header, Markdown with ``MD_MARK``, or JSON as ``dbnet detect``'s."""
    with open(path, "rb") as f:
        head = f.read(1 << 16).lstrip()
    if not head:
        return True
    if path.suffix.lower() == ".json":
        return head.startswith(b"{") and b'"images"' in head
    return head.startswith(b"=== ") or head.startswith(MD_MARK.encode())
