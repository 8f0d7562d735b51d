"""The access log and ``/metrics``: one line and one set of observations per request.

``AccessLog`` is an ASGI middleware: it gives each request an id (the client's ``X-Request-ID`` when
it is a short token, else a new one; sent back in ``X-Request-ID``), and when the answer is sent it
logs one line (logger ``dbnet.serve.access``)::

    id=3f2a9c1e0b7d4a55 POST /detect status=200 bytes=1834 queue_wait=0.004 service=0.312 total=0.341 client=127.0.0.1

(seconds; ``queue_wait`` / ``service``: admission to the first engine call / first engine call to
the answer, ``-`` for requests that never reached the queue; the probes' 200s at DEBUG level) and
feeds ``Metrics``: a registry of
its own (``prometheus-client``, no global state) served as the Prometheus text format.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

ROUTES = ("/", "/detect", "/health", "/livez", "/readyz", "/metrics", "/openapi.json", "/docs")
PROBES = ("/livez", "/readyz", "/health", "/metrics")  # logged at DEBUG when they answer 200
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("dbnet.serve.access")


class Metrics:
    """Counters and histograms of the requests; ``depth`` returns ``(requests admitted, inputs
    waiting)`` and ``held`` the upload bytes held, read at each scrape."""

    def __init__(self, depth: Callable[[], tuple[int, int]], held: Callable[[], int]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("dbnet_requests", "Requests answered, by route and status.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("dbnet_request_seconds", "Time from the request's arrival to its answer.",
                                 ["route"], buckets=SECONDS, registry=r)
        self.queue_wait = Histogram("dbnet_queue_wait_seconds", "Time from admission to the first engine call.",
                                    buckets=SECONDS, registry=r)
        self.service = Histogram("dbnet_service_seconds", "Time from the first engine call to the answer.",
                                 buckets=SECONDS, registry=r)
        self.rejected = Counter("dbnet_rejected", "503 answers, by reason.", ["reason"], registry=r)
        Gauge("dbnet_queue_requests", "Requests admitted (running or waiting).",
              registry=r).set_function(lambda: depth()[0])
        Gauge("dbnet_queue_inputs", "Images and pages admitted and not done.",
              registry=r).set_function(lambda: depth()[1])
        Gauge("dbnet_upload_bytes", "Bytes held by uploads in progress or admitted.",
              registry=r).set_function(held)

    def observe(self, route: str, status: int, seconds: float, state: dict) -> None:
        """Count one answer; ``state``: the request's ``queue_wait`` / ``service_time`` / ``rejected``."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if state.get("queue_wait") is not None:
            self.queue_wait.observe(state["queue_wait"])
        if state.get("service_time") is not None:
            self.service.observe(state["service_time"])
        if status == 503:
            self.rejected.labels(state.get("rejected", "other")).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


def _request_id(scope: dict) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex[:16]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class AccessLog:
    """ASGI middleware: the request id, the access log line and the metrics (see the module doc).
    ``metrics``: a callable returning the app's ``Metrics`` (None before the model is loaded)."""

    def __init__(self, app: Any, metrics: Callable[[], Metrics | None]):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        rid = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        sent = {"status": 0, "bytes": 0}

        async def send_and_count(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            self._record(scope, state, sent, time.monotonic() - started)

    def _record(self, scope: dict, state: dict, sent: dict, seconds: float) -> None:
        path = scope.get("path", "")
        client = (scope.get("client") or ("-",))[0]
        quiet = path in PROBES and sent["status"] == 200  # a probe every few seconds: not worth a line
        access_log.log(logging.DEBUG if quiet else logging.INFO,
                       "id=%s %s %s status=%d bytes=%d queue_wait=%s service=%s total=%.3f client=%s",
                       state["request_id"], scope.get("method", "-"), path[:200], sent["status"], sent["bytes"],
                       _seconds(state.get("queue_wait")), _seconds(state.get("service_time")), seconds, client)
        metrics = self.metrics()
        if metrics is not None:
            metrics.observe(path if path in ROUTES else "other", sent["status"], seconds, state)
