"""``occ demo``'s comparison: a strategy whose model files are missing is left out and named, not a crash."""

from __future__ import annotations

from typing import Any

import pytest

from occ_research import EmbeddingModelError
from occ_research.evals import available, demo_strategies
from occ_research.strategies import Strategy


def test_strategies_missing_their_model_files_are_named_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injected: one strategy behaves as without the [local] extra."""
    strategies = {name: s for name, s in demo_strategies().items() if name in ("bm25", "tfidf")}

    def missing(self: Strategy, *args: Any, **kwargs: Any) -> Any:
        raise EmbeddingModelError('static embeddings need tokenizers: pip install -e ".[local]"')

    monkeypatch.setattr(type(strategies["tfidf"]), "compress", missing)
    usable, absent = available(strategies)
    assert list(usable) == ["bm25"] and absent == ["tfidf"]
