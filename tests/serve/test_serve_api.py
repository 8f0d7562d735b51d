"""``dbnet serve``'s answers for an operator and a program, over real HTTP: JSON / base64 input and
several files per request (one entry each, as ``dbnet detect`` writes them), ``/livez``,
``/readyz``, the access log line (id, status, bytes, queue wait, service time), ``/metrics`` in the
Prometheus text format, the OpenAPI description; and the scheduler's deadline and drain with an
engine held by the test (no HTTP)."""

from __future__ import annotations

import base64
import json
import re
import threading

import pytest
from planted_model import match_rects, planted_files, rect_image
from serve_client import RECTS, pdf, png, start_server

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

OTHER = [(30, 20, 200, 50)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    files = planted_files(tmp_path_factory.getbasetemp() / "planted-api")
    srv = start_server(["--weights", str(files["pt"]), "--device", "cpu", "--max-files", "3"],
                       tmp_path_factory.mktemp("api") / "server.log")
    yield srv
    srv.stop()


def _json(srv, payload: object, query: str = "") -> tuple[int, dict, object]:
    return srv.request("POST", f"/detect{query}", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def test_json_input_with_base64_and_options(server):
    image = png(rect_image(260, 170, RECTS))
    status, _, body = _json(server, {"image": base64.b64encode(image).decode(), "filename": "sign.png",
                                     "options": {"polygon": True, "box_thresh": 0.55}})
    assert status == 200, body
    assert body["images"][0]["file"] == "sign.png" and match_rects(body["images"][0]["detections"], RECTS)
    assert body["settings"]["polygon"] is True and body["settings"]["box_thresh"] == 0.55
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()  # a data URL is taken too
    status, _, same = _json(server, {"image": data_url, "filename": "sign.png", "options": {"polygon": True,
                                                                                            "box_thresh": 0.55}})
    assert status == 200 and same["images"] == body["images"]
    for payload, words in [({"image": "not base64!"}, "image: not valid base64"),
                           ({"picture": "x"}, "image: expected a base64 string"), ([1, 2], "must be an object"),
                           ({"image": "", "options": {"thresh": 3}}, "thresh must lie in [0, 1]")]:
        status, _, body = _json(server, payload)
        assert status in (400, 422) and words in body["error"], (payload, body)
    status, _, body = server.request("POST", "/detect", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in body["error"]


def test_several_files_get_one_entry_each(server):
    first, second = png(rect_image(260, 170, RECTS)), png(rect_image(240, 120, OTHER))
    status, _, body = _json(server, {"images": [{"image": base64.b64encode(first).decode(), "filename": "a.png"},
                                                {"image": base64.b64encode(second).decode(), "filename": "a.png"},
                                                {"image": base64.b64encode(pdf(2)).decode(), "filename": "r.pdf"}]})
    assert status == 200, body
    assert [e["file"] for e in body["images"]] == ["a.png", "a-2.png", "r.pdf#page=1", "r.pdf#page=2"]
    assert match_rects(body["images"][0]["detections"], RECTS) and match_rects(body["images"][1]["detections"], OTHER)
    # the same as multipart fields
    boundary = "b0undary"
    head = '--{}\r\nContent-Disposition: form-data; name="file"; filename="{}"\r\n\r\n'
    parts = [head.format(boundary, n).encode() + d + b"\r\n" for n, d in (("x.png", first), ("y.png", second))]
    data = b"".join(parts) + f"--{boundary}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    status, _, form = server.request("POST", "/detect", data, {"Content-Type": content_type})
    assert status == 200 and [e["file"] for e in form["images"]] == ["x.png", "y.png"]
    assert form["images"][1]["detections"] == body["images"][1]["detections"]
    status, _, body = _json(server, {"images": [{"image": base64.b64encode(first).decode()}] * 4})
    assert status == 400 and "1 to 3" in body["error"]  # --max-files 3


def test_probes_access_log_and_metrics(server):
    assert server.request("GET", "/livez")[:3:2] == (200, {"status": "alive"})
    status, _, body = server.request("GET", "/readyz")
    assert status == 200 and body["status"] == "ready"
    status, headers, body = server.request("POST", "/detect", png(rect_image(260, 170, RECTS)),
                                           {"Content-Type": "image/png", "X-Request-ID": "trace-42"})
    assert status == 200 and headers["x-request-id"] == "trace-42"
    server.detect(b"not an image", "bad.jpg")
    status, headers, _ = server.request("GET", "/livez", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{16}", headers["x-request-id"])  # not a token: a new id
    log = server.log.read_text()
    line = next(ln for ln in log.splitlines() if "id=trace-42 " in ln)
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    assert fields["status"] == "200" and int(fields["bytes"]) > 100
    assert float(fields["queue_wait"]) >= 0 and float(fields["service"]) > 0 and float(fields["total"]) > 0
    status, headers, text = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    metrics = text.decode()
    count = re.search(r'dbnet_requests_total\{route="/detect",status="200"\} (\S+)', metrics)
    assert count and float(count.group(1)) >= 1
    assert re.search(r'dbnet_requests_total\{route="/detect",status="422"\} 1\.0', metrics)
    for name in ("dbnet_request_seconds_bucket", "dbnet_queue_wait_seconds_count", "dbnet_service_seconds_sum",
                 "dbnet_queue_requests 0.0", "dbnet_queue_inputs 0.0"):
        assert name in metrics, name


def test_openapi_and_docs(server):
    status, _, spec = server.request("GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    detect = spec["paths"]["/detect"]["post"]
    assert {"thresh", "box_thresh", "dpi", "crops"} <= {p["name"] for p in detect["parameters"]}
    assert {"multipart/form-data", "application/json"} <= set(detect["requestBody"]["content"])
    assert {"200", "413", "503"} <= set(detect["responses"]) and "/readyz" in spec["paths"]
    status, headers, page = server.request("GET", "/docs")
    assert status == 200 and b"POST /detect" in page and b"openapi.json" in page


class HeldEngine:
    """A pipeline the test releases input by input: ``gate`` lets one engine call through."""

    def __init__(self):
        self.gate = threading.Semaphore(0)
        self.calls = 0

    def __call__(self, sources, model, settings, **kwargs):
        self.calls += 1
        self.gate.acquire()
        return [f"result of {s}" for s in sources]


def _job(n: int):
    from dbcli.serve.scheduler import Job

    return Job([f"input {k}" for k in range(n)], settings=None)


def test_scheduler_deadline_and_drain():
    from dbcli.serve.scheduler import Busy, Closed, Scheduler

    engine = HeldEngine()
    scheduler = Scheduler(model=None, max_jobs=4, max_batch=1, pipeline=engine, max_wait=0.05)
    first, second = scheduler.submit(_job(2)), scheduler.submit(_job(1))
    threading.Event().wait(0.2)  # `first`'s first input in the engine; `second` waits past max_wait ...
    engine.gate.release()
    assert isinstance(second.future.exception(timeout=10), Busy)  # ... so it is refused, not run
    engine.gate.release()
    assert first.future.result(timeout=10) == ["result of input 0", "result of input 1"]
    drained = Scheduler(model=None, max_jobs=4, max_batch=1, pipeline=engine)
    jobs = [drained.submit(_job(3)) for _ in range(2)]
    drained.drain(0.05)
    with pytest.raises(Closed):
        drained.submit(_job(1))
    for job in jobs:  # the engine call in flight never returns: every job still gets its answer
        assert isinstance(job.future.exception(timeout=10), Closed)
    assert drained.depth()[0] == 0 and engine.calls == 3  # nothing more went to the engine
    engine.gate.release()
    assert drained.close(10)
