"""The reference endpoint, served by uvicorn on loopback and driven by the official openai SDK and httpx.

The happy path runs against the real local model. A small OpenAI-compatible upstream written for these
tests stands in for a paid provider: it echoes what it received (to check what was forwarded) and injects
faults on request (timeouts, 500s, 429s, malformed JSON, truncated streams); the model name picks the fault.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from occ_research import count_tokens
from occ_research.exceptions import OCCError
from occ_research.llm._local import LocalLLM
from occ_research.server import Route, Settings, create_app, uvicorn_options

KEY = "sk-test-key"
# the compression workers as threads of the test process: for servers whose tests are not about compression
# (a worker process loads and warms the presets at every start, seconds on a busy machine)
THREADS: dict[str, Any] = {"compression_processes": False, "compression_workers": 1}
JSON_AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
STREAM_EVENTS: list[str] = []
UPSTREAM_EVENTS: list[str] = []  # what the fault-injecting upstream saw: "disconnected", "429", ...


def chunk_event(model: str, text: str) -> str:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


LONG = "Paris is the capital and largest city of France. " * 120 + "Bananas are yellow fruit. " * 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def serve() -> Iterator[Any]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any, http: str = "auto") -> str:
        """``app`` served as ``occ serve`` serves it (``http``: the parser, see ``uvicorn_options``)."""
        port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options(Settings(), http),
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 180  # the lifespan starts the compression workers first
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def completion(body: dict[str, Any]) -> dict[str, Any]:
    n = body.get("n") or 1
    message: dict[str, Any] = {"role": "assistant", "content": json.dumps(body)}
    finish = "stop"
    if body.get("tools"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": body["tools"][0]["function"]["name"],
                        "arguments": '{"city": "Paris"}',
                    },
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [
            {"index": i, "message": message, "finish_reason": finish, "logprobs": None} for i in range(n)
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
    }


async def fake_upstream(request: Request) -> Response:
    body = await request.json()
    model = body["model"]
    if model == "gpt-echo-bytes":  # the bytes it was sent, as the answer's text
        return JSONResponse(
            {
                **completion(body),
                "choices": [
                    {
                        **completion(body)["choices"][0],
                        "message": {"role": "assistant", "content": (await request.body()).decode("utf-8")},
                    }
                ],
            }
        )
    if model == "fault-slow":
        await asyncio.sleep(3)
    if model == "fault-hang":  # answers only after the proxy hangs up, and says so
        while not await request.is_disconnected():
            await asyncio.sleep(0.02)
        UPSTREAM_EVENTS.append("disconnected")
        return Response(status_code=204)
    if model.startswith("fault-429"):
        UPSTREAM_EVENTS.append("429")
        limits = {
            "retry-after": "1",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1s",
        }
        if model == "fault-429-html":
            return Response(b"<html>Too many</html>", status_code=429, media_type="text/html", headers=limits)
        error = {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limit"}
        return JSONResponse({"error": error}, status_code=429, headers=limits)
    if model in ("fault-401", "fault-403", "fault-400-key"):  # providers echo the key they were sent
        sent = request.headers.get("authorization", "")
        message = f"Incorrect API key provided: {sent[7:]}; or use Bearer {sent[7:]}"
        status = int(model[6:9])
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)
    if model in ("fault-cut", "fault-nodone"):

        async def broken() -> Any:
            yield chunk_event(model, "Hel")
            await asyncio.sleep(0.05)
            if model == "fault-cut":
                yield chunk_event(model, "lo")[:30]  # half an event, then the connection drops
                await asyncio.sleep(0.05)
                raise RuntimeError("connection dropped mid-event")

        return StreamingResponse(broken(), media_type="text/event-stream")
    if model == "fault-500":
        return JSONResponse(
            {"error": {"message": "upstream exploded", "type": "server_error"}}, status_code=500
        )
    if model == "fault-429":
        return JSONResponse(
            {
                "error": {
                    "message": "slow down",
                    "type": "rate_limit_error",
                    "param": None,
                    "code": "rate_limit",
                }
            },
            status_code=429,
        )
    if model == "fault-garbage":
        return Response(b"<html>oops</html>", media_type="text/html")
    if model == "fault-endless":

        async def endless() -> Any:
            try:
                for i in range(400):
                    chunk = {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": model,
                        "choices": [{"index": 0, "delta": {"content": str(i)}, "finish_reason": None}],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
                    await asyncio.sleep(0.01)
                STREAM_EVENTS.append("finished")
            except BaseException:
                STREAM_EVENTS.append("cancelled")
                raise

        return StreamingResponse(endless(), media_type="text/event-stream")
    if body.get("stream"):

        async def events() -> Any:
            for word in ["Hel", "lo"]:
                chunk = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(0.05)
            if model == "fault-truncated":
                raise RuntimeError("connection dropped mid-stream")
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
                }
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse(completion(body))


@pytest.fixture(scope="module")
def upstream(serve: Any) -> str:
    return str(serve(Starlette(routes=[HttpRoute("/v1/chat/completions", fake_upstream, methods=["POST"])])))


@pytest.fixture(scope="module")
def resetting_upstream() -> Iterator[str]:
    """Fault injected: a TCP server that accepts connections and drops them at once (connection reset)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join(5)
    listener.close()


