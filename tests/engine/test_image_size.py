"""The megapixel limit holds for every format, whoever decodes it (issue 37, item 2): the size is read
from the header before decoding (Pillow's, else ``dbcli.image_size``'s parsers for the formats only
OpenCV reads), and a file whose size no header gives is refused, never decoded to find out."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from dbcli.errors import DBNetError
from dbcli.image_size import file_size, netpbm_size, radiance_size, tiff_size
from dbcli.imaging import UNKNOWN_SIZE_WORDS, decode_image
from dbcli.serve.answers import _check_header
from dbcli.serve.uploads import Part, UploadError


def radiance(path: Path, width: int, height: int) -> Path:
    """A Radiance header claiming ``width`` x ``height`` followed by a few bytes (a bomb's header)."""
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode() + b"\0" * 64)
    return path


def big_tiff(path: Path, width: int, height: int) -> Path:
    """A little-endian BigTIFF header whose first image is ``width`` x ``height`` float64 (no data)."""
    entries = [(256, 16, 1, width), (257, 16, 1, height), (258, 3, 1, 64), (339, 3, 1, 3)]
    body = struct.pack("<Q", len(entries)) + b"".join(struct.pack("<HHQQ", *e) for e in entries) + b"\0" * 8
    path.write_bytes(b"II+\0" + struct.pack("<HHQ", 8, 0, 16) + body)
    return path


@pytest.fixture
def no_opencv_decoding(monkeypatch):
    """Fail the test if OpenCV decodes anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("OpenCV decoded a file whose size was over the limit")

    monkeypatch.setattr(cv2, "imread", refuse)


def test_header_parsers_read_the_size_of_files_opencv_writes(tmp_path):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "f.tiff"), rng.random((40, 60)))  # float64: Pillow refuses it
    cv2.imwrite(str(tmp_path / "f.hdr"), rng.random((40, 60, 3)).astype(np.float32))
    cv2.imwrite(str(tmp_path / "f.pfm"), rng.random((40, 60, 3)).astype(np.float32))
    cv2.imwrite(str(tmp_path / "f.pam"), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    for name in ("f.tiff", "f.hdr", "f.pfm", "f.pam"):
        assert file_size(tmp_path / name) == (60, 40), name
    assert tiff_size(big_tiff(tmp_path / "b.tif", 15000, 12000)) == (15000, 12000)
    assert radiance_size(b"#?RGBE\n\n+X 30 -Y 20\n") == (30, 20)  # column-major order
    assert netpbm_size(b"P6\n# a comment 9 9\n 70 50\n255\n") == (70, 50)
    assert netpbm_size(b"not a header") is None and radiance_size(b"#?RADIANCE\n\n-Y 4\n") is None


@pytest.mark.parametrize("maker", [lambda p: radiance(p / "bomb.hdr", 20000, 20000),
                                   lambda p: big_tiff(p / "bomb.tif", 15000, 15000)])
def test_formats_only_opencv_reads_are_refused_from_their_header(tmp_path, maker, no_opencv_decoding):
    bomb = maker(tmp_path)
    with pytest.raises(DBNetError) as err:
        decode_image(bomb, max_megapixels=200)
    message = str(err.value)
    assert str(bomb) in message and "megapixel limit" in message and "\n" not in message


def test_within_the_limit_they_still_decode(tmp_path):
    path = tmp_path / "f.tiff"
    cv2.imwrite(str(path), np.full((40, 60), 0.5))
    image, _ = decode_image(path, max_megapixels=0.01)
    assert image.shape == (40, 60, 3) and image[0, 0, 0] == 128


def test_a_file_opencv_reads_without_a_readable_size_is_refused(tmp_path, monkeypatch, no_opencv_decoding):
    path = radiance(tmp_path / "odd.hdr", 20, 10)
    path.write_bytes(path.read_bytes().replace(b"-Y 10 +X 20", b"-Y 10 -Y 20"))  # no size line left
    monkeypatch.setattr(cv2, "haveImageReader", lambda name: True)
    with pytest.raises(DBNetError, match=UNKNOWN_SIZE_WORDS):
        decode_image(path)


def test_serve_uploads_use_the_same_check(tmp_path, no_opencv_decoding):
    bomb = radiance(tmp_path / "upload-1", 20000, 20000)
    with pytest.raises(UploadError) as err:
        _check_header(Part(bomb, "photo.hdr", False), 50.0)
    assert err.value.status == 413 and "photo.hdr" in str(err.value) and "upload-1" not in str(err.value)


def test_a_refused_input_gives_its_memory_back(tmp_path, monkeypatch, no_opencv_decoding):
    import dbcli.cpu
    from dbcli.engine.pipeline import run_pipeline
    from dbcli.engine.records import Failure
    from dbcli.engine.settings import Settings

    calls = []
    monkeypatch.setattr(dbcli.cpu, "give_back_memory", lambda: calls.append(1))
    bomb = radiance(tmp_path / "bomb.hdr", 20000, 20000)
    records = list(run_pipeline([bomb], None, Settings()))
    assert isinstance(records[0], Failure) and "megapixel limit" in records[0].message and calls == [1]
