"""Library calls leave process-wide state alone: the garbage collector, the environment, ``unittest.mock``.

Model caches are owned by ``ModelCache`` objects and cleared through their public ``clear()``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import pytest
import sklearn  # noqa: F401  # sets variables of its own (KMP_*) when first imported: done here, beforehand

from occ_research import compress
from occ_research._model_cache import ModelCache
from occ_research.evals._datasets import Example
from occ_research.strategies import Candidates, Choice, Pipeline, make_strategy
from occ_research.strategies._dedup import DedupStrategy
from occ_research.strategies._rankers import Bm25Strategy

from .conftest import STRATEGY_NAMES, build

FAST_STRATEGIES = [n for n in STRATEGY_NAMES if not build(n).uses_model]


@dataclass
class GcProbe(Bm25Strategy):
    """BM25 that records, while it chooses, whether the collector is on (not registered)."""

    seen: ClassVar[list[bool]] = []

    def _choose(self, request: Candidates) -> Choice:
        GcProbe.seen.append(gc.isenabled())
        return super()._choose(request)


def test_compression_keeps_the_collector_and_the_environment(qmsum_examples: list[Example]) -> None:
    example = qmsum_examples[0]
    assert gc.isenabled()
    environment = dict(os.environ)
    GcProbe.seen.clear()
    for strategy in [
        *(make_strategy(n) for n in FAST_STRATEGIES),
        GcProbe(),
        Pipeline([DedupStrategy(), GcProbe()]),
    ]:
        compress(example.messages, strategy, rate=0.3, question=example.question)
        assert gc.isenabled(), strategy.name
    assert GcProbe.seen and all(GcProbe.seen)  # on during compression too, not only after it
    assert dict(os.environ) == environment


def test_a_fresh_process_imports_no_mock_and_writes_no_environment() -> None:
    # third-party imports that set variables of their own (sklearn, datasets) or import mock (datasets)
    # are done before the snapshot they would spoil
    script = textwrap.dedent(
        f"""
        import gc, json, os, sys
        import sklearn

        def changed(before):
            return sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))

        before = dict(os.environ)
        import occ_research
        from occ_research import compress
        from occ_research._tokens import count_tokens
        count_tokens("hello", "gpt-4o"), count_tokens("hello", "gpt-4")
        for name in {FAST_STRATEGIES!r}:
            compress("Alpha beta gamma. Delta epsilon. " * 40, name, rate=0.5)
        mock = "unittest.mock" in sys.modules
        changes = changed(before)
        import datasets
        from occ_research.evals._datasets import load_examples
        before = dict(os.environ)
        load_examples("gsm8k-cot", n=2)
        changes += changed(before)
        print(json.dumps({{"mock": mock, "changed": changes, "gc": gc.isenabled()}}))
        """
    )
    # without the variable that an earlier version set for itself (and that this run may have inherited)
    environment = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_OFFLINE"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"mock": False, "changed": [], "gc": True}


def test_model_cache_builds_once_evicts_and_closes() -> None:
    closed: list[str] = []
    cache: ModelCache[str, str] = ModelCache(max_items=2, close=closed.append)
    built: list[str] = []

    def build_for(key: str) -> str:
        built.append(key)
        return key.upper()

    assert cache.get_or_build("a", lambda: build_for("a")) == "A"
    assert cache.get_or_build("a", lambda: build_for("a")) == "A"
    assert built == ["a"] and "a" in cache and cache.get("b") is None
    cache.put("b", "B")
    cache.get("a")  # "a" is now the most recent, so "b" goes first
    cache.put("c", "C")
    assert closed == ["B"] and len(cache) == 2
    cache.clear()
    assert sorted(closed) == ["A", "B", "C"] and len(cache) == 0
    with pytest.raises(ValueError):
        ModelCache(max_items=0)
