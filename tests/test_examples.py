"""The example images shipped for newcomers (``dbnet detect examples/``)."""

from __future__ import annotations

from pathlib import Path

from dbcli.imaging import IMAGE_EXTENSIONS, read_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
