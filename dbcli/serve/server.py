"""Run the service under uvicorn: bind (127.0.0.1 unless told otherwise), serve, and on SIGTERM or
Ctrl-C stop accepting, let the requests in flight finish (at most ``drain_timeout`` seconds), drain
the queue and exit."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
from collections.abc import Iterator
from typing import Any

from dbcli.serve.config import CONFIG_ENV, ServeConfig

MAX_HEAD_BYTES = 64 * 1024  # a request line and headers larger than this get uvicorn's 400
BACKLOG = 2048  # connections the kernel queues before uvicorn accepts them


def uvicorn_config(config: ServeConfig, app: Any) -> Any:
    """uvicorn's ``Config`` for ``app`` (an ASGI app or an import string): the connection limit, the
    header (``dbcli.serve.protocol``), keep-alive and head-size limits, and a graceful shutdown a
    second longer than the drain (whose end answers every request still waiting with a 503)."""
    import uvicorn

    from dbcli.serve.protocol import HEADER_TIMEOUT_ATTR

    settings = uvicorn.Config(app, host=config.host, port=config.port, factory=isinstance(app, str),
                              workers=config.workers, http="dbcli.serve.protocol:HeaderTimeoutProtocol",
                              limit_concurrency=config.max_connections,
                              timeout_keep_alive=max(1, round(config.keep_alive)),
                              h11_max_incomplete_event_size=MAX_HEAD_BYTES, backlog=BACKLOG,
                              timeout_graceful_shutdown=math.ceil(config.drain_timeout) + 1,
                              lifespan="on", log_level="info", access_log=False)
    setattr(settings, HEADER_TIMEOUT_ATTR, config.header_timeout)
    return settings


def serve(config: ServeConfig) -> None:
    """Serve until SIGTERM / Ctrl-C. With one worker the model is loaded here first, so bad weights
    are a ``DBNetError`` (one line) before anything listens; with ``workers`` > 1, uvicorn starts
    that many processes, each loading its own model (config passed in ``$DBNET_SERVE_CONFIG``)."""
    import uvicorn

    from dbcli.cpu import tune_malloc

    tune_malloc()  # the worker runs the network over and over: keep its buffers mapped
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        os.environ[CONFIG_ENV] = config.to_env()
        settings = uvicorn_config(config, "dbcli.serve.app:app_from_env")
        Multiprocess(settings, sockets=[settings.bind_socket()]).run()
        return
    from dbcli.serve.app import create_app, load_service

    service = load_service(config)
    with _exit_status_after_drain():
        uvicorn.Server(uvicorn_config(config, create_app(config, service))).run()


@contextlib.contextmanager
def _exit_status_after_drain() -> Iterator[None]:
    """uvicorn drains on SIGTERM / SIGINT, then raises the signal again under the handler it found:
    let that end the process with status 0 after SIGTERM (a clean, drained stop, as a scheduler
    expects) and 130 after Ctrl-C, instead of dying by the signal or printing a traceback."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0 if signum == signal.SIGTERM else 130)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
