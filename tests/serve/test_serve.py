"""``dbnet serve`` over HTTP: the real server (a process of its own, on a free local port, the planted
model of ``planted_model``) and a client speaking HTTP. The answers are ``dbnet detect``'s JSON for
the same file; bad uploads get the CLI's one-line messages as 4xx; limits, a full queue, a client
that goes away and SIGTERM behave as documented."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import runner
from planted_model import match_rects, planted_files, rect_image
from serve_client import RECTS, multipart, pdf, png, start_server, wait_until

from dbcli import DBNetError, Detector, __version__
from dbcli.cli import app

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("multipart")  # python-multipart
pytest.importorskip("pypdfium2")

MAX_PAGES = 40


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture(scope="module")
def server(model_files, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    srv = start_server(["--weights", str(model_files["pt"]), "--device", "cpu", "--max-queue", "2",
                        "--max-batch", "4", "--max-upload-mb", "1", "--max-megapixels", "1",
                        "--max-pages", str(MAX_PAGES)], log)
    yield srv
    srv.stop()


def test_health_page_and_loopback_bind(server):
    health = server.health()
    assert health["status"] == "ok" and health["model_loaded"] and health["version"] == __version__
    assert health["queue"]["requests"] == 0 and health["limits"]["max_pages"] == MAX_PAGES
    status, headers, body = server.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<input type="file"' in body and b'fetch("detect"' in body
    try:  # bound to 127.0.0.1 only (not 0.0.0.0): its listening socket in the kernel's table
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    except OSError:
        pytest.skip("no /proc/net/tcp")
    listening = [r[1] for r in rows if r[3] == "0A" and r[1].endswith(f":{server.port:04X}")]
    assert listening == [f"0100007F:{server.port:04X}"]


def test_detect_answers_what_dbnet_detect_writes(server, model_files, tmp_path):
    image = rect_image(260, 170, RECTS)
    path = tmp_path / "page.png"
    path.write_bytes(png(image))
    out = tmp_path / "cli.json"
    result = runner.invoke(app, ["detect", str(path), "--weights", str(model_files["pt"]), "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    cli = json.loads(out.read_text())
    status, _, body = server.detect(path.read_bytes(), "page.png")
    assert status == 200, body
    assert isinstance(body, dict) and "warnings" not in body
    digest = hashlib.sha256(model_files["pt"].read_bytes()).hexdigest()[:16]
    assert body["model"] == {**cli["model"], "weights": "planted.pt", "weights_sha256": digest}  # no server path
    assert body["settings"] == cli["settings"]
    assert str(model_files["pt"].parent) not in json.dumps(body) + json.dumps(server.health())
    assert body["images"] == [{**cli["images"][0], "file": "page.png"}]  # the file as uploaded
    assert match_rects(body["images"][0]["detections"], RECTS)
    status, _, raw = server.detect(path.read_bytes(), raw=True, query="filename=page.png")
    assert status == 200 and raw == body  # the raw body: the same answer


def test_request_options_are_those_of_dbnet_detect(server, model_files, tmp_path):
    image = png(rect_image(260, 170, RECTS))
    detector = Detector(model_files["pt"], device="cpu", polygon=True, box_thresh=0.55, sort="none")
    path = tmp_path / "a.png"
    path.write_bytes(image)
    expected = detector(path).to_dict()["detections"]
    by_query = server.detect(image, query="polygon=true&box-thresh=0.55&sort=none")
    by_form = server.detect(image, fields={"polygon": "1", "box_thresh": "0.55", "sort": "none"})
    for status, _, body in (by_query, by_form):
        assert status == 200, body
        assert body["images"][0]["detections"] == expected
        assert body["settings"]["polygon"] is True and body["settings"]["box_thresh"] == 0.55
    strict = server.detect(image, query="box_thresh=0.999")  # no region is that sure: none
    assert strict[0] == 200 and strict[2]["images"][0]["detections"] == []
    for query, words in [("thresh=2", "thresh must lie in [0, 1], got 2"), ("polygon=maybe", "polygon"),
                         ("colour=red", "unknown option 'colour'"), ("max_side=99999", "max_side: at most 4096"),
                         ("sort=diagonal", "unknown sort 'diagonal'"), ("dpi=1e-6", "dpi: must lie in [18, 1200]"),
                         ("box-thresh=-1", "box_thresh must lie in [0, 1]")]:
        status, _, body = server.detect(image, query=query)
        assert status == 400 and words in body["error"] and "\n" not in body["error"], (query, body)
        assert "--" not in body["error"], body  # HTTP terms: the query's names, not the CLI's flags


def test_crops_come_as_base64_pngs_in_reading_order(server, model_files, tmp_path):
    image = png(rect_image(260, 170, RECTS))
    status, _, body = server.detect(image, query="crops=true")
    assert status == 200, body
    path = tmp_path / "a.png"
    path.write_bytes(image)
    expected = Detector(model_files["pt"], device="cpu")(path, crops=True).crops  # the API's crops
    dets = body["images"][0]["detections"]
    assert expected is not None and len(dets) == len(expected) == 2
    for det, want in zip(dets, expected):
        head, data = det["crop"].split(",", 1)
        assert head == "data:image/png;base64"
        crop = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(crop[:, :, ::-1], want)
        assert want[want.shape[0] // 2, want.shape[1] // 2].mean() < 60  # the dark rectangle in the middle
    status, _, plain = server.detect(image)
    assert all("crop" not in d for d in plain["images"][0]["detections"])


def test_a_pdf_gives_one_entry_per_page(server):
    status, _, body = server.detect(pdf(2), "report.pdf", query="dpi=144")
    assert status == 200, body
    assert [e["file"] for e in body["images"]] == ["report.pdf#page=1", "report.pdf#page=2"]
    for number, entry in enumerate(body["images"], 1):
        assert entry["page"] == number and entry["dpi"] == 144 and entry["page_size_pt"] == [300, 200]
        assert (entry["width"], entry["height"]) == (600, 400)
        assert match_rects(entry["detections"], [(60, 80, 300, 140), (120, 240, 520, 300)], tol=12)
    # a PDF is known by its content too, sent raw without a name; images=true adds the rendered pages
    status, _, raw = server.detect(pdf(1), raw=True, query="images=true&dpi=72")
    assert status == 200 and raw["images"][0]["file"] == "upload#page=1"
    assert raw["images"][0]["image"].startswith("data:image/jpeg;base64,")


def test_bad_uploads_get_the_clis_one_line_messages(server, model_files, tmp_path):
    from generated_files import encrypted_pdf, raw_pdf

    good = png(rect_image(200, 150, RECTS[:1]))
    files = {"cut.png": good[: len(good) // 2], "empty.jpg": b"", "notes.jpg": b"this is not an image",
             "locked.pdf": encrypted_pdf(), "broken.pdf": b"%PDF-1.4\nthis is not a PDF body\n",
             "blank.pdf": raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])}
    detector = Detector(model_files["pt"], device="cpu")
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DBNetError) as cli:  # the engine's message, as dbnet detect prints it
            detector.pdf(path) if name.endswith(".pdf") else detector(path)
        status, _, body = server.detect(data, name)
        assert status == 422, (name, body)
        assert body["error"] == str(cli.value).replace(f"{tmp_path}/", ""), name
        assert body["error"].startswith(f"{name}: ") and "\n" not in body["error"]
    assert "truncated image file" in server.detect(files["cut.png"], "cut.png")[2]["error"]
    assert server.health()["queue"]["requests"] == 0
    status, _, body = server.detect(good, "a" * 5000 + ".png")  # a part's header over python-multipart's 4 KB
    assert status == 400 and body["error"].startswith("malformed multipart form: ") and "over 4 KB" in body["error"]


def test_limits_are_413s_with_a_message(server):
    big = png(np.full((1000, 1200, 3), 230, np.uint8))  # 1.2 megapixels in a small file
    status, _, body = server.detect(big, "wide.png")
    assert status == 413 and body["error"].startswith("wide.png: 1200x1000 pixels") and "1-megapixel" in body["error"]
    assert "--" not in body["error"] and "this server's limit" in body["error"]
    status, _, body = server.detect(pdf(1, (1200, 1000)), "poster.pdf", query="dpi=72")  # a page: the same
    assert status == 413 and body["error"].startswith("poster.pdf#page=1: 1200x1000 pixels")
    status, _, body = server.detect(pdf(MAX_PAGES + 1, (64, 64)), "book.pdf")
    assert status == 413 and f"{MAX_PAGES + 1} pages" in body["error"]
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), np.uint8)  # ~1.5 MB as PNG
    status, _, body = server.detect(png(noise), "noise.png")
    assert status == 413 and "1 MB limit" in body["error"]
    # without a Content-Length (chunked): refused once the limit is passed
    conn = socket.create_connection(("127.0.0.1", server.port))
    conn.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    try:
        for _ in range(40):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:
        pass  # the server answered and closed: what is checked below
    conn.settimeout(10)
    reply = b""
    while b"limit" not in reply and (part := conn.recv(65536)):
        reply += part
    conn.close()
    assert reply.startswith(b"HTTP/1.1 413") and b"1 MB limit" in reply
    assert server.health()["queue"]["requests"] == 0


def test_concurrent_requests_share_the_model_and_get_their_own_answers(server, model_files, tmp_path):
    cases = []
    for k in range(8):
        rects = [(10 + 8 * k, 20, 120 + 8 * k, 50)] + ([(40, 90, 200, 120)] if k % 2 else [])
        cases.append((png(rect_image(240 + 8 * k, 160, rects)), "box_thresh=0.5" if k % 3 else "sort=none", rects))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: server.detect(c[0], query=c[1]), cases))
    busy = [a for a in answers if a[0] == 503]
    assert all(a[0] in (200, 503) for a in answers), answers
    assert all(a[1]["retry-after"].isdigit() for a in busy)
    for (status, _, body), (_, _, rects) in zip(answers, cases):
        if status == 200:
            assert match_rects(body["images"][0]["detections"], rects)
    assert len(busy) < 8


def _long_request(server, pages: int, results: list) -> threading.Thread:
    data, content_type = multipart(pdf(pages), "long.pdf", {"dpi": "144"})
    thread = threading.Thread(target=lambda: results.append(
        server.request("POST", "/detect", data, {"Content-Type": content_type})))
    thread.start()
    return thread


def test_a_full_queue_is_a_503_with_retry_after(server):
    results: list = []
    threads = [_long_request(server, 12, results) for _ in range(2)]
    assert wait_until(lambda: server.health()["queue"]["requests"] == 2, timeout=30)
    status, headers, body = server.detect(png(rect_image(200, 150, RECTS)))
    assert status == 503 and int(headers["retry-after"]) >= 1 and "busy" in body["error"]
    for thread in threads:
        thread.join(120)
    assert [r[0] for r in results] == [200, 200] and all(len(r[2]["images"]) == 12 for r in results)


def test_a_client_that_goes_away_costs_at_most_the_batch_in_flight(server):
    before = server.health()["queue"]["images_done"]
    data, content_type = multipart(pdf(MAX_PAGES), "long.pdf", {"dpi": "144"})
    conn = socket.create_connection(("127.0.0.1", server.port))
    conn.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type.encode()
                 + b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    assert wait_until(lambda: server.health()["queue"]["images_done"] > before, timeout=30)
    conn.close()
    assert wait_until(lambda: server.health()["queue"]["requests"] == 0, timeout=60)
    done = server.health()["queue"]["images_done"] - before
    assert done <= 3 * 4 < MAX_PAGES  # the engine call in flight (--max-batch 4) and the next, not 40 pages
    status, _, body = server.detect(png(rect_image(260, 170, RECTS)))
    assert status == 200 and match_rects(body["images"][0]["detections"], RECTS)


def test_sigterm_drains_the_requests_in_flight(model_files, tmp_path):
    srv = start_server(["--weights", str(model_files["pt"]), "--device", "cpu", "--max-batch", "2"],
                       tmp_path / "server.log")
    try:
        results: list = []
        thread = _long_request(srv, 8, results)
        assert wait_until(lambda: srv.health()["queue"]["images_done"] > 0, timeout=30)
        srv.proc.terminate()  # SIGTERM
        thread.join(120)
        assert srv.proc.wait(60) == 0
    finally:
        srv.stop()
    assert results and results[0][0] == 200 and len(results[0][2]["images"]) == 8
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    assert "Traceback" not in srv.log.read_text()


def test_a_post_from_another_site_is_refused(server):
    """A web page of another site makes the browser send a ``text/plain`` POST (no CORS preflight)
    with its ``Origin``: refused with 403 before the body is read; the same request with this
    server's own origin is read (and answered as the upload it is)."""
    image = png(rect_image(120, 80, RECTS[:1]))
    status, _, body = server.request("POST", "/detect", image, {"Content-Type": "text/plain",
                                                                  "Origin": "https://evil.example"})
    assert status == 403 and "cross-origin" in body["error"], body
    own = f"http://127.0.0.1:{server.port}"
    status, _, body = server.request("POST", "/detect", image, {"Content-Type": "text/plain", "Origin": own})
    assert status != 403, body
