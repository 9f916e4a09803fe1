"""Self-information pruning with a local causal LM (Selective Context; question-aware as in LongLLMLingua)."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import ClassVar

from .._tokens import count_text_tokens
from ..llm._local import LocalLLM
from ._base import Strategy
from ._params import param
from ._rankers import Bm25Strategy
from ._registry import register_strategy
from ._selection import Allowance, Candidates, Choice, Unit, coarse_cut

_PIECE = {
    "word": re.compile(r"\S+"),
    "phrase": re.compile(r"[^,;:]+[,;:]?"),
    "sentence": re.compile(r".+", re.S),
}
_MUST_KEEP = re.compile(r"\d|https?://|www\.")


@dataclass(frozen=True, slots=True)
class _Piece:
    unit: int
    start: int  # character offsets in the unit's text
    end: int
    value: float  # summed importance of the model tokens that start in it
    tokens: int  # target-model tokens
    must_keep: bool


@register_strategy("selfinfo")
@dataclass
class SelfInfoStrategy(Strategy):
    """Drops the least informative words, phrases or sentences, by a local LM's token log-probabilities.

    A token's self-information is -log p(token | preceding text) under the local model (SmolLM2 by default):
    predictable text carries little and goes first (Selective Context, Li et al. 2023). With a question and
    ``question_weight`` > 0, a token also gains what the question adds to its log-probability, so text the
    question makes expected is kept (the contrastive idea of LongLLMLingua). Pieces are whole words or
    punctuation-delimited phrases, so no word is ever cut in two; pieces with numbers or URLs are kept when
    ``keep_numbers``. Long inputs are scored in windows of ``window`` tokens; beyond ``max_model_tokens``
    BM25 first narrows the text (see ``coarse_cut``). Costs a model pass per token (two with a question):
    about 6 s per 1k tokens with SmolLM2 on 2 cores.
    """

    uses_model = True

    granularity: ClassVar[str] = "sentence"

    level: str = param("phrase", choices=("word", "phrase", "sentence"))
    model_path: str = param("")
    window: int = param(256, low=32, high=1024)
    question_weight: float = param(1.0, low=0.0, high=10.0)
    keep_numbers: bool = param(True)
    max_model_tokens: int = param(2048, low=64)

    def _choose(self, candidates: Candidates) -> Choice:
        if candidates.budget is None:
            return Choice({u.index: u.text for u in candidates.units})
        narrowed = coarse_cut(candidates, self.max_model_tokens, Bm25Strategy())
        if isinstance(narrowed, Choice):
            return narrowed
        candidates = narrowed
        if "pieces" not in candidates.scratch:
            candidates.scratch["pieces"] = self._pieces(candidates)
        pieces: list[_Piece] = candidates.scratch["pieces"]
        budget = Allowance(candidates.budget or 0)
        units = {u.index: u for u in candidates.units}
        keep = [False] * len(pieces)
        order = sorted(
            range(len(pieces)),
            key=lambda i: (not pieces[i].must_keep, -pieces[i].value / max(pieces[i].tokens, 1), i),
        )
        for i in order:
            keep[i] = budget.take(units[pieces[i].unit], pieces[i].tokens)
        return Choice(_emit(units, pieces, keep))

    def _pieces(self, candidates: Candidates) -> list[_Piece]:
        units = candidates.units
        text = "\n".join(u.text for u in units)
        offset = {}  # unit index -> where its text starts in the scored text
        position = 0
        for unit in units:
            offset[unit.index] = position
            position += len(unit.text) + 1
        llm = LocalLLM(self.model_path or None)
        plain = llm.token_logprobs(text, window=self.window)
        importance = [-lp for _, _, lp in plain]
        if candidates.question and self.question_weight > 0:
            primed = llm.token_logprobs(
                text, prefix=f"Question: {candidates.question}\n\n", window=self.window
            )
            importance = [
                v + self.question_weight * (a[2] - b[2])
                for v, a, b in zip(importance, primed, plain, strict=True)
            ]
        token_starts = [s for s, _, _ in plain]
        pieces: list[tuple[int, int, int]] = []
        for unit in units:
            pieces.extend(
                (unit.index, m.start(), m.end())
                for m in _PIECE[self.level].finditer(unit.text)
                if m.group().strip()
            )
        values = [0.0] * len(pieces)
        piece_starts = [offset[u] + s for u, s, _ in pieces]
        for token_start, value in zip(token_starts, importance, strict=True):
            at = bisect.bisect_right(piece_starts, token_start) - 1
            if at >= 0:
                values[at] += value
        by_index = {u.index: u for u in units}
        texts = [by_index[u].text[s:e] for u, s, e in pieces]
        tokens = count_text_tokens(texts, candidates.model)
        return [
            _Piece(u, s, e, v, n, self.keep_numbers and bool(_MUST_KEEP.search(t)))
            for (u, s, e), v, n, t in zip(pieces, values, tokens, texts, strict=True)
        ]


def _emit(units: dict[int, Unit], pieces: list[_Piece], keep: list[bool]) -> dict[int, str]:
    """Each unit's kept pieces, in order, separated by single spaces (whole words only)."""
    parts: dict[int, list[str]] = {}
    complete: dict[int, bool] = {}
    for piece, kept in zip(pieces, keep, strict=True):
        complete[piece.unit] = complete.get(piece.unit, True) and kept
        if kept:
            parts.setdefault(piece.unit, []).append(units[piece.unit].text[piece.start : piece.end].strip())
    return {u: units[u].text if complete[u] else " ".join(p) for u, p in parts.items()}
