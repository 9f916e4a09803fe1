"""The routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /metrics``, ``GET /healthz``.

A chat request is checked in the order that costs least first: the caller (``auth.guard``), the content
type, the body (size, time to arrive, JSON, shape), the ``occ`` field, the model's route; only then is the
prompt compressed (off the event loop, within the budget) and forwarded. Everything in the request but
``messages`` (and ``occ``, which is stripped) reaches the upstream untouched.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .._messages import validate_messages
from .._tokens import surely_fewer_tokens
from ..exceptions import OCCError
from ._auth import guard
from ._compression import compress
from ._observe import RequestRecord
from ._relay import CLIENT_CLOSED, Interrupt, forward, unless_disconnected
from ._state import ServerState
from ._wire import CONTROL_FIELDS, error, is_utf8_json, parse_json

JSON_TYPES = ("application/json",)
CHAT_PATH = "/v1/chat/completions"


class ChatCompletions:
    """``POST /v1/chat/completions``, the hot route, as a bare ASGI app (a class, so that Starlette's
    ``Route`` mounts it as one): state, headers and body come straight from ASGI, with no ``Request``
    object. ``app.Shortcut`` calls it past Starlette's middleware, so it answers an unexpected error
    itself, as Starlette's server-error middleware would: a 500 in OpenAI's shape, then the exception goes
    on to uvicorn's log."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["state"]
        record = state.get("record") or RequestRecord("", "POST", CHAT_PATH)
        try:
            response = await _chat(state["server"], record, request_headers(scope), receive)
        except Exception:
            await internal_error()(scope, receive, send)
            raise
        await response(scope, receive, send)


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers as ASGI has them, by lower-case name; of a repeated header the first wins, as
    in Starlette's ``Headers``. Values are decoded where read (Latin-1): a request carries many headers and
    the server reads a few."""
    return dict(reversed(scope["headers"]))


async def _chat(
    server: ServerState, record: RequestRecord, headers: dict[bytes, bytes], receive: Receive
) -> Response:
    refused = guard(headers, server.settings.api_keys)
    if refused is not None:
        return refused
    media_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        return error(
            415,
            "the body must be JSON, sent as Content-Type: application/json",
            code="unsupported_media_type",
        )
    try:
        return await _complete(server, record, headers, receive)
    except RecursionError:  # anything nested deeper than Python follows: a bad body, not a crash
        return error(400, "the body is nested too deeply", code="nesting_too_deep")


async def _complete(
    server: ServerState, record: RequestRecord, headers: dict[bytes, bytes], receive: Receive
) -> Response:
    settings = server.settings
    received = await read_body(receive, headers, settings.max_body_bytes, settings.body_timeout)
    if isinstance(received, Response):
        return received
    body, raw = received
    # the client's own bytes go upstream when nothing is changed (no "occ" field, nothing compressed):
    # byte for byte what was sent, and no second serialisation
    exact = raw if "occ" not in body and is_utf8_json(raw) else None
    control = read_control(body.pop("occ", None), server.presets.selectable)
    if isinstance(control, Response):
        return control
    model: str = body["model"]
    route = settings.route(model)
    record.stream = bool(body.get("stream"))
    if route is None and settings.routes and model != "local":  # before any compression
        record.model = "unknown"
        return error(404, f"no upstream serves model {model!r}", param="model", code="model_not_found")
    record.model = route.label if route is not None else "local"

    async def answer() -> Response:
        response_headers, forwarded = await _compress(server, record, headers, body, control)
        if route is None:
            return await server.local.respond(forwarded, response_headers)
        upstream_headers = {"content-type": "application/json"}
        key = settings.keys.get(route.key_env, "")
        if key:
            upstream_headers["authorization"] = f"Bearer {key}"
        timing: dict[str, float] = {}
        try:
            payload = exact if forwarded is body and exact is not None else json.dumps(forwarded).encode()
            return await forward(
                server.client,
                f"{route.base_url.rstrip('/')}/chat/completions",
                payload,
                bool(forwarded.get("stream")),
                upstream_headers,
                response_headers,
                tuple(settings.keys.values()),
                timing,
            )
        finally:
            if "upstream_s" in timing:
                record.upstream_ms = round(timing["upstream_s"] * 1000, 3)

    return await unless_disconnected(receive, answer)


async def _compress(
    server: ServerState,
    record: RequestRecord,
    headers: dict[bytes, bytes],
    body: dict[str, Any],
    control: dict[str, Any],
) -> tuple[dict[str, str], dict[str, Any]]:
    """Response headers and the body to forward (compressed messages, or the original ones)."""
    if headers.get(b"x-occ-compress", b"").lower() == b"off" or control.get("compress") is False:
        record.compression = "off"
        return {"x-occ-compression": "off"}, body
    if surely_fewer_tokens(body["messages"], server.settings.min_prompt_tokens):
        # too short to compress, and known without counting: no trip to a compression worker, whose
        # round trip costs several times the relay itself (the worker would count it and skip it too)
        record.compression = "skipped-short"
        return {"x-occ-compression": "skipped-short"}, body
    outcome = await compress(server.pool, control.get("preset"), server.presets, control, body)
    record.compression = outcome.outcome
    record.original_tokens, record.compressed_tokens = outcome.original_tokens, outcome.compressed_tokens
    record.cache_hits, record.cache_misses = outcome.cache_hits, outcome.cache_misses
    if outcome.seconds is not None:
        record.compression_ms = round(outcome.seconds * 1000, 3)
    forwarded = {**body, "messages": outcome.messages} if outcome.messages is not None else body
    return outcome.headers, forwarded


async def read_body(
    receive: Receive, headers: dict[bytes, bytes], limit: int, timeout: float
) -> tuple[dict[str, Any], bytes] | Response:
    """The request body as a checked JSON object with the bytes it came in, or the error response: 413
    over ``limit`` bytes, 408
    if it takes longer than ``timeout`` seconds to arrive (a slow client holds a connection), 400 for bad
    JSON (``NaN`` and ``Infinity`` included) or a body that is not a chat request; a client that hangs up
    meanwhile gets no answer (logged as 499)."""
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return error(413, f"request body over {limit} bytes", code="request_too_large")
    chunks: list[bytes] = []
    size, more = 0, True
    interrupt = Interrupt()
    deadline = asyncio.get_running_loop().call_later(timeout, interrupt)
    try:
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return Response(status_code=CLIENT_CLOSED)
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                return error(413, f"request body over {limit} bytes", code="request_too_large")
            chunks.append(chunk)
    except asyncio.CancelledError:
        if not interrupt.caught():
            raise
        return error(408, f"the body did not arrive within {timeout:g} s", code="request_timeout")
    finally:
        deadline.cancel()
    raw = b"".join(chunks)
    try:
        body = parse_json(raw)
    except (ValueError, UnicodeDecodeError):
        return error(400, "the body is not valid JSON (NaN and Infinity are not JSON either)")
    except RecursionError:
        return error(400, "the body is nested too deeply", code="nesting_too_deep")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error(400, "'model' is required and must be a string", param="model")
    try:
        validate_messages(body.get("messages"))
    except OCCError as exc:
        return error(400, str(exc), param="messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        return error(400, "'stream' must be a boolean", param="stream")
    return body, raw


def read_control(control: object, presets: Any) -> dict[str, Any] | Response:
    """The ``occ`` body field, checked: ``compress`` a boolean, ``preset`` the name of a selectable preset,
    ``rate`` a number in (0, 1], ``frozen_messages`` a non-negative integer (the first messages, which the
    client's provider has cached, are never changed). Nothing the client sent is echoed back."""
    if control is None:
        return {}
    if not isinstance(control, dict):
        return error(400, "'occ' must be an object", param="occ")
    unknown = set(control) - CONTROL_FIELDS
    if unknown:
        return error(400, f"'occ' accepts only {', '.join(sorted(CONTROL_FIELDS))}", param="occ")
    if "compress" in control and not isinstance(control["compress"], bool):
        return error(400, "'occ.compress' must be a boolean", param="occ.compress")
    if "preset" in control and (not isinstance(control["preset"], str) or control["preset"] not in presets):
        names = ", ".join(sorted(presets)) or "none"
        return error(
            400,
            f"'occ.preset' must name a preset this server offers: {names}",
            param="occ.preset",
            code="unknown_preset",
        )
    rate = control.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not (0 < rate <= 1):
        return error(400, "'occ.rate' must be a number in (0, 1]", param="occ.rate")
    frozen = control.get("frozen_messages", 0)
    if isinstance(frozen, bool) or not isinstance(frozen, int) or frozen < 0:
        return error(400, "'occ.frozen_messages' must be a non-negative integer", param="occ.frozen_messages")
    return control


async def models(request: Request) -> Response:
    server: ServerState = request.state.server
    refused = guard(request_headers(request.scope), server.settings.api_keys)
    if refused is not None:
        return refused
    names = ["local", *(r.label for r in server.settings.routes)]
    data = [{"id": n, "object": "model", "owned_by": "occ-research"} for n in names]
    return JSONResponse({"object": "list", "data": data})


async def metrics(request: Request) -> Response:
    server: ServerState = request.state.server
    refused = guard(request_headers(request.scope), server.settings.api_keys)
    if refused is not None:
        return refused
    return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    preset = request.state.server.presets.default
    return JSONResponse({"status": "ok", "preset": preset.name, "strategy": preset.strategy.name})


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "unknown route", 405: "method not allowed"}.get(status, "request failed")
    headers = exc.headers if isinstance(exc, HTTPException) else None  # 405 carries Allow
    return error(status, f"{message}: {request.method} {request.url.path}", code=str(status), headers=headers)


async def server_error(request: Request, exc: Exception) -> Response:
    return internal_error()


def internal_error() -> Response:
    """The answer to an unexpected error: nothing about it reaches the client."""
    return error(500, "internal error", kind="server_error")
