"""Load test of the reference server on loopback: requests/s, latency, and the server's CPU per request.

    apt-get install wrk && python benchmarks/load.py --seconds 10 --concurrency 32

Starts a fast OpenAI-compatible upstream (a bare ASGI app under uvicorn), a minimal aiohttp pass-through
(the floor a Python proxy can reach: read the body, parse it, forward it with a pooled client, relay the
answer), and ``occ serve`` with ``--workers 1`` and ``--workers 2`` (pointed at the upstream), each in its
own processes; then sends the same load with wrk straight to the upstream, through the pass-through, and
through each proxy with compression off (``x-occ-compress: off``), on by default for a short prompt (which
the server skips, as too short to compress) and on for a ~1k-token prompt, streaming and not. Every response is
checked (a chat completion, or an SSE stream ending in ``data: [DONE]``). CPU per request is the CPU time
the server under test (all its processes: uvicorn's workers, the compression workers) spent during the
scenario, divided by the requests answered. Loopback only; bounded in time. The load generator, the
upstream and the server under test share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-load",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
).encode()
CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\n'
HERE = Path(__file__).resolve().parent


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fast upstream: reads the body, answers at once (JSON, or three SSE events)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    stream = b'"stream": true' in body or b'"stream":true' in body
    headers = [(b"content-type", b"text/event-stream" if stream else b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if stream:
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
    else:
        await send({"type": "http.response.body", "body": COMPLETION})


def serve_passthrough(port: int, upstream: str) -> None:
    """The aiohttp pass-through: the least a Python proxy does per request (parse the JSON body, forward it
    with a pooled client session, relay the answer or the stream chunk by chunk), on uvloop when installed,
    like the proxy. No auth, no checks, no compression, no metrics."""
    from aiohttp import ClientSession, TCPConnector, web

    async def relay(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        session: ClientSession = request.app["session"]
        async with session.post(upstream, data=json.dumps(body).encode(), headers=JSON) as answer:
            if not body.get("stream"):
                return web.Response(
                    body=await answer.read(), status=answer.status, content_type="application/json"
                )
            response = web.StreamResponse(status=answer.status, headers={"content-type": "text/event-stream"})
            try:
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:  # wrk hangs up at the end of a run
                pass
            return response

    async def session(app: web.Application) -> Any:
        app["session"] = ClientSession(connector=TCPConnector(limit=512))
        yield
        await app["session"].close()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", relay)
    app.cleanup_ctx.append(session)
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


JSON = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(process: subprocess.Popen[bytes], port: int, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"server on port {port} exited with {process.returncode}") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start")


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """An ASGI app under uvicorn's command line (the upstream)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    wait_listening(process, port)
    return process


