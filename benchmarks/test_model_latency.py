"""Latency of the model-based strategies per 1k input tokens, caches cleared before every round.

The LLM call cache is turned off and the in-process log-probability and embedding caches are emptied in
each round's setup, so every round pays for the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from occ_research._embeddings import default_embedder
from occ_research._presets import load_preset
from occ_research.llm._local import RECENT_LOGPROBS
from occ_research.strategies import Strategy, make_strategy
from occ_research.strategies._summarize import cached_llm

from .test_latency import RATE, prompt


@pytest.fixture(scope="module", autouse=True)
def no_llm_call_cache() -> Iterator[None]:
    """The LLM clients of this module are made without the on-disk call cache (and dropped afterwards)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OCC_LLM_CACHE", "0")
        cached_llm.cache_clear()
        yield
    cached_llm.cache_clear()


def clear_caches() -> None:
    RECENT_LOGPROBS.clear()
    default_embedder().clear_cache()


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
