"""Load test of the reference server on loopback: requests/s and the latency the proxy adds.

    apt-get install wrk && python benchmarks/load.py --seconds 10 --concurrency 64

Starts a fast OpenAI-compatible upstream (a bare ASGI app under uvicorn) and the proxy (``occ serve``'s app
under uvicorn, pointed at it), each in its own process, then sends the same load with wrk straight to the
upstream and through the proxy with compression off and on, streaming and not. Every response is checked
(a chat completion, or an SSE stream ending in ``data: [DONE]``); the proxy's resident memory is read before
and after. Loopback only; bounded in time. Load generator, proxy and upstream share the machine's cores.
"""

from __future__ import annotations

import argparse
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
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
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
  if status ~= 200 or not string.find(body, [=[%(expect)s]=], 1, true) then failures = failures + 1 end
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
    url: str, body: dict[str, Any], headers: dict[str, str], seconds: int, concurrency: int
) -> dict[str, Any]:
    """Run wrk for ``seconds`` at ``concurrency`` connections; every response body is checked."""
    expect = "data: [DONE]" if body.get("stream") else '"choices"'
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % {"body": json.dumps(body), "headers": header_lines, "expect": expect})
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
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    upstream_port, proxy_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    upstream = start(["load:upstream_app"], env, upstream_port)
    proxy_env = {
        **os.environ,
        "OCC_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "OCC_PRESET": "bm25-q25",
    }
    proxy_env.pop("OCC_API_KEYS", None)
    proxy = start(["occ_research.server._app:create_app", "--factory"], proxy_env, proxy_port)
    short = [{"role": "user", "content": "Say ok."}]
    document = " ".join(f"Sentence {i} tells about topic {i % 17} in plain words." for i in range(90))
    long = [{"role": "user", "content": f"{document}\n\nWhich topic comes up most?"}]
    direct = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    proxied = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    scenarios = [
        ("upstream directly", direct, {"model": "gpt-4o", "messages": short}, {}),
        (
            "proxy, compression off",
            proxied,
            {"model": "gpt-4o", "messages": short},
            {"x-occ-compress": "off"},
        ),
        ("proxy, ~1k-token prompt compressed", proxied, {"model": "gpt-4o", "messages": long}, {}),
        ("upstream directly, streaming", direct, {"model": "gpt-4o", "messages": short, "stream": True}, {}),
        (
            "proxy, compression off, streaming",
            proxied,
            {"model": "gpt-4o", "messages": short, "stream": True},
            {"x-occ-compress": "off"},
        ),
    ]
    try:
        load(proxied, scenarios[2][2], scenarios[2][3], 3, args.concurrency)  # warm up: imports, tokenizer
        memory_before = rss_mib(proxy.pid)
        print(
            f"wrk, {args.seconds} s per scenario, {args.concurrency} connections, loopback, {os.cpu_count()} cores\n"
        )
        print("| scenario | requests | failed | requests/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, url, body, headers in scenarios:
            r = load(url, body, headers, args.seconds, args.concurrency)
            print(
                f"| {name} | {r['requests']} | {r['failures']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
            )
        print(
            f"\nproxy resident memory: {memory_before:.0f} MiB after warm-up, {rss_mib(proxy.pid):.0f} MiB after the run"
        )
    finally:
        for process in (proxy, upstream):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
