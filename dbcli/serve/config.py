"""The service's start-up settings: the model (weights, backend, device), the defaults of the
per-request options, and the limits that keep memory bounded under load and bad input."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError

CONFIG_ENV = "DBNET_SERVE_CONFIG"  # how `uvicorn --factory dbcli.serve.app:app_from_env` gets its config
MIN_DPI = 18  # a US-letter page is 153 x 198 pixels at 18 dpi
MAX_DPI = 1200  # the most a request may ask for (and the server's default must lie within)
FINITE = ("max_upload_mb", "max_uploads_mb", "max_megapixels", "dpi")  # inf would lift the limit (or overflow)


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``dbnet serve`` is started with.

    ``inference``: the model (weights, backend, device, precision) and the defaults of the
    per-request options, as for ``dbnet detect`` (``InferenceOptions``); a request may override the
    post-processing, scale and order options within the limits (``max_side`` and ``max_candidates``
    are also the most a request may ask for). ``dpi``: PDF pages' default rendering.

    Limits: ``max_upload_mb`` (request body, MB = 10^6 bytes; more is a 413), ``max_megapixels``
    (decoded image or rendered page, million pixels; more is a 413), ``max_pages`` (PDF pages per
    request), ``max_queue`` (requests admitted at once, running or waiting; one more is a 503 with
    ``Retry-After``), ``max_batch`` (images the worker hands the engine in one call, taken from
    every waiting request with the same options: the micro-batch; 1 turns it off),
    ``drain_timeout`` (seconds SIGTERM waits for requests in flight; those not done by then get a
    503). ``host`` / ``port`` / ``workers``: where uvicorn listens and how many processes (each
    loads its own model).

    Connections and time (``protocol``, ``uploads``, ``spool``): ``max_wait`` (seconds a request may wait for the
    engine: one that would wait longer gets a 503 with ``Retry-After`` at once), ``max_connections``
    (open connections at once; more get uvicorn's plain 503), ``header_timeout`` (seconds for a
    request's head to arrive, from the connection's opening or its previous answer),
    ``body_timeout`` (seconds for a whole body; more is a 408), ``keep_alive`` (seconds an idle
    keep-alive connection stays open), ``max_uploads_mb`` (MB held by every upload in progress or
    admitted together; more is a 503), ``max_files`` (files per request), ``spool`` (the folder
    under which uploads are kept; None: the system's temp folder).
    """

    inference: InferenceOptions = field(default_factory=InferenceOptions)
    dpi: float = 144.0
    max_upload_mb: float = 50.0
    max_megapixels: float = 50.0
    max_pages: int = 100
    max_queue: int = 32
    max_batch: int | None = None
    drain_timeout: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_wait: float = 10.0
    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive: float = 5.0
    max_uploads_mb: float = 200.0
    max_files: int = 16
    spool: str | None = None

    def __post_init__(self) -> None:
        positive = {"max_upload_mb": self.max_upload_mb, "max_megapixels": self.max_megapixels,
                    "max_pages": self.max_pages, "max_queue": self.max_queue, "dpi": self.dpi,
                    "workers": self.workers, "max_batch": 1 if self.max_batch is None else self.max_batch,
                    "max_wait": self.max_wait, "max_connections": self.max_connections,
                    "header_timeout": self.header_timeout, "body_timeout": self.body_timeout,
                    "keep_alive": self.keep_alive, "max_uploads_mb": self.max_uploads_mb,
                    "max_files": self.max_files}
        for name, value in positive.items():
            if not isinstance(value, int | float) or not value > 0:
                raise DBNetError(f"--{name.replace('_', '-')} must be positive, got {value!r}")
            if name in FINITE and not math.isfinite(value):
                raise DBNetError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not MIN_DPI <= self.dpi <= MAX_DPI:
            raise DBNetError(f"--dpi must lie in [{MIN_DPI}, {MAX_DPI}] (what a request may ask for), "
                             f"got {self.dpi:g}")
        if self.drain_timeout < 0:
            raise DBNetError(f"--drain-timeout must be at least 0, got {self.drain_timeout}")
        if self.max_uploads_mb < self.max_upload_mb:
            raise DBNetError(f"--max-uploads-mb ({self.max_uploads_mb:g}) must be at least --max-upload-mb "
                             f"({self.max_upload_mb:g}): else no upload of the largest size could ever be taken")
        if not 0 <= self.port <= 65535:
            raise DBNetError(f"--port must lie in [0, 65535], got {self.port}")

    @property
    def model_options(self) -> InferenceOptions:
        """``inference`` with the server's megapixel limit: what the model is loaded and run with."""
        from dataclasses import replace

        return replace(self.inference, max_megapixels=self.max_megapixels)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    @property
    def max_uploads_bytes(self) -> int:
        return int(self.max_uploads_mb * 1e6)

    def to_env(self) -> str:
        """The config as JSON, for ``CONFIG_ENV`` (uvicorn's worker processes read it)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The config in ``$DBNET_SERVE_CONFIG`` (JSON of ``ServeConfig`` fields, ``inference`` an object
        of ``InferenceOptions`` fields; unset: the defaults). Raises ``DBNetError`` for bad JSON or an
        unknown field."""
        text = os.environ.get(CONFIG_ENV, "").strip()
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DBNetError(f"${CONFIG_ENV}: not JSON ({exc})") from None
        data = _known(data, cls, CONFIG_ENV)
        try:
            if "inference" in data:
                inference = _known(data["inference"], InferenceOptions, f"{CONFIG_ENV}.inference")
                data["inference"] = InferenceOptions(**inference)
            return cls(**data)
        except DBNetError as exc:
            raise DBNetError(f"${CONFIG_ENV}: {exc}") from None
        except (TypeError, ValueError) as exc:  # a value of the wrong type
            raise DBNetError(f"${CONFIG_ENV}: bad value ({exc})") from None


def _known(data: object, cls: type, where: str) -> dict:
    """``data`` when it is an object whose keys are fields of ``cls``, else ``DBNetError``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known) if isinstance(data, dict) else ["(not an object)"]
    if unknown:
        raise DBNetError(f"${where}: unknown settings {', '.join(unknown)} ({', '.join(sorted(known))})")
    return dict(data)  # type: ignore[call-overload]
