"""The ASGI app: authenticate, compress, forward to the upstream chosen by the model name, relay the answer.

Everything in the request but ``messages`` (and the ``occ`` control field, which is stripped) reaches the
upstream untouched; ``messages`` reach it compressed by the configured preset. The upstream counts the
compressed prompt, so ``usage.prompt_tokens`` is what the caller pays for. Compression numbers travel in
``x-occ-*`` response headers. A request is never lost to compression: if it fails, the original prompt is
forwarded and ``x-occ-compression`` says why.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from ..exceptions import OCCError, PresetError
from ..messages import validate_messages
from ..presets import Preset, load_preset, preset_files, writable_preset_dir
from ..tokens import count_tokens
from .local import LocalUpstream
from .settings import Settings
from .wire import SSE_DONE, error, error_body, sse

DEFAULT_PRESET = "bm25-q25"
CONTROL_FIELDS = frozenset({"compress", "preset", "rate"})
log = logging.getLogger("occ_research.server")


def choose_preset(settings: Settings) -> Preset:
    """The configured preset; else ``winner.toml`` written by an evaluation; else the documented default."""
    if settings.preset:
        return load_preset(settings.preset)
    winner = writable_preset_dir() / "winner.toml"
    return load_preset(str(winner)) if Path(winner).is_file() else load_preset(DEFAULT_PRESET)


def selectable_presets(settings: Settings) -> dict[str, Preset]:
    """The presets a client may name, loaded once at start: every preset on the search path (narrowed by
    ``settings.presets`` when set). A client names one of these; it never passes a path or a file."""
    files = preset_files()
    missing = [name for name in settings.presets if name not in files]
    if missing:
        raise PresetError(f"server settings: presets not found: {', '.join(missing)}")
    loaded = {}
    for name, path in files.items():
        if settings.presets and name not in settings.presets:
            continue
        try:
            loaded[name] = load_preset(str(path))
        except OCCError as exc:
            # the reason is not logged: it may quote the file; `occ strategies` shows it to the operator
            log.warning(
                "preset %s is not selectable (%s; `occ strategies` says why)", name, type(exc).__name__
            )
    return loaded


def create_app(settings: Settings | None = None) -> Starlette:
    """The app; settings default to ``Settings.load(OCC_SERVER_CONFIG)`` (see ``settings.py``)."""
    settings = settings or Settings.load(os.environ.get("OCC_SERVER_CONFIG"))
    preset = choose_preset(settings)
    presets = selectable_presets(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # aiohttp, not httpx, for the upstream: it relayed 8x more requests/s here (benchmarks/load.py).
        # sock_read bounds the wait for each read, so a long stream is fine but a silent upstream is not.
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.timeout, sock_read=settings.timeout)
        connector = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            yield {"client": client, "local": LocalUpstream(settings.local_model)}

    async def chat_completions(request: Request) -> Response:
        if settings.api_keys and not _authorised(request, settings.api_keys):
            return error(401, "invalid or missing API key", code="invalid_api_key")
        try:
            return await _complete(request)
        except RecursionError:  # anything nested deeper than Python follows: a bad body, not a crash
            return error(400, "the body is nested too deeply", code="nesting_too_deep")

    async def _complete(request: Request) -> Response:
        body = await _read_body(request, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        control = _read_control(body.pop("occ", None), presets)
        if isinstance(control, Response):
            return control
        headers, forwarded = await _compress(request, body, control, preset, settings)
        route = settings.route(body["model"])
        if route is None and settings.routes and body["model"] != "local":
            return error(
                404, f"no upstream serves model {body['model']!r}", param="model", code="model_not_found"
            )
        if route is None:
            local: LocalUpstream = request.state.local
            return await local.respond(forwarded, headers)
        upstream_headers = {"content-type": "application/json"}
        key = settings.keys.get(route.key_env, "")
        if key:
            upstream_headers["authorization"] = f"Bearer {key}"
        return await _forward(
            request.state.client,
            f"{route.base_url.rstrip('/')}/chat/completions",
            forwarded,
            upstream_headers,
            headers,
        )

    async def models(request: Request) -> Response:
        if settings.api_keys and not _authorised(request, settings.api_keys):
            return error(401, "invalid or missing API key", code="invalid_api_key")
        names = ["local", *(f"{r.prefix}*" for r in settings.routes)]
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "owned_by": "occ-research"} for n in names],
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "preset": preset.name, "strategy": preset.strategy.name})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = {404: "unknown route", 405: "method not allowed"}.get(status, "request failed")
        return error(status, f"{message}: {request.method} {request.url.path}", code=str(status))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, "internal error", kind="server_error")

    return Starlette(
        routes=[
            HttpRoute("/v1/chat/completions", chat_completions, methods=["POST"]),
            HttpRoute("/v1/models", models, methods=["GET"]),
            HttpRoute("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )


def _authorised(request: Request, keys: tuple[str, ...]) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:] if header[:7].lower() == "bearer " else ""
    # compare against every key, always, in constant time per key
    return any([hmac.compare_digest(given.encode(), k.encode()) for k in keys]) and bool(given)


async def _read_body(request: Request, limit: int) -> dict[str, Any] | Response:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return error(413, f"request body over {limit} bytes", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return error(413, f"request body over {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        return error(400, "the body is not valid JSON")
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
    return body


def _read_control(control: object, presets: dict[str, Preset]) -> dict[str, Any] | Response:
    """The ``occ`` body field, checked: ``compress`` a boolean, ``preset`` the name of a selectable preset,
    ``rate`` a number in (0, 1]. Nothing the client sent is echoed back (it may be anything)."""
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
    return {**control, "preset": presets[control["preset"]]} if "preset" in control else control


async def _compress(
    request: Request, body: dict[str, Any], control: dict[str, Any], preset: Preset, settings: Settings
) -> tuple[dict[str, str], dict[str, Any]]:
    """Response headers and the body to forward (compressed messages, or the original ones)."""
    switch = request.headers.get("x-occ-compress", "on").lower()
    if switch == "off" or control.get("compress") is False:
        return {"x-occ-compression": "off"}, body
    try:
        chosen: Preset = control.get("preset", preset)
        rate = control.get("rate", chosen.rate)
        target = None if "rate" in control else chosen.target_tokens
        original_tokens = count_tokens(body["messages"], body["model"])
        if original_tokens < settings.min_prompt_tokens:
            return {"x-occ-compression": "skipped-short", "x-occ-original-tokens": str(original_tokens)}, body
        started = time.perf_counter()
        result = await anyio.to_thread.run_sync(
            lambda: chosen.strategy.compress(
                body["messages"], rate=rate, target_tokens=target, model=body["model"]
            )
        )
    except Exception as exc:  # never lose a request to compression: forward it as it came
        # the client gets a stable word; the reason stays in the server's log (one line, no traceback)
        log.warning("compression failed, forwarding the original prompt: %s: %s", type(exc).__name__, exc)
        return {"x-occ-compression": "failed"}, body
    headers = {
        "x-occ-compression": "on",
        "x-occ-strategy": _ascii(chosen.name),
        "x-occ-original-tokens": str(result.original_tokens),
        "x-occ-compressed-tokens": str(result.compressed_tokens),
        "x-occ-compression-ms": f"{(time.perf_counter() - started) * 1000:.2f}",
    }
    return headers, {**body, "messages": result.messages}


def _ascii(value: str) -> str:
    """A header value: HTTP headers carry Latin-1 at most, so anything else is escaped."""
    return value.encode("ascii", "backslashreplace").decode("ascii")


async def _forward(
    client: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    upstream_headers: dict[str, str],
    headers: dict[str, str],
) -> Response:
    try:
        upstream = await client.post(url, data=json.dumps(body).encode(), headers=upstream_headers)
    except TimeoutError:
        return error(
            504, "the upstream did not answer in time", kind="upstream_error", code="upstream_timeout"
        )
    except aiohttp.ClientError as exc:
        return error(
            502,
            f"the upstream is unreachable: {type(exc).__name__}",
            kind="upstream_error",
            code="upstream_unreachable",
        )
    if upstream.status >= 400 or not body.get("stream"):
        try:
            raw = await upstream.read()
        except TimeoutError:
            return error(
                504, "the upstream did not answer in time", kind="upstream_error", code="upstream_timeout"
            )
        except aiohttp.ClientError:
            return error(
                502, "the upstream broke off its answer", kind="upstream_error", code="upstream_malformed"
            )
        finally:
            upstream.release()
        return _relay_json(upstream.status, raw, headers)
    return StreamingResponse(_relay_stream(upstream), media_type="text/event-stream", headers=headers)


def _relay_json(status: int, raw: bytes, headers: dict[str, str]) -> Response:
    try:
        data = json.loads(raw)
    except ValueError:
        return error(
            502,
            "the upstream answered with something that is not JSON",
            kind="upstream_error",
            code="upstream_malformed",
        )
    if status >= 400:
        upstream_error = data.get("error") if isinstance(data, dict) else None
        message = upstream_error.get("message", "") if isinstance(upstream_error, dict) else ""
        if status >= 500:  # the upstream failed: a bad gateway for the caller
            return error(
                502, f"upstream error {status}: {message}"[:500], kind="upstream_error", code="upstream_error"
            )
        if isinstance(upstream_error, dict):  # 4xx in OpenAI's shape, 429 included: passed through
            return JSONResponse(data, status_code=status, headers=headers)
        return error(status, f"upstream error {status}", kind="upstream_error")
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return error(
            502,
            "the upstream answer is not a chat completion",
            kind="upstream_error",
            code="upstream_malformed",
        )
    return Response(raw, media_type="application/json", headers=headers)  # relayed as it came


async def _relay_stream(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Server-sent events passed through as they arrive; an upstream failure mid-stream becomes an error
    event and a clean end. A client that disconnects cancels this generator, which closes the upstream."""
    finished = False
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
        finished = True
    except (aiohttp.ClientError, TimeoutError) as exc:
        message = f"the upstream stream broke off: {type(exc).__name__}"
        yield sse(error_body(message, "upstream_error", code="upstream_stream_error")) + SSE_DONE
    finally:
        if finished:
            upstream.release()  # the connection goes back to the pool
        else:
            upstream.close()  # cancelled or broken: drop the connection, which ends the upstream request
