"""Dense retrieval inside the prompt: rank units by embedding similarity to the question."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._embeddings import default_embedder
from ._base import RankingStrategy
from ._params import GRANULARITIES, param
from ._registry import register_strategy
from ._selection import Candidates


@register_strategy("embed")
@dataclass
class EmbedStrategy(RankingStrategy):
    """Ranks units by cosine similarity of all-MiniLM-L6-v2 embeddings to the question (offline, ONNX int8).

    Catches paraphrases that share no words with the question, where BM25 and TF-IDF see nothing. Without a
    question a unit scores by similarity to the mean embedding (centrality). ``dedup_threshold`` > 0 also
    drops near-paraphrases: a unit whose cosine to an earlier unit reaches it is never kept. About 1-2 ms per
    sentence on 2 cores; embeddings are cached per text.
    """

    uses_model = True

    granularity: str = param("sentence", choices=GRANULARITIES)
    dedup_threshold: float = param(0.0, low=0.0, high=1.0)

    def _score(self, candidates: Candidates) -> list[float]:
        texts = [u.text for u in candidates.units]
        if not texts:
            return []
        embedder = default_embedder()
        vectors = embedder.embed(texts)
        if candidates.question:
            target = embedder.embed([candidates.question])[0]
        else:
            centroid = vectors.mean(axis=0)
            target = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        scores = vectors @ target
        if self.dedup_threshold > 0:
            similar = np.triu(vectors @ vectors.T, k=1) >= self.dedup_threshold  # [i, j]: j repeats earlier i
            scores[similar.any(axis=0)] = -np.inf  # a paraphrase of an earlier unit is never kept
        return [float(s) for s in scores]
