"""Question-aware selection that fuses lexical and semantic relevance, at sentence and passage level.

A sentence's relevance is BM25 (exact words) fused with the cosine of static MiniLM embeddings (meaning;
``_static_embeddings.py``), each scaled to the prompt's best; it then inherits part of its passage's
relevance (the passage scored the same way as a whole), so that a passage whose title or opening matches the
question lifts sentences that do not repeat the question's words. Passages are recognised by their headers
(``Document [3](Title: ...)``, ``[3]``, ``# Heading``, ``Title:``) or a change of message; a kept sentence
brings its passage's header with it when the budget allows (only the header, not the rest of the first
sentence), the way speaker labels come with their line.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._static_embeddings import default_static_embedder
from .._tokens import encoding_for_model
from ._base import RankingStrategy
from ._order import HEADER
from ._params import param
from ._rankers import terms
from ._registry import register_strategy
from ._selection import Allowance, Candidates, Choice, Unit, fill_with_head

EMBEDDINGS = ("static", "minilm")
LABEL = re.compile(r"(?m)^\s*(?:question|answer|query|q|a)\s*:", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Passages:
    """Which passage each unit belongs to, each passage's header unit, and the header's text."""

    of_unit: tuple[int, ...]
    header_unit: tuple[int, ...]  # per passage: the unit index holding its header, -1 for none
    header_text: tuple[str, ...]


def find_passages(units: Sequence[Unit]) -> Passages:
    """A new passage starts at a header or at a new message; a unit before any header is its own run."""
    of_unit: list[int] = []
    header_unit: list[int] = []
    header_text: list[str] = []
    message = None
    for unit in units:
        match = HEADER.match(unit.text)
        if match or unit.message != message or not header_unit:
            header_unit.append(unit.index if match else -1)
            header_text.append(match.group(1).strip() if match else "")
        of_unit.append(len(header_unit) - 1)
        message = unit.message
    return Passages(tuple(of_unit), tuple(header_unit), tuple(header_text))


def bm25(docs: Sequence[Counter[str]], query: set[str], k1: float, b: float) -> np.ndarray:
    """Okapi BM25 of each bag of words against the query terms (no query: summed IDF of the terms)."""
    n = len(docs)
    df = Counter(t for d in docs for t in d)
    idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    lengths = [sum(d.values()) for d in docs]
    avg = (sum(lengths) / n) or 1.0
    scores = np.zeros(n)
    for i, (doc, length) in enumerate(zip(docs, lengths, strict=True)):
        norm = k1 * (1 - b + b * length / avg)
        if query:
            scores[i] = sum(idf[t] * doc[t] * (k1 + 1) / (doc[t] + norm) for t in query if t in doc)
        else:
            scores[i] = sum(idf[t] for t in doc)
    return scores


def _scaled(values: np.ndarray) -> np.ndarray:
    """0 for the prompt's lowest value, 1 for its highest (all 0 when they are equal)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


