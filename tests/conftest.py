"""Shared fixtures. Real data comes from the shared data folder (``OCC_DATA_DIR`` or ``../shared/data``)."""

from __future__ import annotations

import pytest

from occ_research.evals._datasets import Example, load_examples
from occ_research.strategies import STRATEGIES, Strategy, make_strategy

STRATEGY_NAMES = STRATEGIES.names()


def build(name: str) -> Strategy:
    """Every registered strategy builds with default parameters (the pipeline: dedup, then bm25)."""
    return make_strategy(name)


@pytest.fixture(scope="session")
def qmsum_examples() -> list[Example]:
    return load_examples("qmsum", n=3)


@pytest.fixture(scope="session")
def nq_examples() -> list[Example]:
    return load_examples("nq-multidoc", n=20, documents=10)


@pytest.fixture(scope="session")
def chat_examples() -> list[Example]:
    return load_examples("sharegpt-chat", n=10)


def pytest_configure(config: pytest.Config) -> None:
    """Keep the LLM call cache of a test run out of the user's cache folder."""
    import os
    import tempfile

    os.environ.setdefault("OCC_CACHE_DIR", tempfile.mkdtemp(prefix="occ-test-cache-"))