@pytest.fixture(scope="module")
def proxy(serve: Any, upstream: str, resetting_upstream: str) -> str:
    routes = (
        Route("fault-", f"{upstream}/v1"),
        Route("gpt-", f"{upstream}/v1"),
        Route("dead-", "http://127.0.0.1:9/v1"),
        Route("reset-", resetting_upstream),
    )
    app = create_app(
        Settings(
            api_keys=(KEY,),
            preset="bm25-q25",
            routes=routes,
            min_prompt_tokens=200,
            timeout=1.0,
            max_body_bytes=200_000,
            compression_workers=1,
        )
    )
    return str(serve(app))


@pytest.fixture(scope="module")
def local_proxy(serve: Any) -> str:
    return str(serve(create_app(Settings(api_keys=(KEY,), preset="bm25-q25", **THREADS))))


def sdk(base: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def echoed(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.choices[0].message.content))


def test_an_unchanged_body_is_forwarded_byte_for_byte(proxy: str) -> None:
    """Nothing compressed and no ``occ`` field: the upstream gets the client's own bytes (its spacing,
    key order, number forms and characters), not a re-serialisation; otherwise the body is written anew,
    without the ``occ`` field, and always as UTF-8."""
    sent = (
        '{ "messages" : [{"content": "Say ok \u00e9 \u4f60\u597d, caf\u00e9", "role": "user"}],\n'
        '  "temperature": 0.70, "model": "gpt-echo-bytes", "custom": [1e2, -0.0] }'
    ).encode()
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    url = f"{proxy}/v1/chat/completions"

    def forwarded(content: bytes) -> str:
        response = httpx.post(url, content=content, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return str(response.json()["choices"][0]["message"]["content"])

    assert forwarded(sent) == sent.decode()
    assert forwarded(sent.decode().encode("utf-16")) != sent.decode()  # another encoding: written anew
    assert json.loads(forwarded(sent.decode().encode("utf-16"))) == json.loads(sent)
    with_control = json.loads(sent) | {"occ": {"compress": False}}
    rewritten = forwarded(json.dumps(with_control).encode())
    assert "occ" not in json.loads(rewritten) and json.loads(rewritten) == json.loads(sent)


def test_local_model_answers_through_the_sdk(local_proxy: str) -> None:
    client = sdk(local_proxy)
    answer = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert answer.object == "chat.completion" and answer.model == "local"
    assert answer.choices[0].message.content and answer.choices[0].finish_reason in ("stop", "length")
    assert (
        answer.usage is not None
        and answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    )
    stream = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == answer.usage.prompt_tokens


def test_local_model_counts_the_compressed_prompt(local_proxy: str) -> None:
    raw = sdk(local_proxy).chat.completions.with_raw_response.create(
        model="local",
        messages=[{"role": "user", "content": LONG + "\n\nWhat is the capital of France?"}],
        max_tokens=4,
    )
    assert raw.headers["x-occ-compression"] == "on" and raw.headers["x-occ-strategy"] == "bm25-q25"
    original, compressed = (
        int(raw.headers["x-occ-original-tokens"]),
        int(raw.headers["x-occ-compressed-tokens"]),
    )
    # cache-stable chat policy: the rate applies to the compressible text; the question (7 tokens) and the
    # message framing are kept on top of it
    assert compressed <= original // 4 + 16
    assert raw.parse().usage.prompt_tokens < original // 2


def test_a_prompt_surely_too_short_is_not_sent_to_a_compression_worker(proxy: str) -> None:
    """Below ``min_prompt_tokens`` (200 here) nothing is compressed. A prompt whose bytes already say so is
    skipped on the spot, uncounted (no token headers); one that has to be counted goes to a worker, which
    counts it and skips it too."""
    client = sdk(proxy).chat.completions
    short = [{"role": "user", "content": "Say ok."}]
    raw = client.with_raw_response.create(model="gpt-4o", messages=short)  # type: ignore[arg-type]
    assert raw.headers["x-occ-compression"] == "skipped-short"
    assert "x-occ-original-tokens" not in raw.headers
    assert echoed(raw.parse())["messages"] == short
    counted = [{"role": "user", "content": "word " * 60}]  # 300 characters, 65 tokens
    raw = client.with_raw_response.create(model="gpt-4o", messages=counted)  # type: ignore[arg-type]
    assert raw.headers["x-occ-compression"] == "skipped-short"
    assert int(raw.headers["x-occ-original-tokens"]) == count_tokens(counted, "gpt-4o") < 200


def test_parameters_pass_through_and_messages_are_compressed(proxy: str) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": LONG + "\n\nWhat is the capital of France?"},
    ]
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=messages,
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n", "END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logprobs=True,
        user="u1",
        n=2,
        response_format={"type": "text"},
        extra_body={"custom_field": {"a": 1}, "occ": {"rate": 0.5}},
    )
    response = raw.parse()
    sent = echoed(response)
    for key, value in {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logprobs": True,
        "user": "u1",
        "n": 2,
        "response_format": {"type": "text"},
        "custom_field": {"a": 1},
    }.items():
        assert sent[key] == value
    assert "occ" not in sent
    assert sent["messages"][0] == messages[0]
    assert sent["messages"][1]["content"].endswith("What is the capital of France?")
    assert len(sent["messages"][1]["content"]) < len(messages[1]["content"]) * 0.6
    assert len(response.choices) == 2 and response.usage.prompt_tokens == 11
    assert float(raw.headers["x-occ-compression-ms"]) >= 0