@register_strategy("hybrid")
@dataclass
class HybridStrategy(RankingStrategy):
    """BM25 fused with static MiniLM similarity; sentences inherit their passage's relevance and header.

    ``semantic_weight`` is the share of meaning (static MiniLM cosine) against exact words (BM25) in both
    the sentence's and the passage's relevance; ``passage_weight`` the share of its passage's relevance a
    sentence takes on. ``keep_headers`` brings a passage's header (``Document [3](Title: ...)``) along with
    any kept sentence of it. ``embeddings="minilm"`` runs the full model instead of the static table (about
    a second per prompt; for comparison). Without a question, units score by how central they are (cosine to the mean
    embedding) and by their rare words. Milliseconds per prompt: the embeddings are a table lookup.
    """

    semantic_weight: float = param(0.5, low=0.0, high=1.0)
    passage_weight: float = param(0.7, low=0.0, high=1.0)
    embeddings: str = param("static", choices=EMBEDDINGS)
    keep_headers: bool = param(True)
    k1: float = param(1.2, low=0.0, high=3.0)
    b: float = param(0.75, low=0.0, high=1.0)

    def _score(self, candidates: Candidates) -> list[float]:
        units = candidates.units
        if not units:
            return []
        passages = candidates.scratch.setdefault("passages", find_passages(units))
        of_unit = np.array(passages.of_unit)
        count = len(passages.header_unit)
        question = LABEL.sub(" ", candidates.question)  # "Question: ... Answer:" labels are no topic
        query = set(terms(question))
        bags = [Counter(terms(u.text)) for u in units]
        joined: list[Counter[str]] = [Counter() for _ in range(count)]
        for bag, p in zip(bags, passages.of_unit, strict=True):
            joined[p].update(bag)
        lexical = _scaled(bm25(bags, query, self.k1, self.b))
        lexical_passage = _scaled(bm25(joined, query, self.k1, self.b))

        sums, question_sum = self._embed([u.text for u in units], question.strip())
        if self.embeddings == "minilm":  # unit vectors: a passage is their sum weighted by length
            sums = sums * np.array([[u.tokens] for u in units], dtype=sums.dtype)
        passage_sums = np.zeros((count, sums.shape[1]), dtype=sums.dtype)
        np.add.at(passage_sums, of_unit, sums)
        vectors = _normalized(sums)
        passage_vectors = _normalized(passage_sums)
        target = _normalized(question_sum if question_sum is not None else sums.sum(axis=0))
        semantic = _scaled(vectors @ target)
        semantic_passage = _scaled(passage_vectors @ target)

        w = self.semantic_weight
        sentence = (1 - w) * lexical + w * semantic
        passage = (1 - w) * lexical_passage + w * semantic_passage
        scores = (1 - self.passage_weight) * sentence + self.passage_weight * passage[of_unit]
        return [float(s) for s in scores]

    def _embed(self, texts: list[str], question: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors of the texts (sums of piece rows, or MiniLM's unit vectors) and of the question."""
        if self.embeddings == "minilm":
            from .._embeddings import default_embedder

            model = default_embedder()
            return model.embed(texts), (model.embed([question])[0] if question else None)
        static = default_static_embedder()
        return static.embed_sums(texts), (static.embed_sums([question])[0] if question else None)

    def _choose(self, candidates: Candidates) -> Choice:
        scores = self._scores(candidates)
        units = candidates.units
        if candidates.budget is None:
            return Choice({u.index: u.text for u in units}, scores)
        passages: Passages = candidates.scratch.get("passages") or find_passages(units)
        header_tokens = self._header_tokens(candidates, passages)
        position = {u.index: k for k, u in enumerate(units)}
        order = sorted(units, key=lambda u: (-scores[position[u.index]], u.index))
        allowance = Allowance(candidates.budget)
        kept: dict[int, str] = {}
        for unit in order:
            if kept.get(unit.index) == unit.text:  # a header that is the whole unit (a Markdown heading)
                continue
            passage = passages.of_unit[position[unit.index]]
            header = passages.header_unit[passage]
            header_only = header >= 0 and kept.get(header) == passages.header_text[passage]
            if header_only and unit.index == header:  # the header is kept already: pay for the rest
                if allowance.take(unit, max(0, unit.tokens - header_tokens[passage])):
                    kept[unit.index] = unit.text
                continue
            brings_header = self.keep_headers and header >= 0 and header != unit.index and header not in kept
            header_unit = units[position[header]] if brings_header else None
            if header_unit is not None and allowance.cost(unit) + header_tokens[passage] <= allowance.left:
                allowance.take(header_unit, header_tokens[passage])
                kept[header] = passages.header_text[passage]
            if allowance.take(unit):
                kept[unit.index] = unit.text
        fill_with_head(order, kept, allowance, candidates.model)
        return Choice(kept, scores)

    def _header_tokens(self, candidates: Candidates, passages: Passages) -> list[int]:
        if "header_tokens" not in candidates.scratch:
            encode = encoding_for_model(candidates.model).encode_ordinary
            candidates.scratch["header_tokens"] = [
                len(encode(t)) + 1 if t else 0 for t in passages.header_text
            ]
        tokens: list[int] = candidates.scratch["header_tokens"]
        return tokens


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return out
