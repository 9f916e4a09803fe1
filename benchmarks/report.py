"""Turn a pytest-benchmark JSON file into the README's Markdown table (median ms, peak MiB, growth)."""

from __future__ import annotations

import json
import math
import platform
import sys
from collections import defaultdict
from pathlib import Path


def main(path: str) -> None:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    table: dict[tuple[str, str], dict[int, tuple[float, float, int]]] = defaultdict(dict)
    encode: dict[tuple[str, int], float] = {}  # one tiktoken pass over the same text, same run
    for bench in data["benchmarks"]:
        if bench["group"].startswith("model-"):
            continue
        params, info = bench["params"], bench["extra_info"]
        median_ms = bench["stats"]["median"] * 1000
        if bench["name"].startswith("test_encode_latency"):
            encode[(params["source"], params["size"])] = median_ms
            continue
        table[(params["name"], params["source"])][params["size"]] = (
            median_ms,
            info["peak_mib"],
            info["tokens"],
        )
    machine = data["machine_info"]
    print(
        f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine['python_version']}; "
        f'{data["datetime"][:10]}. Median of pytest-benchmark rounds, rate 0.25; "x encode" = the median '
        "over one tiktoken encoding pass of the same text, measured in the same run.\n"
    )
    print(
        "| strategy | text | 1k tokens ms | 10k tokens ms | 100k tokens ms | x encode at 10k | x encode at 100k "
        "| peak MiB at 100k | growth exponent 10k->100k |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for source in sorted({source for source, _ in encode}):
        cells = [
            f"{encode[(source, s)]:.2f}" if (source, s) in encode else "-" for s in (1000, 10000, 100000)
        ]
        print(f"| *one encoding pass* | {source} | {' | '.join(cells)} | 1 | 1 | - | - |")
    for (name, source), sizes in sorted(table.items()):
        cells = [f"{sizes[s][0]:.2f}" if s in sizes else "-" for s in (1000, 10000, 100000)]
        ratios = [
            f"{sizes[s][0] / encode[(source, s)]:.1f}" if s in sizes and (source, s) in encode else "-"
            for s in (10_000, 100_000)
        ]
        growth = "-"
        if 10000 in sizes and 100000 in sizes:
            (t1, _, n1), (t2, _, n2) = sizes[10000], sizes[100000]
            growth = f"{math.log(t2 / t1) / math.log(n2 / n1):.2f}"
        peak = f"{sizes[100000][1]:.0f}" if 100000 in sizes else "-"
        print(f"| {name} | {source} | {' | '.join(cells)} | {' | '.join(ratios)} | {peak} | {growth} |")
    model_table(data)


def model_table(data: dict[str, object]) -> None:
    benches = [b for b in data["benchmarks"] if b["group"].startswith("model-")]  # type: ignore[index,union-attr]
    if not benches:
        return
    print("\n| model-based strategy | text | tokens | median s | s per 1k tokens |")
    print("|---|---|---:|---:|---:|")
    for bench in sorted(benches, key=lambda b: (b["params"]["name"], b["params"]["source"])):
        seconds, tokens = bench["stats"]["median"], bench["extra_info"]["tokens"]
        print(
            f"| {bench['params']['name']} | {bench['params']['source']} | {tokens} | {seconds:.2f} | {seconds / tokens * 1000:.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results.json")
