"""``dbnet serve`` under what an operator meets in production, over real HTTP (the real server in a
process of its own, the planted model): a flood of idle connections and held uploads leaves
``/readyz`` and a real request reachable and is shed by the header / body timeouts; the upload byte
budget; ``--max-wait``; SIGTERM with more work than the drain allows (JSON 503s, never a 500, no
folder left); the stale folders of a killed run removed at start-up, nothing else."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest
from planted_model import match_rects, planted_files, rect_image
from serve_client import RECTS, multipart, pdf, png, start_server, wait_until

pytest.importorskip("uvicorn")
pytest.importorskip("pypdfium2")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted-limits")


def _open(port: int, head: bytes = b"") -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port))
    if head:
        conn.sendall(head)
    return conn


def _closed_by_server(conn: socket.socket, timeout: float = 30) -> bytes | None:
    """What the server sent before closing ``conn`` (None: still open after ``timeout`` s)."""
    conn.settimeout(timeout)
    data = b""
    try:
        while part := conn.recv(65536):
            data += part
    except socket.timeout:
        return None
    except OSError:
        pass
    return data


def test_idle_connections_and_held_uploads_leave_readyz_and_requests_through(model_files, tmp_path):
    srv = start_server(["--weights", str(model_files["pt"]), "--device", "cpu", "--max-upload-mb", "1",
                        "--max-uploads-mb", "4", "--header-timeout", "3", "--body-timeout", "4"],
                       tmp_path / "server.log", env={"TMPDIR": str(tmp_path)})
    idle, held, refused = [], [], []
    try:
        idle = [_open(srv.port) for _ in range(200)]
        slow_head = _open(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never ends its head
        for _ in range(20):  # 0.9 MB declared each, 1 KB sent: 4 fit in the 4 MB budget
            conn = _open(srv.port, b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                                   b"Content-Length: 900000\r\n\r\n" + b"x" * 1024)
            held.append(conn)
        assert wait_until(lambda: srv.request("GET", "/metrics")[2].count(b'reason="uploads"') > 0, timeout=30)
        status, _, body = srv.request("GET", "/readyz", timeout=10)
        assert status == 200 and body["status"] == "ready"
        status, _, body = srv.detect(png(rect_image(260, 170, RECTS)), "page.png")
        assert status == 200 and match_rects(body["images"][0]["detections"], RECTS)
        answers = [_closed_by_server(c) for c in held]  # the budget's 503s at once, the rest's 408 at the deadline
        statuses = sorted(a.split(b" ", 2)[1].decode() for a in answers if a)
        assert statuses == ["408"] * 4 + ["503"] * 16, statuses
        refused = [a for a in answers if a and a.split(b" ", 2)[1] == b"503"]
        assert all(b'"status":503' in a and b"retry-after" in a.lower() for a in refused)
        assert _closed_by_server(slow_head) == b""  # closed, no answer: the head never came
        assert all(_closed_by_server(c) == b"" for c in idle[:20])  # the idle ones too
        status, _, body = srv.request("GET", "/metrics")
        assert b"dbnet_upload_bytes 0.0" in body  # every byte given back
    finally:
        for conn in idle + held:
            conn.close()
        assert srv.stop() == 0
    assert list((tmp_path / "dbnet-serve").iterdir()) == []  # the process's own folder removed


def _post_pdf(srv, pages: int, results: list, dpi: str = "144") -> threading.Thread:
    data, content_type = multipart(pdf(pages), "long.pdf", {"dpi": dpi})
    thread = threading.Thread(target=lambda: results.append(
        srv.request("POST", "/detect", data, {"Content-Type": content_type})))
    thread.start()
    return thread


def test_a_request_that_would_wait_past_max_wait_gets_503_at_once(model_files, tmp_path):
    srv = start_server(["--weights", str(model_files["pt"]), "--device", "cpu", "--max-wait", "0.2",
                        "--max-pages", "100"], tmp_path / "server.log")
    try:
        results: list = []
        thread = _post_pdf(srv, 60, results, dpi="200")
        assert wait_until(lambda: srv.health()["queue"]["images_done"] > 2, timeout=60)
        status, headers, body = srv.detect(png(rect_image(260, 170, RECTS)))
        assert status == 503 and int(headers["retry-after"]) >= 1 and "wait" in body["error"]
        status, _, body = srv.request("GET", "/readyz")
        assert status == 503 and body["status"] == "busy"
        thread.join(300)
        assert results[0][0] == 200 and len(results[0][2]["images"]) == 60
        assert wait_until(lambda: srv.request("GET", "/readyz")[0] == 200, timeout=30)
    finally:
        srv.stop()


def test_sigterm_with_more_work_than_the_drain_allows(model_files, tmp_path):
    srv = start_server(["--weights", str(model_files["pt"]), "--device", "cpu", "--drain-timeout", "1",
                        "--max-queue", "8", "--max-pages", "100", "--max-wait", "600"],
                       tmp_path / "server.log", env={"TMPDIR": str(tmp_path)})
    results: list = []
    try:
        threads = [_post_pdf(srv, 60, results, dpi="200") for _ in range(4)]
        assert wait_until(lambda: srv.health()["queue"]["requests"] == 4, timeout=60)
        assert len(list((tmp_path / "dbnet-serve").glob("*/*"))) == 4  # the uploads' folders
        srv.proc.terminate()
        for thread in threads:
            thread.join(120)
        assert srv.proc.wait(60) == 0
    finally:
        srv.stop()
    statuses = sorted(r[0] for r in results)
    assert 503 in statuses and set(statuses) <= {200, 503}, statuses  # never a 500
    for status, headers, body in results:
        if status == 503:
            assert body["status"] == 503 and "shutting down" in body["error"] and headers["retry-after"].isdigit()
    assert list((tmp_path / "dbnet-serve").iterdir()) == []
    log = srv.log.read_text()
    assert "Traceback" not in log and "CancelledError" not in log


def test_stale_folders_of_a_killed_run_are_removed_at_start_only(model_files, tmp_path):
    root = tmp_path / "dbnet-serve"
    root.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = root / f"{gone.pid}-0badf00d"
    (stale / "tmpabc").mkdir(parents=True)
    (stale / "tmpabc" / "big.pdf").write_bytes(b"%PDF-1.4 left by SIGKILL")
    live = root / f"{os.getpid()}-12345678"  # a live process's (this test's): kept
    live.mkdir()
    other = root / "not-dbnets"  # not named as dbnet names its folders: kept
    other.mkdir()
    srv = start_server(["--weights", str(model_files["pt"]), "--device", "cpu"], tmp_path / "server.log",
                       env={"TMPDIR": str(tmp_path)})
    try:
        assert not stale.exists() and live.is_dir() and other.is_dir()
        own = [p for p in root.iterdir() if p.name.startswith(f"{srv.proc.pid}-")]
        assert len(own) == 1
    finally:
        srv.proc.kill()  # SIGKILL: its folder stays ...
        srv.proc.wait()
    assert own[0].is_dir()
    again = start_server(["--weights", str(model_files["pt"]), "--device", "cpu"], tmp_path / "again.log",
                         env={"TMPDIR": str(tmp_path)})
    try:
        assert not own[0].exists()  # ... until the next start
    finally:
        again.stop()
