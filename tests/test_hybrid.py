"""The hybrid ranker: passages and their headers, inherited relevance, and the static embedding table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from occ_research import _static_embeddings
from occ_research._embeddings import MODEL_FILE
from occ_research.evals._datasets import Example
from occ_research.evals._metrics import contains_answer
from occ_research.strategies import Candidates, make_strategy
from occ_research.strategies._hybrid import HybridStrategy, find_passages
from occ_research.strategies._selection import Unit

DOCS = (
    "Answer the question from the documents.\n\n"
    "Document [1](Title: Lighthouses of Norway) The coast has many towers. Most are automated today. "
    "Keepers left in the 1990s.\n\n"
    "Document [2](Title: Bram Stoker) He was an Irish author. His novel Dracula appeared in 1897. "
    "He managed the Lyceum Theatre.\n\n"
    "Document [3](Title: Tea in Britain) Tea arrived in the 17th century. It became popular quickly.\n\n"
    "Question: Who was Bram Stoker?\nAnswer:"
)


def _units(texts: list[str], messages: list[int] | None = None) -> list[Unit]:
    messages = messages or [0] * len(texts)
    return [Unit(i, t, 5, m, "user") for i, (t, m) in enumerate(zip(texts, messages, strict=True))]


def test_passages_start_at_headers_and_at_new_messages() -> None:
    units = _units(
        [
            "Intro.",
            "Document [1](Title: A b) First.",
            "Second.",
            "[2] Other.",
            "# Heading",
            "Under it.",
            "Next message.",
        ],
        [0, 0, 0, 0, 0, 0, 1],
    )
    passages = find_passages(units)
    assert passages.of_unit == (0, 1, 1, 2, 3, 3, 4)
    assert passages.header_unit == (-1, 1, 3, 4, -1)
    assert passages.header_text == ("", "Document [1](Title: A b)", "[2]", "# Heading", "")


def test_a_kept_sentence_brings_its_passages_header() -> None:
    result = make_strategy("hybrid").compress(DOCS, rate=0.55, question="When did Dracula appear?")
    text = result.messages[0]["content"]
    assert "His novel Dracula appeared in 1897." in text
    assert "Document [2](Title: Bram Stoker)" in text
    headless = make_strategy("hybrid", keep_headers=False).compress(
        DOCS, target_tokens=result.compressed_tokens - 12, question="When did Dracula appear?"
    )
    assert "His novel Dracula appeared in 1897." in headless.messages[0]["content"]


def test_sentences_inherit_their_passages_relevance() -> None:
    # "He managed the Lyceum Theatre." shares no word with the question; its passage's title does
    texts = [
        "Document [1](Title: Lighthouses of Norway) The coast has many towers.",
        "Most are automated today.",
        "Document [2](Title: Bram Stoker) He was an Irish author.",
        "He managed the Lyceum Theatre.",
        "Document [3](Title: Tea in Britain) Tea arrived in the 17th century.",
        "It became popular quickly.",
    ]
    candidates = Candidates(tuple(_units(texts)), None, "Bram Stoker?", "gpt-4o", 0)
    scores = HybridStrategy()._score(candidates)
    assert scores[3] > scores[1]
    assert scores[3] > scores[5]
    alone = HybridStrategy(passage_weight=0.0)._score(
        Candidates(tuple(_units(texts)), None, "Bram Stoker?", "gpt-4o", 0)
    )
    assert scores[3] - scores[1] > alone[3] - alone[1]


def test_keeps_the_answer_on_nq(nq_examples: list[Example]) -> None:
    strategy = make_strategy("hybrid")
    kept = [
        contains_answer(str(strategy.compress(e.messages, rate=0.125).messages[0]["content"]), e.answers)
        for e in nq_examples
    ]
    assert sum(kept) >= 0.85 * len(kept)


def test_the_table_is_checked_against_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    derived: list[int] = []

    def fake_derive(_model: object) -> np.ndarray:
        derived.append(1)
        return np.arange(12, dtype=np.float16).reshape(4, 3)

    monkeypatch.setattr(_static_embeddings, "derive_table", fake_derive)
    monkeypatch.setattr(_static_embeddings, "MiniLMEmbedder", lambda cache_size: None)
    table = _static_embeddings.load_or_derive_table(tmp_path)
    record = json.loads((tmp_path / "static-minilm.json").read_text())
    assert record["sources"]["model_sha256"] == MODEL_FILE[2]
    assert np.array_equal(_static_embeddings.load_or_derive_table(tmp_path), table)
    assert len(derived) == 1  # read back, not derived again
    (tmp_path / "static-minilm.npy").write_bytes(b"tampered")
    assert np.array_equal(_static_embeddings.load_or_derive_table(tmp_path), table)
    assert len(derived) == 2  # bytes that do not match the record are derived again


def test_static_vectors_are_cached_per_text() -> None:
    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float32)
    embedder = _static_embeddings.StaticEmbedder(table, cache_size=2)
    first = embedder.embed(["a cat", "a dog"])
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
    assert np.array_equal(embedder.embed(["a cat"])[0], first[0])
    assert embedder.embed([]).shape == (0, 8)