def test_tools_round_trip(proxy: str) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    client = sdk(proxy)
    first = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        tool_choice="auto",
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "weather"
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    second = client.chat.completions.create(
        model="gpt-4o", messages=history, extra_headers={"x-occ-compress": "off"}
    )
    assert echoed(second)["messages"] == history


def test_streaming_is_relayed(proxy: str) -> None:
    stream = sdk(proxy).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage.total_tokens == 13


def test_truncated_stream_ends_with_an_error_event(proxy: str) -> None:
    with httpx.stream(
        "POST",
        f"{proxy}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "fault-truncated", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
    ) as response:
        text = "".join(response.iter_text())
    assert response.status_code == 200
    assert '"upstream_stream_error"' in text and text.rstrip().endswith("data: [DONE]")


def test_client_disconnect_cancels_the_upstream_stream(proxy: str) -> None:
    body = {"model": "fault-endless", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream(
        "POST", f"{proxy}/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, json=body
    ) as response:
        first = next(response.iter_lines())
    assert first.startswith("data: ")
    deadline = time.time() + 5
    while not STREAM_EVENTS and time.time() < deadline:
        time.sleep(0.05)
    assert STREAM_EVENTS == ["cancelled"]


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("fault-500", 502, "upstream_error"),
        ("fault-429", 429, "rate_limit"),
        ("fault-garbage", 502, "upstream_malformed"),
        ("fault-slow", 504, "upstream_timeout"),
        ("dead-model", 502, "upstream_unreachable"),
        ("reset-model", 502, "upstream_unreachable"),
        ("unknown-model", 404, "model_not_found"),
    ],
)
def test_upstream_faults_map_to_openai_errors(proxy: str, model: str, status: int, code: str) -> None:
    response = httpx.post(
        f"{proxy}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=30,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and set(response.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }


def test_errors_of_the_proxy_itself(proxy: str) -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with pytest.raises(openai.AuthenticationError):
        sdk(proxy, key="wrong").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
        )
    assert httpx.post(f"{proxy}/v1/chat/completions", json={}).status_code == 401
    bad = httpx.post(f"{proxy}/v1/chat/completions", headers=headers, content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert (
        httpx.post(f"{proxy}/v1/chat/completions", headers=headers, json={"model": "gpt-4o"}).status_code
        == 400
    )
    assert httpx.get(f"{proxy}/v1/nothing", headers=headers).status_code == 404
    big = httpx.post(
        f"{proxy}/v1/chat/completions",
        headers=headers,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 300_000}]},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    models = httpx.get(f"{proxy}/v1/models", headers=headers).json()
    assert {m["id"] for m in models["data"]} >= {"local", "gpt-*"}
    assert httpx.get(f"{proxy}/healthz").json()["status"] == "ok"


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """What the servers running in this process log (uvicorn's error log and the server's own)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger("uvicorn.error"), logging.getLogger("occ_research")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.exc_info or r.levelno >= logging.ERROR]


def test_presets_are_chosen_by_name_only(
    proxy: str, tmp_path: Any, server_log: list[logging.LogRecord]
) -> None:
    """A client names one of the presets the server loaded at start; a path, even to a readable preset or
    to a TOML file holding secrets, is refused, and nothing of any file comes back."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('database_password = "hunter2-do-not-leak"\n', encoding="utf-8")
    messages = [{"role": "user", "content": LONG + "\n\nWhat is the capital?"}]
    for name in [
        str(secrets),
        "../../secrets.toml",
        "strategies/bm25-q25.toml",
        "压缩",
        "",
        5,
        None,
        ["dedup"],
    ]:
        response = httpx.post(
            f"{proxy}/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY}"},
            json={"model": "gpt-4o", "messages": messages, "occ": {"preset": name}},
            timeout=30,
        )
        assert response.status_code == 400, name
        error = response.json()["error"]
        assert error["param"] == "occ.preset" and error["code"] == "unknown_preset"
        assert "hunter2" not in response.text + str(response.headers)
    assert "hunter2" not in " ".join(r.getMessage() for r in server_log)
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages, extra_body={"occ": {"preset": "dedup"}}
    )
    assert raw.headers["x-occ-strategy"] == "dedup"


