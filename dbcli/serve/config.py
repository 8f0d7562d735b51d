"""The service's start-up settings: the model (weights, backend, device), the defaults of the
per-request options, and the limits that keep memory bounded under load and bad input."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from dbcli.errors import DBNetError

CONFIG_ENV = "DBNET_SERVE_CONFIG"  # how `uvicorn --factory dbcli.serve.app:app_from_env` gets its config


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``dbnet serve`` is started with.

    Model: ``weights`` (a shipped name or file; None: the default), ``device``, ``backend``,
    ``precision``, as for ``dbnet detect``. Request defaults (a request may override them, within
    the limits): ``short_side``, ``max_side`` (pixels; also the largest a request may ask for),
    ``thresh``, ``box_thresh``, ``unclip_ratio``, ``polygon``, ``max_candidates`` (also the most a
    request may ask for), ``sort``, ``dpi`` (PDF pages), ``exif``. Server-only: ``batch_size``
    (images per network call; None: 8 on CUDA, 1 on a CPU).

    Limits: ``max_upload_mb`` (request body, MB = 10^6 bytes; more is a 413), ``max_megapixels``
    (decoded image or rendered page, million pixels; more is a 413), ``max_pages`` (PDF pages per
    request), ``max_queue`` (requests admitted at once, running or waiting; one more is a 503 with
    ``Retry-After``), ``max_batch`` (images the worker hands the engine in one call, taken from
    every waiting request with the same options: the micro-batch; 1 turns it off),
    ``drain_timeout`` (seconds SIGTERM waits for requests in flight). ``host`` / ``port`` /
    ``workers``: where uvicorn listens and how many processes (each loads its own model).
    """

    weights: str | None = None
    device: str = "auto"
    backend: str | None = None
    precision: str = "fp32"
    short_side: int | None = None
    max_side: int | None = None
    thresh: float | None = None
    box_thresh: float | None = None
    unclip_ratio: float | None = None
    polygon: bool | None = None
    max_candidates: int | None = None
    sort: str = "lines"
    dpi: float = 144.0
    exif: bool = True
    batch_size: int | None = None
    max_upload_mb: float = 50.0
    max_megapixels: float = 50.0
    max_pages: int = 100
    max_queue: int = 32
    max_batch: int | None = None
    drain_timeout: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    def __post_init__(self) -> None:
        positive = {"max_upload_mb": self.max_upload_mb, "max_megapixels": self.max_megapixels,
                    "max_pages": self.max_pages, "max_queue": self.max_queue, "dpi": self.dpi,
                    "workers": self.workers, "max_batch": 1 if self.max_batch is None else self.max_batch}
        for name, value in positive.items():
            if not value > 0:
                raise DBNetError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.drain_timeout < 0:
            raise DBNetError(f"--drain-timeout must be at least 0, got {self.drain_timeout}")
        if not 0 <= self.port <= 65535:
            raise DBNetError(f"--port must lie in [0, 65535], got {self.port}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    def to_env(self) -> str:
        """The config as JSON, for ``CONFIG_ENV`` (uvicorn's worker processes read it)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The config in ``$DBNET_SERVE_CONFIG`` (JSON of ``ServeConfig`` fields; unset: the defaults).
        Raises ``DBNetError`` for bad JSON or an unknown field."""
        text = os.environ.get(CONFIG_ENV, "").strip()
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DBNetError(f"${CONFIG_ENV}: not JSON ({exc})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known) if isinstance(data, dict) else ["(not an object)"]
        if unknown:
            raise DBNetError(f"${CONFIG_ENV}: unknown settings {', '.join(unknown)} ({', '.join(sorted(known))})")
        return cls(**data)
