"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for a request's headers.

uvicorn closes a keep-alive connection that stays silent ``timeout_keep_alive`` seconds after a
response, but a connection that never sends a request, or trickles its header lines, holds a slot of
``limit_concurrency`` for as long as the client likes. Here every connection must deliver a complete
request head within ``header_timeout`` seconds of opening (or of its previous response), else it is
closed: a flood of idle or slow connections is shed, and ``/readyz`` and real requests get through.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_ATTR = "dbnet_header_timeout"  # set on uvicorn's Config (it travels to worker processes)


class HeaderTimeoutProtocol(H11Protocol):
    """``H11Protocol`` that closes a connection whose next request head is not complete within
    ``header_timeout`` seconds: the ``dbnet_header_timeout`` attribute of uvicorn's ``Config``
    (10 s when it has none). uvicorn's setting: ``http="dbcli.serve.protocol:HeaderTimeoutProtocol"``."""

    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout: float = getattr(config, HEADER_TIMEOUT_ATTR, 10.0)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired, self.scope)

    def _expired(self, scope: Any) -> None:
        """No new request head since the timer was armed, and none in progress: close."""
        idle = self.cycle is None or self.cycle.response_complete
        if self.scope is scope and idle and not self.transport.is_closing():
            self.transport.close()