def test_the_preset_allow_list_narrows_what_clients_may_name(serve: Any, upstream: str) -> None:
    app = create_app(Settings(presets=("bm25-q25",), routes=(Route("gpt-", f"{upstream}/v1"),), **THREADS))
    base = serve(app)
    messages = [{"role": "user", "content": LONG + "\n\nWhat is the capital?"}]
    refused = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": messages, "occ": {"preset": "dedup"}},
    )
    assert refused.status_code == 400 and "bm25-q25" in refused.json()["error"]["message"]
    with pytest.raises(OCCError, match="no-such-preset"):
        create_app(Settings(presets=("no-such-preset",)))


@pytest.mark.parametrize(
    ("control", "param"),
    [
        ({"rate": 0}, "occ.rate"),
        ({"rate": 1.5}, "occ.rate"),
        ({"rate": "half"}, "occ.rate"),
        ({"rate": True}, "occ.rate"),
        ({"compress": "no"}, "occ.compress"),
        ({"secret": 1}, "occ"),
        ("on", "occ"),
    ],
)
def test_bad_control_fields_are_400s(proxy: str, control: Any, param: str) -> None:
    response = httpx.post(
        f"{proxy}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "occ": control},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_deep_nesting_is_a_400(proxy: str, server_log: list[logging.LogRecord]) -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    deep = b'{"model":"gpt-4o","messages":' + b"[" * 90_000 + b"]" * 90_000 + b"}"
    response = httpx.post(f"{proxy}/v1/chat/completions", headers=headers, content=deep)
    assert response.status_code == 400 and response.json()["error"]["code"] == "nesting_too_deep"
    for depth in (50, 500, 900, 3000):  # deep but parseable, in a field that is passed through
        nested = "[" * depth + "]" * depth
        body = f'{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hi"}}],"extra":{nested}}}'
        response = httpx.post(f"{proxy}/v1/chat/completions", headers=headers, content=body.encode())
        assert response.status_code in (200, 400), (depth, response.text)
    assert tracebacks(server_log) == []


