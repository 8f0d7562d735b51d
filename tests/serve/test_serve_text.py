"""``dbnet serve`` with ``text=true`` (query or a JSON body's options): each detection's ``text`` and
``text_score``, the same strings as ``dbnet detect --text`` / ``Detector(text=True)``; without it, no
text. The shipped ``general`` detector on a rendered page."""

from __future__ import annotations

import base64
import io
import json

import pytest
from serve_client import start_server
from text_pages import PAGE_LINES, text_page

from dbcli import Detector

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(["--weights", "general", "--backend", "torch", "--device", "cpu"],
                       tmp_path_factory.mktemp("serve-text") / "server.log")
    yield srv
    srv.stop()


def _png() -> bytes:
    out = io.BytesIO()
    text_page().save(out, "PNG")
    return out.getvalue()


def test_text_true_gives_the_api_strings(server, tmp_path):
    status, _, body = server.detect(_png(), "receipt.png", query="text=true")
    assert status == 200, body
    served = [(d["text"], d["text_score"]) for d in body["images"][0]["detections"]]  # type: ignore[index]
    (tmp_path / "receipt.png").write_bytes(_png())
    api = Detector("general", backend="torch", device="cpu", text=True)(str(tmp_path / "receipt.png"))
    assert [t for t, _ in served] == [d.text for d in api.detections] == PAGE_LINES
    assert [s for _, s in served] == [round(d.text_score, 4) for d in api.detections]


def test_json_option_and_no_text_by_default(server):
    payload = {"image": base64.b64encode(_png()).decode(), "filename": "r.png", "options": {"text": "true"}}
    status, _, body = server.request("POST", "/detect", json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})
    assert status == 200, body
    assert [d["text"] for d in body["images"][0]["detections"]] == PAGE_LINES  # type: ignore[index]
    status, _, body = server.detect(_png(), "receipt.png")
    assert status == 200 and all("text" not in d for d in body["images"][0]["detections"])  # type: ignore[index]
