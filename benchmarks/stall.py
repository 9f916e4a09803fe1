"""Does the event loop stall while big prompts are compressed? Latency of small uncompressed requests, alone
and during concurrent compressions of ~100k-token prompts.

    python benchmarks/stall.py --requests 400 --compressions 4

Starts the fast upstream of ``load.py`` and the proxy (``occ serve``'s app under uvicorn), each in its own
process, then sends small requests with ``x-occ-compress: off`` one at a time: first alone, then while
``--compressions`` clients keep sending ~100k-token prompts to be compressed (the time budget raised so
they really run). Reports p50/p99 of both and the ratio of the p99s. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from load import free_port, rss_mib, start  # type: ignore[import-not-found]

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
    parser.add_argument(
        "--big-uncompressed",
        action="store_true",
        help="send the big prompts with compression off: the share of the stall that is not compression",
    )
    args = parser.parse_args()

    upstream_port, proxy_port = free_port(), free_port()
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(here)}
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(
            f"compression_budget_ms = 600000\ncompression_threads = {args.compressions}\n"
            "max_body_bytes = 16777216\n"
        )
    upstream = start(["load:upstream_app"], env, upstream_port)
    proxy_env = {
        **os.environ,
        "OCC_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "OCC_PRESET": "bm25-q25",
        "OCC_SERVER_CONFIG": config.name,
    }
    proxy_env.pop("OCC_API_KEYS", None)
    proxy = start(["occ_research.server._app:create_app", "--factory"], proxy_env, proxy_port)
    url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    big = {"model": "gpt-4o", "messages": big_prompt(args.tokens)}
    stop = threading.Event()
    done: list[float] = []
    big_headers = {"x-occ-compress": "off"} if args.big_uncompressed else {}
    expected = "off" if args.big_uncompressed else "on"

    def compress_forever() -> None:
        with httpx.Client(timeout=600) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = client.post(url, json=big, headers=big_headers)
                assert response.status_code == 200, response.text
                done.append(time.perf_counter() - started)
                assert response.headers["x-occ-compression"] == expected, response.headers

    try:
        latencies(url, 50)  # warm up
        alone = latencies(url, args.requests)
        workers = [threading.Thread(target=compress_forever, daemon=True) for _ in range(args.compressions)]
        for worker in workers:
            worker.start()
        time.sleep(2)  # the compressions are under way
        busy = latencies(url, args.requests)
        stop.set()
        for worker in workers:
            worker.join(600)
        what = "uncompressed big requests" if args.big_uncompressed else "compressions"
        print(
            f"{args.requests} small requests per phase, {args.compressions} concurrent ~{args.tokens // 1000}k-token "
            f"{what}, {os.cpu_count()} cores\n"
        )
        print("| phase | p50 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|")
        for name, values in (("alone", alone), (f"during {args.compressions} {what}", busy)):
            print(f"| {name} | {p(values, 50):.2f} | {p(values, 99):.2f} | {max(values):.2f} |")
        print(
            f"\np99 ratio: {p(busy, 99) / p(alone, 99):.2f}x; big requests completed: {len(done)}, "
            f"mean {statistics.mean(done):.2f} s each; proxy resident memory {rss_mib(proxy.pid):.0f} MiB"
        )
    finally:
        os.unlink(config.name)
        for process in (proxy, upstream):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
