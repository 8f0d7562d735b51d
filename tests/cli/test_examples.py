"""The example images shipped for newcomers (``dbnet detect examples/``)."""

from __future__ import annotations

from pathlib import Path

from dbcli.imaging import IMAGE_EXTENSIONS, read_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_images_are_shipped_and_decode():
    images = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    assert len(images) >= 4, images
    for path in images:
        assert path.stat().st_size < 300 * 1024, path
        image = read_image(path)
        h, w = image.shape[:2]
        assert max(h, w) <= 1280 and min(h, w) >= 600, (path, image.shape)
        assert image.std() > 10  # not blank
    assert (EXAMPLES / "make_examples.py").is_file()


def test_the_example_pdf_is_made_by_make_examples(tmp_path):
    """examples/newsletter.pdf is what make_examples.py writes (no OpenCV in it: byte for byte), and
    PDFium reads its two A4 pages."""
    import importlib.util

    import pytest

    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import numpy as np

    made = module.pdf_document(module.newsletter_pages(np.random.default_rng(2000)))
    assert made == (EXAMPLES / "newsletter.pdf").read_bytes()
    pytest.importorskip("pypdfium2")
    from dbcli.engine.pdf import pdf_pages, render_page

    pages = pdf_pages(EXAMPLES / "newsletter.pdf", dpi=72)
    assert len(pages) == 2
    image, info = render_page(pages[0])
    assert (info.width_pt, info.height_pt) == pytest.approx((595.28, 841.89), abs=0.01)
    assert abs(image.shape[0] - 841.89) < 1 and abs(image.shape[1] - 595.28) < 1  # 1 px per point
    assert image.std() > 10
