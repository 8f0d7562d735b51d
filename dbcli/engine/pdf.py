"""PDF input: each page rendered to an image (PDFium through pypdfium2, the optional ``dbnet-cli[pdf]``).

A page is rendered at ``dpi`` pixels per inch (default 144: 10-12 pt body text comes out ~20-24 px
high, what a recogniser reading the crops wants); its detections are in those page pixels. To map
a point back to PDF coordinates (points, 1/72 inch, origin at the bottom-left of the page as
shown): ``x_pt = x * 72 / dpi`` and ``y_pt = page_height_pt - y * 72 / dpi``.

PDFium is not thread-safe (not even across documents), so every call into it holds one process-wide
lock; the decode threads of the engine still overlap rendering with the network.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dbcli import defaults
from dbcli.errors import DBNetError
from dbcli.imaging import check_pixels

PDF_EXTENSIONS = {".pdf"}
_PDFIUM_LOCK = threading.Lock()  # PDFium allows one call at a time in a process


def is_pdf(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in PDF_EXTENSIONS


@dataclass(frozen=True)
class PdfPage:
    """Page ``number`` (from 1) of the PDF file ``path``, to be rendered at ``dpi``."""

    path: Path
    number: int
    dpi: float = defaults.DPI

    @property
    def name(self) -> str:
        """How results and messages name the page: ``report.pdf#page=3`` (a PDF viewer's URL form)."""
        return f"{self.path}#page={self.number}"

    @property
    def stem(self) -> str:
        """A file-name stem for the page's outputs: ``report_p3``."""
        return f"{self.path.stem}_p{self.number}"


@dataclass(frozen=True)
class PageInfo:
    """What maps a page's pixels back to the PDF: its page number (from 1), the page's size in
    points (as shown, rotation applied) and the rendering resolution in pixels per inch."""

    number: int
    width_pt: float
    height_pt: float
    dpi: float

    def to_dict(self) -> dict:
        return {"page": self.number, "page_size_pt": [round(self.width_pt, 2), round(self.height_pt, 2)],
                "dpi": self.dpi}


def _pdfium(path: Path) -> Any:
    try:
        import pypdfium2
    except ImportError:
        raise DBNetError(f"{path}: reading PDF files needs pypdfium2: pip install 'dbnet-cli[pdf]'") from None
    return pypdfium2


def _open(path: Path) -> Any:
    """The open ``pypdfium2.PdfDocument`` (call with the lock held). Raises ``DBNetError``."""
    pdfium = _pdfium(path)
    try:
        with open(path, "rb"):  # a file that cannot be read is said as such, not as a PDFium error
            pass
        # PDFium's last error stays until a failed load sets another, and one failure (a document
        # without pages) sets none: leave "file not found" behind, which a readable file cannot cause.
        pdfium.raw.FPDF_LoadDocument(b"/nonexistent/dbnet-reset.pdf", None)
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == pdfium.raw.FPDF_ERR_PASSWORD:
            raise DBNetError(f"{path}: the PDF is encrypted (it needs a password)") from None
        if code == pdfium.raw.FPDF_ERR_FILE:  # no error of its own: PDFium refuses a document without pages
            raise DBNetError(f"{path}: the PDF has no pages (none that PDFium can read)") from None
        raise DBNetError(f"{path}: not a readable PDF ({exc})") from None
    except OSError as exc:
        raise DBNetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_dpi(dpi: float) -> None:
    """Refuse a ``--dpi`` that is not a finite positive number (``nan`` and ``inf`` included)."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not math.isfinite(dpi) or dpi <= 0:
        raise DBNetError(f"--dpi must be a finite positive number, got {dpi!r}")


def pdf_pages(path: str | Path, dpi: float = defaults.DPI) -> list[PdfPage]:
    """Every page of the PDF ``path``, to be rendered at ``dpi``. Raises ``DBNetError`` (a one-line
    warning naming the file) for an encrypted, damaged or empty PDF, or when pypdfium2 is missing."""
    path = Path(path)
    check_dpi(dpi)
    with _PDFIUM_LOCK:
        doc = _open(path)
        try:
            count = len(doc)
        finally:
            doc.close()
    if count == 0:
        raise DBNetError(f"{path}: the PDF has no pages")
    return [PdfPage(path, number, float(dpi)) for number in range(1, count + 1)]


def render_page(page: PdfPage, max_megapixels: float | None = None) -> tuple[np.ndarray, PageInfo]:
    """Page ``page`` as an ``(H, W, 3)`` uint8 RGB image at ``page.dpi`` (white paper, annotations and
    form fields drawn, the page's rotation applied) and its ``PageInfo``. A page of more than
    ``max_megapixels`` million pixels at that resolution is refused before rendering. Raises
    ``DBNetError`` naming the page."""
    scale = page.dpi / 72.0
    with _PDFIUM_LOCK:
        doc = _open(page.path)
        try:
            if not 1 <= page.number <= len(doc):
                raise DBNetError(f"{page.name}: the PDF has {len(doc)} pages")
            pdf_page = doc[page.number - 1]
            try:
                width_pt, height_pt = pdf_page.get_size()
                check_pixels(page.name, round(width_pt * scale), round(height_pt * scale), max_megapixels)
                bitmap = pdf_page.render(scale=scale, rev_byteorder=True)  # RGB order
                try:
                    image = np.array(bitmap.to_numpy()[:, :, :3])  # a copy that outlives the bitmap
                finally:
                    bitmap.close()
            finally:
                pdf_page.close()
        except DBNetError:
            raise
        except Exception as exc:  # PDFium failing on one page must not stop the run
            raise DBNetError(f"{page.name}: cannot render the page ({exc.__class__.__name__}: {exc})") from None
        finally:
            doc.close()
    return image, PageInfo(page.number, float(width_pt), float(height_pt), page.dpi)
