"""uvicorn's HTTP protocol with a header timeout: a connection must deliver each request's headers within
``header_timeout`` seconds of opening (or of the previous answer), however slowly it trickles bytes.

uvicorn closes idle keep-alive connections, but its timer restarts on every byte received and is not armed
on a new connection at all, so a client sending one header byte every few seconds (slowloris) holds a
connection forever. The body has its own timeout in ``routes.read_body``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from ._settings import Settings

DEFAULT_HEADER_TIMEOUT = 10.0


class _HeaderTimeout:
    """Mixin over a uvicorn HTTP protocol: both implementations start a new ``cycle`` when a request's
    headers are complete, so the timer checks whether a new cycle began since it was armed."""

    cycle: Any
    transport: asyncio.Transport
    app_state: dict[str, Any]
    _header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        server = self.app_state.get("server")  # the app's lifespan state holds its settings
        timeout = server.settings.header_timeout if server is not None else DEFAULT_HEADER_TIMEOUT
        self._header_timer = asyncio.get_running_loop().call_later(timeout, self._expire, self.cycle)

    def _expire(self, waiting_on: Any) -> None:
        if self.cycle is waiting_on and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


class H11WithHeaderTimeout(_HeaderTimeout, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol, with the header timeout of the app's settings."""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn settings that follow the server's settings: the timeouts for slow clients."""
    return {
        "http": H11WithHeaderTimeout,
        "timeout_keep_alive": max(1, round(settings.keep_alive_timeout)),
        "h11_max_incomplete_event_size": 64 * 1024,  # request line and headers
    }
