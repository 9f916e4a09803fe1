"""uvicorn's HTTP protocols with a header timeout and a header size limit (slow and bloated clients).

A connection must deliver each request's line and headers within ``header_timeout`` seconds of opening (or
of the previous answer), however slowly it trickles bytes, and in at most ``MAX_HEADER_BYTES``. uvicorn
closes idle keep-alive connections, but its timer restarts on every byte received and is not armed on a new
connection at all, so a client sending one header byte every few seconds (slowloris) would hold a connection
forever; h11 bounds the headers' size (``h11_max_incomplete_event_size``), httptools does not.

The same mixin serves both parsers: each starts a new ``cycle`` when a request's headers are complete, and
marks the cycle ``response_complete`` when its answer is sent. httptools (C) parses about twice as fast as
h11 (pure Python), so ``uvicorn_options`` picks it when it is installed. The body has its own timeout in
``routes.read_body``, which works the same under either parser.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from ._settings import Settings

DEFAULT_HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024  # request line and headers
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _HeaderTimeout:
    """Mixin over a uvicorn HTTP protocol. The timer and the byte count are armed when the connection opens
    and after each answer, on the cycle current then; the connection is still waiting for headers while no
    new cycle has begun (a pipelined request that began meanwhile is not waiting: it is being answered)."""

    cycle: Any
    transport: asyncio.Transport
    app_state: dict[str, Any]
    _header_timer: asyncio.TimerHandle | None = None
    _waiting_on: Any = None
    _header_bytes = 0

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        server = self.app_state.get("server")  # the app's lifespan state holds its settings
        timeout = server.settings.header_timeout if server is not None else DEFAULT_HEADER_TIMEOUT
        self._waiting_on, self._header_bytes = self.cycle, 0
        self._header_timer = asyncio.get_running_loop().call_later(timeout, self._expire)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is self._waiting_on and (self.cycle is None or self.cycle.response_complete)

    def _expire(self) -> None:
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if not self._waiting_for_headers() or self.transport.is_closing():
            return
        self._header_bytes += len(data)  # all of it was header bytes: the headers are still incomplete
        if self._header_bytes > MAX_HEADER_BYTES:
            self.transport.write(TOO_LARGE)
            self.transport.close()

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


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 only
    HTTPTOOLS: type[asyncio.Protocol] | None = None
else:

    class HttpToolsWithHeaderTimeout(_HeaderTimeout, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol, with the header timeout and size limit of the app's settings."""

    HTTPTOOLS = HttpToolsWithHeaderTimeout


def uvicorn_options(settings: Settings, http: str = "auto") -> dict[str, Any]:
    """uvicorn settings that follow the server's settings: the parser (``auto``: httptools if installed,
    else h11; or ``h11``, ``httptools``), with the timeouts for slow clients; uvicorn's own ``loop="auto"``
    picks uvloop when it is installed."""
    if http not in ("auto", "h11", "httptools"):
        raise ValueError(f"http must be auto, h11 or httptools, not {http!r}")
    if http == "httptools" and HTTPTOOLS is None:
        raise ValueError("httptools is not installed")
    fast = http != "h11" and HTTPTOOLS is not None
    return {
        "http": HTTPTOOLS if fast else H11WithHeaderTimeout,
        "timeout_keep_alive": max(1, round(settings.keep_alive_timeout)),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "proxy_headers": False,  # the server reads no client address: no X-Forwarded-* rewriting per request
        "server_header": False,  # "server: uvicorn" tells a prober the stack, and every header costs per answer
    }
