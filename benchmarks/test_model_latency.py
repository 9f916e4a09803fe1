"""Latency of the model-based strategies per 1k input tokens, caches cleared before every round.

The LLM call cache is turned off and the in-process log-probability and embedding caches are emptied in
each round's setup, so every round pays for the model.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from occ_research.embeddings import default_embedder
from occ_research.llm import local
from occ_research.presets import load_preset
from occ_research.strategies import Strategy, make_strategy

from .test_latency import RATE, prompt

os.environ["OCC_LLM_CACHE"] = "0"


def clear_caches() -> None:
    local._recent_logprobs.clear()
    default_embedder()._cache.clear()


STRATEGIES: dict[str, Any] = {
    "embed": lambda: make_strategy("embed"),
    "selfinfo": lambda: make_strategy("selfinfo"),
    "summarize": lambda: make_strategy("summarize", mode="document"),
    "coarse2fine": lambda: load_preset("coarse2fine").strategy,
}


@pytest.mark.parametrize("source", ["qmsum", "sharegpt"])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_model_latency(benchmark: Any, name: str, source: str) -> None:
    messages, question = prompt(source, 1_000)
    strategy: Strategy = STRATEGIES[name]()
    result = strategy.compress(messages, rate=RATE, question=question)  # warm up: model load
    benchmark.extra_info.update(
        tokens=result.original_tokens, achieved_rate=round(result.rate, 4), note=result.note
    )
    benchmark.group = f"model-{source}-1000"
    benchmark.pedantic(
        lambda: strategy.compress(messages, rate=RATE, question=question),
        setup=clear_caches,
        rounds=3,
        iterations=1,
    )
