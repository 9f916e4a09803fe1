"""Compression latency and peak memory per strategy on real text at 1k, 10k and 100k tokens, next to one
tiktoken encoding pass over the same text (the floor: every compression counts its prompt once).

Run: ``pytest benchmarks --benchmark-json=benchmarks/results.json`` then
``python benchmarks/report.py benchmarks/results.json`` for the README table.
"""

from __future__ import annotations

import tracemalloc
from functools import cache
from typing import Any

import pytest

from occ_research._tokens import DEFAULT_MODEL, count_tokens, encoding_for_model
from occ_research.evals._datasets import load_examples
from occ_research.strategies import STRATEGIES, make_strategy

SIZES = [1_000, 10_000, 100_000]
RATE = 0.25
#: strategies that run a model per prompt: measured per 1k tokens in test_model_latency.py (embed, selfinfo,
#: summarize), or compared as a peer (llmlingua, README "Against the peer")
MODEL_BASED = {n for n in STRATEGIES.names() if STRATEGIES.get(n).uses_model}


@cache
def prompt(source: str, size: int) -> tuple[list[dict[str, Any]], str]:
    """About ``size`` tokens of real text: QMSum transcript lines, or whole ShareGPT messages."""
    if source == "qmsum":
        examples = load_examples("qmsum", n=40)
        lines = [
            line for e in examples[::4] for line in e.messages[1]["content"].split("\n\n")[0].splitlines()
        ]
        question = examples[0].question
        kept: list[str] = []
        for line in lines:
            if count_tokens("\n".join([*kept, line])) > size:
                break
            kept.append(line)
        return [{"role": "user", "content": "\n".join(kept) + "\n\n" + question}], question
    chats = load_examples("sharegpt-chat", n=400)
    messages: list[dict[str, Any]] = []
    for chat in chats:
        for message in chat.messages:
            if count_tokens([*messages, message]) > size:
                return messages, chats[0].question
            messages.append(message)
    return messages, chats[0].question


def peak_mib(fn: Any) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("source", ["qmsum", "sharegpt"])
@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if n not in MODEL_BASED])
def test_compress_latency(benchmark: Any, name: str, source: str, size: int) -> None:
    messages, question = prompt(source, size)
    strategy = make_strategy(name)

    def run() -> Any:
        return strategy.compress(messages, rate=RATE, question=question)

    result = run()  # warm up: lazy imports, tokenizer load
    benchmark.extra_info.update(
        tokens=result.original_tokens,
        achieved_rate=round(result.rate, 4),
        peak_mib=round(peak_mib(run), 1),
    )
    benchmark.group = f"{source}-{size}"
    benchmark(run)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("source", ["qmsum", "sharegpt"])
def test_encode_latency(benchmark: Any, source: str, size: int) -> None:
    """One tiktoken pass over the prompt's text, in the same run: the report divides by it ("x encode")."""
    messages, _ = prompt(source, size)
    text = "\n".join(m["content"] for m in messages)
    encode = encoding_for_model(DEFAULT_MODEL).encode_ordinary
    benchmark.extra_info.update(tokens=len(encode(text)), peak_mib=0.0)
    benchmark.group = f"{source}-{size}"
    benchmark(encode, text)
