"""Limits and hygiene: slow clients, non-JSON bodies, NaN, the presets a client may pick, settings and keys
files, and the browser rules of no-keys mode.

The server runs in uvicorn on loopback (with the options ``occ serve`` gives it) and is driven by httpx and
raw sockets. Fake: the paid upstream is the echoing upstream of ``test_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from occ_research.cli import main
from occ_research.server import Route, Settings, SettingsError, create_app
from occ_research.server._compression import selectable_presets
from occ_research.server._protocol import HTTPTOOLS
from occ_research.server._relay import Interrupt
from occ_research.server._routes import read_body
from occ_research.strategies import make_strategy, runs_model
from tests import test_server
from tests.test_server import KEY, LONG, THREADS

serve, upstream = test_server.serve, test_server.upstream  # the same fixtures

JSON_AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
HI = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module", params=["h11", "httptools"])
def strict(request: pytest.FixtureRequest, serve: Any, upstream: str) -> str:
    """A server with short client timeouts, under each HTTP parser uvicorn offers."""
    if request.param == "httptools" and HTTPTOOLS is None:
        pytest.skip("httptools is not installed")
    settings = Settings(
        api_keys=(KEY,),
        routes=(Route("gpt-", f"{upstream}/v1"), Route("fault-", f"{upstream}/v1")),
        header_timeout=0.5,
        body_timeout=0.5,
        **THREADS,
    )
    return str(serve(create_app(settings), request.param))


@pytest.fixture(scope="module")
def open_server(serve: Any, upstream: str) -> str:
    """No keys: loopback only."""
    return str(serve(create_app(Settings(routes=(Route("gpt-", f"{upstream}/v1"),), **THREADS))))


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.settimeout(15)  # a bound on waiting: the server's timeouts are far shorter
    return connection


def read_all(connection: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_client_trickling_headers_is_disconnected(strict: str) -> None:
    closed = False
    with connect(strict) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        connection.settimeout(0.05)
        for _ in range(200):  # one header byte at a time, never finishing (slowloris)
            try:
                connection.sendall(b"X")
                closed = connection.recv(65536) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            break
    assert closed  # closed without an answer, long before the client ran out of bytes to trickle


def test_a_silent_new_connection_is_closed(strict: str) -> None:
    with connect(strict) as connection:
        assert read_all(connection) == b""


def test_a_body_that_does_not_arrive_is_a_408(strict: str) -> None:
    with connect(strict) as connection:
        connection.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n".encode()
            + b'Content-Length: 200\r\n\r\n{"model":'
        )
        answer = read_all(connection)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


def test_oversized_headers_are_refused(strict: str) -> None:
    with connect(strict) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may hang up before the end
            connection.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100_000
            )
        answer = read_all(connection)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))  # h11 says 400, httptools 431


def http_request(body: dict[str, Any], close: bool = False) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        + ("Connection: close\r\n" if close else "")
    )
    return head.encode() + b"\r\n" + data


def test_a_pipelined_request_is_answered_however_long_it_takes(strict: str) -> None:
    """Its headers arrived with the first request's: the header timeout (0.5 s) does not cut its answer
    (the upstream takes 3 s)."""
    slow = {**HI, "model": "fault-slow"}
    with connect(strict) as connection:
        connection.sendall(http_request(HI) + http_request(slow, close=True))
        answer = read_all(connection)
    assert answer.count(b"HTTP/1.1 200") == 2 and answer.count(b'"chat.completion"') == 2


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_400s(strict: str, constant: bytes) -> None:
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"temperature":' + constant + b"}"
    response = httpx.post(f"{strict}/v1/chat/completions", headers=JSON_AUTH, content=body)
    assert response.status_code == 400 and "NaN" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_bodies_must_be_sent_as_json(strict: str, content_type: str | None) -> None:
    headers = {"authorization": f"Bearer {KEY}", **({"content-type": content_type} if content_type else {})}
    response = httpx.post(f"{strict}/v1/chat/completions", headers=headers, content=b'{"model":"gpt-4o"}')
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    ok = httpx.post(
        f"{strict}/v1/chat/completions",
        headers={**JSON_AUTH, "content-type": "application/json; charset=utf-8"},
        json=HI,
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"host": "evil.example"}, 403, "host_not_allowed"),
        ({"host": "evil.example:8000"}, 403, "host_not_allowed"),
        ({"host": "127.0.0.1.evil.example"}, 403, "host_not_allowed"),
        ({"origin": "http://evil.example"}, 403, "origin_not_allowed"),
        ({"origin": "null"}, 403, "origin_not_allowed"),
        ({"host": "localhost:1234", "origin": "http://localhost:3000"}, 200, None),
        ({"host": "[::1]:1234"}, 200, None),
        ({}, 200, None),
    ],
)
def test_without_keys_only_loopback_hosts_and_origins_are_served(
    open_server: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    response = httpx.post(
        f"{open_server}/v1/chat/completions", headers={"content-type": "application/json", **headers}, json=HI
    )
    assert response.status_code == status
    if code:
        assert response.json()["error"]["code"] == code
    assert httpx.get(f"{open_server}/v1/models", headers=headers).status_code == status
    assert httpx.get(f"{open_server}/metrics", headers=headers).status_code == status


def test_a_cross_site_simple_request_is_refused(open_server: str) -> None:
    """What a foreign web page can send without a CORS preflight: text/plain, its own Origin."""
    response = httpx.post(
        f"{open_server}/v1/chat/completions",
        headers={"content-type": "text/plain", "origin": "https://attacker.example"},
        content=b'{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}',
    )
    assert response.status_code == 403


def test_clients_may_pick_only_model_free_presets_by_default(serve: Any, upstream: str) -> None:
    presets = selectable_presets(Settings())
    assert "bm25-q25" in presets and "coarse2fine" not in presets
    assert not any(runs_model(p.strategy) for p in presets.values())
    pipeline = make_strategy("pipeline", steps=[make_strategy("bm25"), make_strategy("selfinfo")])
    assert runs_model(pipeline) and not runs_model(make_strategy("bm25"))
    assert "coarse2fine" in selectable_presets(Settings(presets=("coarse2fine",)))
    base = serve(create_app(Settings(routes=(Route("gpt-", f"{upstream}/v1"),), **THREADS)))
    body = {**HI, "messages": [{"role": "user", "content": LONG}], "occ": {"preset": "coarse2fine"}}
    refused = httpx.post(
        f"{base}/v1/chat/completions", headers={"content-type": "application/json"}, json=body
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_preset"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('preset = "bm25-q25"\ntimeout = "soon"\n', 2, "timeout must be a number"),
        ("min_prompt_tokens = 10\n\nmin_prompt_token = 5\n", 3, "did you mean 'min_prompt_tokens'"),
        ("timeout = 5\n[[upstreams]]\nprefix = 'a'\nbase_url = 'ftp://x'\n", 2, "base_url must be an http"),
        ("timeout = 5\nnot toml at all\n", 2, "not valid TOML"),
        ("access_log = 1\n", 1, "access_log must be true or false"),
        ("timeout = 5\ncompression_threads = 2\n", 2, "did you mean 'compression_workers'"),
        ("compression_nice = -1\n", 1, "compression_nice must be an integer >= 0"),
        (
            "[[upstreams]]\nprefix = 'a'\nbase_url = 'http://x'\n[[upstreams]]\nbase_url = 'http://y'\nkey = 'k'\n",
            4,
            "not 'key'",
        ),
    ],
)
def test_settings_problems_name_the_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as raised:
        Settings.load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}:") and words in message and "\n" not in message


def test_keys_file_comments_blank_lines_bom_and_crlf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.txt"
    path.write_bytes(
        "\ufeffsk-first\r\n# production keys below\r\n\r\n  sk-second   # rotated 2026-11\r\nsk-third\r\n".encode()
    )
    monkeypatch.setenv("OCC_API_KEYS_FILE", str(path))
    monkeypatch.delenv("OCC_API_KEYS", raising=False)
    assert Settings.load().api_keys == ("sk-first", "sk-second", "sk-third")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"sk-one\nsk two words\n", ":2: a key must be one word"),
        (b"# only a comment\n\n", "holds no keys"),
        (b"\xff\xfe not utf-8", "cannot read it"),
    ],
)
def test_bad_keys_files_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, words: str
) -> None:
    path = tmp_path / "keys.txt"
    path.write_bytes(content)
    monkeypatch.setenv("OCC_API_KEYS_FILE", str(path))
    with pytest.raises(SettingsError, match=words) as raised:
        Settings.load()
    assert str(path) in str(raised.value) and "two" not in str(raised.value)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("missing-keys-file", "OCC_API_KEYS_FILE"),
        ("unknown-setting", "server.toml:1: unknown setting 'colour'"),
        ("unknown-preset", "presets not found: no-such-preset"),
    ],
)
def test_occ_serve_exits_2_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    words: str,
) -> None:
    config = tmp_path / "server.toml"
    config.write_text("timeout = 5\n", encoding="utf-8")
    if setup == "missing-keys-file":
        monkeypatch.setenv("OCC_API_KEYS_FILE", str(tmp_path / "nowhere.txt"))
    if setup == "unknown-setting":
        config.write_text("colour = 'blue'\n", encoding="utf-8")
    if setup == "unknown-preset":
        config.write_text("presets = ['no-such-preset']\n", encoding="utf-8")
    assert main(["serve", "--config", str(config), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_only_the_bodys_own_deadline_becomes_a_408() -> None:
    """``read_body`` with a client that never sends its body: its deadline gives a 408, a client hanging up
    a 499 (no answer), and a cancellation from elsewhere (the server stopping) goes on, even one that
    comes together with the deadline."""

    async def silent() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def interrupted(also_cancelled: bool) -> str:
        async def waiting(interrupts: list[Interrupt]) -> str:
            interrupts.append(Interrupt())
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if not interrupts[0].caught():
                    raise
            return "absorbed"

        interrupts: list[Interrupt] = []
        task = asyncio.create_task(waiting(interrupts))
        await asyncio.sleep(0)
        interrupts[0]()  # the deadline ...
        if also_cancelled:
            task.cancel()  # ... and the server stopping, at once
        try:
            return await task
        except asyncio.CancelledError:
            return "cancelled"

    async def run() -> None:
        timed_out = await read_body(silent, {}, 1000, 0.05)
        assert isinstance(timed_out, Response) and timed_out.status_code == 408
        hung_up = await read_body(gone, {}, 1000, 60)
        assert isinstance(hung_up, Response) and hung_up.status_code == 499
        stopping = asyncio.create_task(read_body(silent, {}, 1000, 60))
        await asyncio.sleep(0)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert await interrupted(also_cancelled=False) == "absorbed"
        assert await interrupted(also_cancelled=True) == "cancelled"

    asyncio.run(run())
