"""Milliseconds of ``hybrid`` per prompt at about 1.2k and 10k tokens, cold and warm, next to ``bm25``.

    python benchmarks/hybrid_latency.py [--n 50] [--strategies hybrid bm25]

NQ-open prompts with 10 passages (about 1.2k tokens) and 80 passages (about 10k tokens), rate 0.125. "cold":
the per-text embedding caches emptied before each call (the static table stays loaded: it is read once per
process); "warm": the same prompt again, its sentences cached (RAG chunks recurring across requests). Each
time is also given as a ratio to one tiktoken encoding pass of the same prompt, measured just before it, so
that a busy machine moves both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

from occ_research._static_embeddings import default_static_embedder
from occ_research._tokens import encoding_for_model
from occ_research.evals._datasets import load_examples
from occ_research.strategies import make_strategy

MODEL = "gpt-4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--strategies", nargs="+", default=["hybrid", "bm25"])
    args = parser.parse_args()
    encode = encoding_for_model(MODEL).encode_ordinary
    static = default_static_embedder()
    print("| strategy | prompt tokens (median) | n | cold ms | cold x encode | warm ms | warm x encode |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for documents in (10, 80):
        examples = load_examples("nq-multidoc", n=args.n, documents=documents, seed=7)
        for name in args.strategies:
            strategy = make_strategy(name)
            strategy.compress(examples[0].messages, rate=0.125, model=MODEL)
            cold, warm, cold_x, warm_x, sizes = [], [], [], [], []
            for example in examples:
                text = str(example.messages[0]["content"])
                sizes.append(len(encode(text)))
                static.clear_cache()
                for times, ratios in ((cold, cold_x), (warm, warm_x)):
                    started = time.perf_counter()
                    encode(text)
                    encoding = time.perf_counter() - started
                    started = time.perf_counter()
                    strategy.compress(example.messages, rate=0.125, model=MODEL)
                    seconds = time.perf_counter() - started
                    times.append(1000 * seconds)
                    ratios.append(seconds / encoding)
            print(
                f"| {name} | {statistics.median(sizes):.0f} | {len(examples)} "
                f"| {statistics.median(cold):.1f} | {statistics.median(cold_x):.1f} "
                f"| {statistics.median(warm):.1f} | {statistics.median(warm_x):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
