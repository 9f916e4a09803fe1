"""Does the event loop stall while big prompts are compressed? Latency of small uncompressed requests, alone
and during concurrent compressions of ~100k-token prompts.

    python benchmarks/stall.py --requests 400 --compressions 4

Starts the fast upstream of ``load.py`` and ``occ serve`` (one process, with ``--compressions`` compression
workers), then sends small requests with ``x-occ-compress: off`` one at a time: first alone, then while
``--compressions`` clients keep sending ~100k-token prompts to be compressed (the time budget raised so
they really run). Reports p50/p99 of both and the ratio of the p99s. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from load import free_port, rss_mib, start, start_proxy  # type: ignore[import-not-found]

SMALL = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say ok."}]}


def big_prompt(tokens: int) -> list[dict[str, str]]:
    sentence = "Sentence {i} tells about topic {t} and the river that runs past the old mill in spring."
    words = 18  # about 20 tokens per sentence
    text = " ".join(sentence.format(i=i, t=i % 97) for i in range(tokens // words))
    return [{"role": "user", "content": f"{text}\n\nWhich topic comes up most?"}]


def latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            response = client.post(url, json=SMALL, headers={"x-occ-compress": "off"})
            out.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and response.headers["x-occ-compression"] == "off"
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="small requests per phase")
    parser.add_argument("--compressions", type=int, default=4, help="concurrent big compressions")
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens per big prompt")
    parser.add_argument("--nice", type=int, default=10, help="the compression workers' compression_nice")
    parser.add_argument(
        "--big-uncompressed",
        action="store_true",
        help="send the big prompts with compression off: the share of the stall that is not compression",
    )
    args = parser.parse_args()

    upstream_port, proxy_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(
            f"compression_budget_ms = 600000\ncompression_workers = {args.compressions}\n"
            f"max_body_bytes = 16777216\ncompression_nice = {args.nice}\n"
        )
    servers: list[subprocess.Popen[bytes]] = []
    try:
        servers.append(start(["load:upstream_app"], env, upstream_port))
        servers.append(start_proxy(upstream_port, proxy_port, config=config.name))
        measure(args, servers[-1], proxy_port)
    finally:
        os.unlink(config.name)
        for process in servers:
            process.terminate()
            process.wait(30)


def measure(args: argparse.Namespace, proxy: subprocess.Popen[bytes], port: int) -> None:
    """Both phases against the running proxy; prints the table."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    # the big requests come from processes of their own: in threads of this one they would hold its
    # interpreter lock while serialising 500 KB bodies, and the small requests' latency would measure that
    context = multiprocessing.get_context("spawn")
    stop, done = context.Event(), context.Queue()
    senders = [
        context.Process(
            target=send_big_forever, args=(url, args.tokens, args.big_uncompressed, stop, done), daemon=True
        )
        for _ in range(args.compressions)
    ]
    try:
        latencies(url, 50)  # warm up
        alone = latencies(url, args.requests)
        for sender in senders:
            sender.start()
        time.sleep(5)  # the compressions are under way
        busy = latencies(url, args.requests)
        stop.set()
        durations: list[float] = []
        while any(sender.is_alive() for sender in senders) or not done.empty():
            with contextlib.suppress(queue.Empty):  # drained while they finish (a queue must be read)
                durations.append(done.get(timeout=0.1))
        what = "uncompressed big requests" if args.big_uncompressed else "compressions"
        print(
            f"{args.requests} small requests per phase, {args.compressions} concurrent ~{args.tokens // 1000}k-token "
            f"{what}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end\n"
        )
        print("| phase | p50 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|")
        for name, values in (("alone", alone), (f"during {args.compressions} {what}", busy)):
            print(f"| {name} | {p(values, 50):.2f} | {p(values, 99):.2f} | {max(values):.2f} |")
        print(
            f"\np99 ratio: {p(busy, 99) / p(alone, 99):.2f}x; big requests completed: {len(durations)}, "
            f"mean {statistics.mean(durations) if durations else float('nan'):.2f} s each; "
            f"proxy resident memory (with its compression workers) {rss_mib(proxy.pid):.0f} MiB"
        )
    finally:
        stop.set()


def send_big_forever(url: str, tokens: int, uncompressed: bool, stop: Any, done: Any) -> None:
    """One client sending big prompts back to back until ``stop`` is set; each one's seconds go to ``done``."""
    body = json.dumps({"model": "gpt-4o", "messages": big_prompt(tokens)}).encode()
    headers = {"content-type": "application/json", **({"x-occ-compress": "off"} if uncompressed else {})}
    expected = "off" if uncompressed else "on"
    with httpx.Client(timeout=600) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["x-occ-compression"] == expected, response.headers
            done.put(time.perf_counter() - started)


if __name__ == "__main__":
    main()
