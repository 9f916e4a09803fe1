"""The relay: send a request to an upstream, hand its answer (or its stream) to the client, and say what
an upstream fault means to the client.

- 429 stays 429, whatever its body; ``Retry-After``, ``retry-after-ms`` and ``x-ratelimit-*`` are relayed
  on every answer, so the client's retry logic sees them.
- 401/403 mean the upstream refused this server's own credentials: a 502 ``upstream_auth_failed``; the
  upstream's words are not relayed (they may quote the key).
- Other 4xx in OpenAI's shape are passed through, 5xx become 502; relayed messages are redacted.
- A stream is relayed event by event: a partial event is held back until its blank line arrives, so an
  error event after a broken stream always starts a new event; a stream that ends without
  ``data: [DONE]`` gets an error event too.
- A client that disconnects cancels the upstream request (``unless_disconnected``; the streaming response
  does it for streams).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import cast

import aiohttp
from multidict import CIMultiDictProxy
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ._wire import (
    RELAYED_HEADERS,
    RELAYED_PREFIX,
    ends_with_done,
    error,
    error_body,
    event_end,
    redact,
    sse_error,
    upstream_error,
)

MAX_EVENT_BYTES = 8 * 1024 * 1024  # a single event larger than this ends the stream
CLIENT_CLOSED = 499  # the client went away before the answer (nginx's word for it)
WATCH_AFTER = 0.05  # seconds into a request when its connection starts being watched for a disconnect


def relayed_headers(upstream: CIMultiDictProxy[str]) -> dict[str, str]:
    """The upstream headers a client must see: retry hints and rate-limit state."""
    return {
        low: value
        for name, value in upstream.items()
        if (low := name.lower()) in RELAYED_HEADERS or low.startswith(RELAYED_PREFIX)
    }


class Interrupt:
    """Cancels the task that made it, when called (by a timer, by a watcher), and tells that cancellation
    apart from any other afterwards: what ``asyncio.timeout`` does for a deadline, with a plain timer, for
    a third of its cost (``asyncio.timeout`` was 3% of a relayed request's instructions)."""

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task, self.cancelling, self.fired = task, task.cancelling(), False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()

    def caught(self) -> bool:
        """In an ``except CancelledError``: True if this interrupt alone caused it (it is then absorbed, and
        the task goes on); False if it came from elsewhere too (the server stopping), to be re-raised."""
        return self.fired and self.task.uncancel() <= self.cancelling


async def unless_disconnected(receive: Receive, work: Callable[[], Awaitable[Response]]) -> Response:
    """``work()``, cancelled if the client disconnects first (``receive``: the request's ASGI channel, its
    body read already): the upstream request is dropped, an abandoned compression gives its place back.
    A task watches the connection from ``WATCH_AFTER`` seconds on: one from the start cost 5% of a relayed
    request's instructions, and an answer that comes sooner leaves nothing worth cancelling."""
    interrupt, watcher = Interrupt(), None

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        interrupt()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.create_task(watch())

    later = asyncio.get_running_loop().call_later(WATCH_AFTER, start_watching)
    try:
        return await work()
    except asyncio.CancelledError:
        if not interrupt.caught():  # cancelled from elsewhere: not ours to swallow
            raise
        return Response(status_code=CLIENT_CLOSED)
    finally:
        later.cancel()
        if watcher is not None:
            watcher.cancel()


async def forward(
    client: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    stream: bool,
    upstream_headers: dict[str, str],
    headers: dict[str, str],
    secrets: tuple[str, ...],
    timing: dict[str, float],
) -> Response:
    """POST the JSON ``payload`` to ``url``; the client's answer (``stream``: whether it asked for one).
    ``timing["upstream_s"]`` gets the time to the upstream's response headers."""
    started = time.perf_counter()
    try:
        upstream = await client.post(url, data=payload, headers=upstream_headers)
    except TimeoutError:
        return upstream_error(504, "the upstream did not answer in time", "upstream_timeout")
    except aiohttp.ClientError as exc:
        return upstream_error(
            502, f"the upstream is unreachable: {type(exc).__name__}", "upstream_unreachable"
        )
    finally:
        timing["upstream_s"] = time.perf_counter() - started
    headers = {**headers, **relayed_headers(upstream.headers)}
    if upstream.status >= 400 or not stream:
        try:
            raw = await upstream.read()
        except TimeoutError:
            return upstream_error(504, "the upstream did not answer in time", "upstream_timeout", headers)
        except aiohttp.ClientError:
            return upstream_error(502, "the upstream broke off its answer", "upstream_malformed", headers)
        finally:
            upstream.release()
        return relay_answer(upstream.status, raw, headers, secrets)
    return EventStream(relay_stream(upstream), media_type="text/event-stream", headers=headers)


class EventStream(StreamingResponse):
    """The relayed stream as the client gets it, watched for a client that hangs up.

    uvicorn announces ASGI 2.3, where ``send`` to a closed connection does not fail, so Starlette's
    ``StreamingResponse`` runs an anyio task group per stream to notice a disconnect; that cost as many
    instructions as the rest of a relayed stream. Here one plain task waits for ``http.disconnect`` and
    interrupts the sending; the events' generator is closed either way, which ends the upstream request
    (``relay_stream``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        interrupt = Interrupt()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            interrupt()

        watcher = asyncio.get_running_loop().create_task(watch())
        events = cast(AsyncGenerator[bytes], self.body_iterator)
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not interrupt.caught():
                raise
        finally:
            watcher.cancel()
            await events.aclose()


def relay_answer(status: int, raw: bytes, headers: dict[str, str], secrets: tuple[str, ...]) -> Response:
    """A whole (non-streamed) upstream answer, as the client gets it."""
    if status in (401, 403):
        return upstream_error(
            502,
            f"the upstream refused this server's credentials (HTTP {status}); the server's operator must "
            "fix its upstream key",
            "upstream_auth_failed",
            headers,
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if status >= 400:
        found = data.get("error") if isinstance(data, dict) else None
        upstream = found if isinstance(found, dict) else {}
        message = redact(str(upstream.get("message") or ""), secrets)
        if status >= 500:  # the upstream failed: a bad gateway for the caller
            text = f"upstream error {status}: {message}"[:500]
            return upstream_error(502, text, "upstream_error", headers)
        if status == 429 and not upstream:  # rate limited, whatever the body says
            return error(
                429,
                "the upstream is rate limiting requests",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if upstream:  # 4xx in OpenAI's shape, 429 included: passed through, redacted
            param, code = upstream.get("param"), upstream.get("code")
            rebuilt = error_body(
                message or f"upstream error {status}",
                redact(str(upstream.get("type") or "invalid_request_error"), secrets),
                redact(param, secrets) if isinstance(param, str) else None,
                redact(str(code), secrets) if isinstance(code, str | int) else None,
            )
            return JSONResponse(rebuilt, status_code=status, headers=headers)
        return upstream_error(status, f"upstream error {status}", "upstream_error", headers)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        code = "upstream_malformed"
        return upstream_error(502, "the upstream answer is not a chat completion", code, headers)
    return Response(raw, media_type="application/json", headers=headers)  # relayed as it came


async def relay_stream(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Server-sent events passed through as they complete. A failure, a stream that ends without
    ``data: [DONE]``, or an oversized event ends the stream with an error event (always a new event: a
    partial one is never sent). A client that disconnects cancels this generator, which closes the
    upstream connection and so ends the upstream request."""
    pending, done, finished = b"", False, False
    try:
        async for chunk in upstream.content.iter_any():
            pending = pending + chunk if pending else chunk
            end = event_end(pending)
            if end:
                events, pending = pending[:end], pending[end:]
                done = ends_with_done(events)
                yield events
            if len(pending) > MAX_EVENT_BYTES:
                yield sse_error(
                    "the upstream sent an oversized event", "upstream_error", "upstream_malformed"
                )
                return
        finished = True
        if not done:
            message = "the upstream stream ended before data: [DONE]"
            yield sse_error(message, "upstream_error", "upstream_stream_incomplete")
    except (aiohttp.ClientError, TimeoutError) as exc:
        message = f"the upstream stream broke off: {type(exc).__name__}"
        yield sse_error(message, "upstream_error", "upstream_stream_error")
    finally:
        if finished:
            upstream.release()  # the connection goes back to the pool
        else:
            upstream.close()  # cancelled or broken: drop the connection, which ends the upstream request
