"""Test helpers for ``dbnet serve``: start the real server (``python -m dbcli.cli serve``) on a free
local port in a process of its own, and talk to it over HTTP with the standard library."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from planted_model import rect_image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 120) -> tuple[int, dict, object]:
        """``(status, headers, body)``; the body parsed as JSON when it is JSON."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            heads = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        if heads.get("content-type", "").startswith("application/json"):
            return response.status, heads, json.loads(data)
        return response.status, heads, data

    def detect(self, data: bytes, name: str = "image.png", query: str = "", fields: dict | None = None,
               raw: bool = False) -> tuple[int, dict, object]:
        """POST /detect: ``data`` as the multipart field ``file`` (or the raw body when ``raw``)."""
        if raw:
            return self.request("POST", f"/detect?{query}", data, {"Content-Type": "application/octet-stream"})
        body, content_type = multipart(data, name, fields or {})
        return self.request("POST", f"/detect?{query}", body, {"Content-Type": content_type})

    def health(self) -> dict:
        status, _, body = self.request("GET", "/health")
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def multipart(data: bytes, name: str, fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body with the file field ``file`` and text ``fields``."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def start_server(args: list[str], log: Path, timeout: float = 120, env: dict | None = None) -> Server:
    """``dbnet serve ARGS --port <free>`` from this checkout (``env``: more environment variables);
    returns once ``/health`` answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "DBNET_PROGRESS": "0", **(env or {})}
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dbcli.cli", "serve", *args, "--port", str(port)],
                            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    out.close()
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dbnet serve exited ({proc.returncode}):\n{log.read_text()}")
        try:
            server.health()
            return server
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"dbnet serve did not answer within {timeout} s:\n{log.read_text()}")


def wait_until(condition, timeout: float = 60, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


# request bodies shared by the serve tests
RECTS = [(20, 30, 140, 60), (60, 100, 230, 130)]


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def pdf(pages: int, size: tuple[int, int] = (300, 200)) -> bytes:
    """A PDF of ``pages`` pages, each a 72 dpi image of dark rectangles (one point per pixel)."""
    w, h = size
    images = [Image.fromarray(rect_image(w, h, [(30, 40, 150, 70), (60, 120, 260, 150)])) for _ in range(pages)]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=72.0)
    return out.getvalue()
