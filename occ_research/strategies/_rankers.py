"""Rank units by relevance to the question (or by salience without one) and keep the best that fit.

All three are ``RankingStrategy``: they score units once and share the selection of ``fit_by_score``: best
score per token first until one does not fit (with the prompt's question; else skip it and go on), fill the
rest with the head of the next unit, emit in the original order (or the kept passages by relevance:
``order``); with ``rate="auto"`` the scores also set the budget (``RankingStrategy``).
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

from .._text import CJK_CHARACTER, is_cjk_heavy
from ._base import RankingStrategy
from ._params import GRANULARITIES, param
from ._registry import register_strategy
from ._selection import Candidates

_TERM = re.compile(r"\w+")


def terms(text: str) -> list[str]:
    """Lower-cased word terms; CJK text (written without spaces) is cut into single characters."""
    text = text.lower()
    if CJK_CHARACTER.search(text):
        text = CJK_CHARACTER.sub(lambda m: f" {m.group()} ", text)
    return _TERM.findall(text)


def _plain_terms(text: str) -> list[str]:
    """``terms`` of a text known to hold no CJK character (one check for a whole prompt, not per unit)."""
    return _TERM.findall(text.lower())


@register_strategy("tfidf")
@dataclass
class TfidfStrategy(RankingStrategy):
    """TF-IDF sentence pruning (scikit-learn).

    With a question: cosine similarity of each unit to the question, plus a small centrality term that
    breaks ties among units the question does not touch. Without one: similarity to the document's centroid
    (how typical a unit is of the whole text). Fast and model-free; wins on retrieval-style prompts (RAG,
    long documents with a specific question). Character n-grams are used for CJK-heavy text.
    """

    granularity: str = param("sentence", choices=GRANULARITIES)
    centrality_weight: float = param(0.1, low=0.0, high=1.0)

    def _score(self, candidates: Candidates) -> list[float]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [u.text for u in candidates.units]
        if not texts:
            return []
        cjk = is_cjk_heavy(" ".join(texts[:50]))
        vectorizer = TfidfVectorizer(
            sublinear_tf=True,
            analyzer="char_wb" if cjk else "word",
            ngram_range=(1, 2) if cjk else (1, 1),
            stop_words=None if cjk else "english",
        )
        try:
            matrix = vectorizer.fit_transform([*texts, candidates.question])
        except ValueError:  # empty vocabulary: only stop words or punctuation
            return [0.0] * len(texts)
        units, question = matrix[:-1], matrix[-1]
        centroid = np.asarray(units.mean(axis=0)).ravel()
        norm = float(np.linalg.norm(centroid)) or 1.0
        centrality = units @ (centroid / norm)
        if question.nnz:
            scores = np.asarray((units @ question.T).todense()).ravel() + self.centrality_weight * centrality
        else:
            scores = centrality
        return [float(x) for x in scores]


@register_strategy("bm25")
@dataclass
class Bm25Strategy(RankingStrategy):
    """Okapi BM25 ranking of units against the question.

    Rewards exact matches of rare question terms and saturates repeated ones, so it beats TF-IDF cosine when
    the question names entities (multi-document QA). Without a question a unit scores by the summed IDF of
    its distinct terms: how much rare vocabulary it carries.
    """

    granularity: str = param("sentence", choices=GRANULARITIES)
    k1: float = param(1.2, low=0.0, high=3.0)
    b: float = param(0.75, low=0.0, high=1.0)

    def _score(self, candidates: Candidates) -> list[float]:
        if not candidates.units:
            return []
        n = len(candidates.units)
        query = set(terms(candidates.question))
        split = terms if any(CJK_CHARACTER.search(u.text) for u in candidates.units) else _plain_terms
        # per unit, its length and the counts of the terms that matter: the question's (a prompt's
        # vocabulary is far larger), or (no question) every distinct term. Plain str -> int dicts, which the
        # garbage collector does not track (see ``_text.Segmented``)
        df = dict.fromkeys(query, 0)  # in how many units each term occurs
        lengths: list[int] = []
        counts: list[dict[str, int]] = []
        for unit in candidates.units:
            words = split(unit.text)
            lengths.append(len(words))
            present = query.intersection(words) if query else set(words)
            for t in present:  # a loop, not Counter.update: that checks its argument's type on each call
                df[t] = df.get(t, 0) + 1
            counts.append({t: words.count(t) for t in present} if query else dict.fromkeys(present, 1))
        idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        if not query:
            return [sum(idf[t] for t in tf) for tf in counts]
        avg = (sum(lengths) / n) or 1.0
        k1, b = self.k1, self.b
        scores = []
        for tf, length in zip(counts, lengths, strict=True):
            norm = k1 * (1 - b + b * length / avg)
            scores.append(sum(idf[t] * f * (k1 + 1) / (f + norm) for t, f in tf.items()))
        return scores


@register_strategy("gzip")
@dataclass
class GzipStrategy(RankingStrategy):
    """Normalised compression distance (zlib) between each unit and the question.

    Needs no vocabulary, so it copes with code, identifiers, numbers and mixed languages that defeat word
    tokenisers. Without a question a unit scores by how badly it compresses (its information density).
    """

    granularity: str = param("sentence", choices=GRANULARITIES)

    def _score(self, candidates: Candidates) -> list[float]:
        question = candidates.question.encode()
        cq = len(zlib.compress(question, 9)) if question else 0
        scores = []
        for unit in candidates.units:
            raw = unit.text.encode()
            cx = len(zlib.compress(raw, 9))
            if question:
                joint = len(zlib.compress(raw + b" " + question, 9))
                scores.append(1.0 - (joint - min(cx, cq)) / max(cx, cq, 1))
            else:
                scores.append(cx / max(len(raw), 1))
        return scores