def start_proxy(
    upstream_port: int, port: int, workers: int = 1, config: str = "", preset: str = "bm25-q25"
) -> subprocess.Popen[bytes]:
    """``occ serve`` as a user runs it (its parser and timeouts, uvloop when installed), pointed at the
    upstream, without client keys (loopback)."""
    env = {**os.environ, "OCC_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/v1", "OCC_PRESET": preset}
    env.pop("OCC_API_KEYS", None)
    env.pop("OCC_API_KEYS_FILE", None)
    command = [
        sys.executable,
        "-m",
        "occ_research.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen([*command, *(["--config", config] if config else [])], env=env)
    wait_listening(process, port)
    settle(process.pid)  # uvicorn's supervisor listens first; its workers then start their lifespans
    return process


def settle(pid: int, seconds: float = 180) -> None:
    """Wait until a server and its processes are idle (every worker started and warmed up): less than
    0.1 s of CPU in a second."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1)
        if cpu_seconds(pid) - before < 0.1:
            return


def start_passthrough(upstream_port: int, port: int) -> subprocess.Popen[bytes]:
    code = (
        f"import load; load.serve_passthrough({port}, 'http://127.0.0.1:{upstream_port}/v1/chat/completions')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(HERE)})
    wait_listening(process, port)
    return process


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


LUA = """
wrk.method = "POST"
wrk.body = [=[%(body)s]=]
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failures = 0; responses = 0 end
function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 or not string.find(body, [=[%(expect)s]=], 1, true) then failures = failures + 1
  elseif %(compressed)s and headers["x-occ-compression"] ~= "on" then failures = failures + 1 end
end
function done(summary, latency, requests)
  local f, r = 0, 0
  for _, t in ipairs(threads) do f = f + t:get("failures"); r = r + t:get("responses") end
  io.write(string.format("CHECKED %%d FAILED %%d ERRORS %%d P50 %%.3f P99 %%.3f\\n", r, f,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def load(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    seconds: int,
    concurrency: int,
    compressed: bool = False,
) -> dict[str, Any]:
    """Run wrk for ``seconds`` at ``concurrency`` connections; every response body is checked, and with
    ``compressed`` its ``x-occ-compression`` must be ``on`` (an original forwarded over budget fails)."""
    expect = "data: [DONE]" if body.get("stream") else '"choices"'
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            LUA
            % {
                "body": json.dumps(body),
                "headers": header_lines,
                "expect": expect,
                "compressed": "true" if compressed else "false",
            }
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(2, concurrency)}",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    checked = re.search(r"CHECKED (\d+) FAILED (\d+) ERRORS (\d+) P50 ([\d.]+) P99 ([\d.]+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not checked or not rps:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "requests": int(checked[1]),
        "failures": int(checked[2]) + int(checked[3]),
        "rps": float(rps[1]),
        "p50_ms": float(checked[4]),
        "p99_ms": float(checked[5]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per scenario")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-stream", action="store_true", help="leave out the streaming scenarios")
    args = parser.parse_args()

    upstream_port, passthrough_port, proxy_ports = free_port(), free_port(), [free_port(), free_port()]
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        servers["upstream"] = start(
            ["load:upstream_app"], {**os.environ, "PYTHONPATH": str(HERE)}, upstream_port
        )
        servers["pass-through"] = start_passthrough(upstream_port, passthrough_port)
        for workers, port in zip((1, 2), proxy_ports, strict=True):
            servers[f"occ serve --workers {workers}"] = start_proxy(upstream_port, port, workers)
        run(args, servers, upstream_port, passthrough_port, proxy_ports)
    finally:
        for process in servers.values():
            process.terminate()
        for process in servers.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def run(
    args: argparse.Namespace,
    servers: dict[str, subprocess.Popen[bytes]],
    upstream_port: int,
    passthrough_port: int,
    proxy_ports: list[int],
) -> None:
    """Every scenario, with the servers started; prints the table."""
    short = [{"role": "user", "content": "Say ok."}]
    document = " ".join(f"Sentence {i} tells about topic {i % 17} in plain words." for i in range(90))
    long = [{"role": "user", "content": f"{document}\n\nWhich topic comes up most?"}]
    plain = {"model": "gpt-4o", "messages": short}
    streamed = {**plain, "stream": True}
    off = {"x-occ-compress": "off"}
    url = {
        "upstream": f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
        "pass-through": f"http://127.0.0.1:{passthrough_port}/v1/chat/completions",
        **{
            f"occ serve --workers {w}": f"http://127.0.0.1:{p}/v1/chat/completions"
            for w, p in zip((1, 2), proxy_ports, strict=True)
        },
    }
    scenarios: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        ("upstream", "short prompt", plain, {}),
        ("pass-through", "short prompt", plain, {}),
    ]
    for server in ("occ serve --workers 1", "occ serve --workers 2"):
        scenarios += [
            (server, "short prompt, compression off", plain, off),
            (server, "short prompt, compression on (too short: skipped)", plain, {}),
            (server, "~1k-token prompt compressed", {"model": "gpt-4o", "messages": long}, {}),
        ]
    if not args.no_stream:
        scenarios += [
            ("upstream", "short prompt, streaming", streamed, {}),
            ("pass-through", "short prompt, streaming", streamed, {}),
            ("occ serve --workers 1", "short prompt, compression off, streaming", streamed, off),
            ("occ serve --workers 2", "short prompt, compression off, streaming", streamed, off),
        ]
    for name in url:  # warm up: imports, connections, the compression workers' first prompts
        load(url[name], {"model": "gpt-4o", "messages": long} if "occ" in name else plain, {}, 3, 8)
    memory = {name: rss_mib(process.pid) for name, process in servers.items()}
    print(
        f"wrk, {args.seconds} s per scenario, {args.concurrency} connections, loopback, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start\n"
    )
    print("| server | request | requests | failed | requests/s | p50 ms | p99 ms | server CPU ms/request |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    rps: dict[tuple[str, str], float] = {}
    for name, what, body, headers in scenarios:
        pid = servers[name].pid
        cpu = cpu_seconds(pid)
        r = load(url[name], body, headers, args.seconds, args.concurrency, "compressed" in what)
        per_request = (cpu_seconds(pid) - cpu) * 1000 / max(1, r["requests"])
        rps[name, what] = r["rps"]
        print(
            f"| {name} | {what} | {r['requests']} | {r['failures']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {per_request:.3f} |",
            flush=True,
        )
    print()
    for name, what in rps:  # the plain relay against the pass-through, the same request in this run
        if name.startswith("occ serve") and "short prompt" in what:
            floor = rps.get(
                ("pass-through", "short prompt, streaming" if "streaming" in what else "short prompt")
            )
            if floor:
                print(f"{name}, {what}: {rps[name, what] / floor:.0%} of the pass-through's requests/s")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    for name, process in servers.items():
        print(
            f"{name}: resident memory {memory[name]:.0f} MiB after warm-up, {rss_mib(process.pid):.0f} MiB after"
        )


if __name__ == "__main__":
    main()