def test_local_model_takes_every_message_shape(local_proxy: str) -> None:
    client = sdk(local_proxy)
    parts = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}],
        max_tokens=4,
    )
    assert parts.choices[0].message.content is not None
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    answer = client.chat.completions.create(model="local", messages=history, max_tokens=4)
    assert answer.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("max_tokens", "x"),
        ("max_tokens", 0),
        ("max_completion_tokens", 2.5),
        ("temperature", "hot"),
        ("temperature", 9),
        ("top_p", [1]),
        ("stop", 5),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("seed", "a"),
        ("n", 0),
        ("n", True),
        ("presence_penalty", {"a": 1}),
    ],
)
def test_bad_local_model_parameters_are_400s(local_proxy: str, param: str, value: Any) -> None:
    response = httpx.post(
        f"{local_proxy}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "local", "messages": [{"role": "user", "content": "Hi"}], "n": 2, param: value},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_local_model_context_overflow_is_a_400_before_streaming(local_proxy: str) -> None:
    messages = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as raised:
        list(
            sdk(local_proxy).chat.completions.create(
                model="local", messages=messages, stream=True, extra_headers={"x-occ-compress": "off"}
            )
        )
    assert raised.value.code == "context_length_exceeded"


def test_local_model_failure_mid_stream_ends_with_an_error_event(
    local_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injected: the model yields one chunk, then fails."""
    real = LocalLLM.completion_chunks

    def failing(self: LocalLLM, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield next(iter(real(self, *args, **kwargs)))
        raise RuntimeError("llama.cpp broke")

    monkeypatch.setattr(LocalLLM, "completion_chunks", failing)
    stream = sdk(local_proxy).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True
    )
    with pytest.raises(openai.APIError, match="failed while answering"):
        list(stream)


# strings with non-ASCII text (CJK, emoji, controls, lone surrogates are not JSON-encodable by httpx: left out)
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    # no NaN or Infinity: they are not JSON (a 400 of their own, tested with the limits)
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


malformed_bodies = st.one_of(
    st.binary(max_size=200).map(lambda b: ("raw", b)),
    json_values.map(lambda v: ("json", v)),
    st.fixed_dictionaries({"model": json_values, "messages": json_values}).map(lambda v: ("json", v)),
    st.fixed_dictionaries(
        {
            "model": st.just("gpt-4o"),
            "messages": st.lists(
                st.dictionaries(
                    st.sampled_from(["role", "content", "tool_calls", "name"]), json_values, max_size=3
                ),
                max_size=3,
            ),
        }
    ).map(lambda v: ("json", v)),
    st.fixed_dictionaries(
        {
            "model": st.just("gpt-4o"),
            "messages": st.just([{"role": "user", "content": "hi"}]),
            "stream": json_values.filter(lambda v: not isinstance(v, bool)),
        }
    ).map(lambda v: ("json", v)),
    # the control field: anything, non-ASCII text included
    st.fixed_dictionaries(
        {
            "model": st.just("gpt-4o"),
            "messages": st.just([{"role": "user", "content": "hi"}]),
            "occ": json_values
            | st.dictionaries(st.sampled_from(["preset", "rate", "compress"]), json_values, min_size=1),
        }
    )
    .filter(lambda v: v["occ"] is not None and v["occ"] != {})
    .map(lambda v: ("json", v)),
    # nesting from shallow to far deeper than Python's recursion limit, where messages or a field go
    st.tuples(st.integers(1, 90_000), st.sampled_from(["messages", "occ", "model"])).map(
        lambda t: ("raw", f'{{"model":"gpt-4o","{t[1]}":{nested(t[0])}}}'.encode())
    ),
)


def _is_valid(kind: str, value: Any) -> bool:
    if (
        kind != "json"
        or not isinstance(value, dict)
        or not isinstance(value.get("model"), str)
        or not value["model"]
    ):
        return False
    try:
        from occ_research._messages import normalize_prompt

        normalize_prompt(value.get("messages"))
    except Exception:
        return False
    return isinstance(value.get("stream", False), bool) and "occ" not in value


@pytest.fixture(scope="module")
def fuzz_client(proxy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy, headers=JSON_AUTH, timeout=30) as client:
        yield client


@settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=malformed_bodies)
def test_fuzzed_bodies_get_openai_errors(
    fuzz_client: httpx.Client, server_log: list[logging.LogRecord], body: tuple[str, Any]
) -> None:
    kind, value = body
    if _is_valid(kind, value):
        return  # a valid request by chance: not what this test is about
    content = value if kind == "raw" else json.dumps(value).encode()
    response = fuzz_client.post("/v1/chat/completions", content=content)
    if response.status_code == 200:  # a valid control field by chance: forwarded, never lost
        assert response.json()["object"] == "chat.completion"
    else:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert tracebacks(server_log) == []


# values OpenAI refuses for the parameters the local model honours: wrong types, out of range
wrong_values = {
    "max_tokens": json_values.filter(
        lambda v: v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1)
    ),
    "temperature": texts | st.lists(st.integers()) | st.floats(2.01, 1e9) | st.floats(-1e9, -0.01),
    "top_p": texts | st.booleans() | st.floats(1.01, 1e9) | st.dictionaries(texts, st.integers()),
    "stop": st.integers() | st.lists(st.integers(), min_size=1) | st.lists(texts, min_size=5, max_size=8),
    "seed": texts
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.booleans(),
    "n": st.integers(max_value=0) | st.integers(min_value=9) | texts | st.just(True),
    "presence_penalty": texts | st.floats(2.01, 100),
    "frequency_penalty": st.lists(st.floats(allow_nan=False, allow_infinity=False)) | st.floats(-100, -2.01),
}


@pytest.fixture(scope="module")
def local_fuzz_client(local_proxy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_proxy, headers=JSON_AUTH, timeout=30) as client:
        yield client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(param=st.sampled_from(sorted(wrong_values)), data=st.data(), stream=st.booleans())
def test_fuzzed_local_model_parameters_get_400s(
    local_fuzz_client: httpx.Client, server_log: list[logging.LogRecord], param: str, data: Any, stream: bool
) -> None:
    value = data.draw(wrong_values[param])
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": "Hi 你好"}],
        "stream": stream,
        param: value,
    }
    response = local_fuzz_client.post("/v1/chat/completions", content=json.dumps(body).encode())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert tracebacks(server_log) == []
