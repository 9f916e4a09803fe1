"""Abstractive compression: an LLM rewrites text into summaries sized to the budget."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

from ..exceptions import OCCError
from ..llm import LLM, make_llm
from ..llm._prompts import LATEST, render
from ._base import Strategy
from ._params import param
from ._rankers import Bm25Strategy
from ._registry import make_strategy, register_strategy
from ._selection import Candidates, Choice, Unit, coarse_cut, trim_to_tokens

WORDS_PER_TOKEN = 0.75  # English prose: about three words per four tokens


@cache
def cached_llm(spec: str, base_url: str, timeout: float) -> LLM:
    """One client (and one model load) per configuration and process."""
    return make_llm(spec, base_url=base_url, timeout=timeout)


@register_strategy("summarize")
@dataclass
class SummarizeStrategy(Strategy):
    """Summarises text with an LLM so that it fits the budget; for long, narrative prompts.

    ``document`` mode cuts the compressible text into chunks of about ``chunk_tokens`` and asks for one
    summary per chunk, each sized to its share of the budget (query-focused when there is a question).
    ``conversation`` mode summarises the older turns into one summary, placed in the first of them (the other
    older turns keep their role with their text removed), and keeps the last ``keep_recent`` messages verbatim.
    ``auto`` picks conversation mode when the text spans three or more messages. Protected content (code,
    JSON, tool calls, the question, system messages) never goes through the LLM. Beyond ``max_model_tokens``
    BM25 first narrows the text (see ``coarse_cut``). If the LLM fails, times out or is not installed, the
    ``fallback`` extractive strategy is used and the note says so.
    """

    uses_model = True

    llm: str = param("local")
    base_url: str = param("")
    mode: str = param("auto", choices=("auto", "document", "conversation"))
    granularity: str = param("paragraph", choices=("sentence", "paragraph", "passage"))
    chunk_tokens: int = param(600, low=32)
    keep_recent: int = param(2, low=0)
    fallback: str = param("bm25")
    prompt_version: str = param(LATEST)
    timeout: float = param(120.0, low=1.0)
    max_model_tokens: int = param(2400, low=64)

    def _choose(self, candidates: Candidates) -> Choice:
        units = candidates.units
        total = sum(u.tokens for u in units)
        if candidates.budget is None or total <= candidates.budget:
            return Choice({u.index: u.text for u in units})
        narrowed = coarse_cut(candidates, self.max_model_tokens, Bm25Strategy())
        if isinstance(narrowed, Choice):
            return narrowed
        try:
            return self._summarise(narrowed)
        except OCCError as exc:
            choice = make_strategy(self.fallback)._choose(candidates)
            choice.note = f"summarize fell back to {self.fallback}: {exc}"
            return choice

    def _summarise(self, candidates: Candidates) -> Choice:
        units, budget = candidates.units, candidates.budget or 0
        messages = sorted({u.message for u in units})
        conversation = self.mode == "conversation" or (self.mode == "auto" and len(messages) >= 3)
        kept: dict[int, str] = {}
        if conversation:
            recent = set(messages[-self.keep_recent :]) if self.keep_recent else set()
            for unit in units:
                if unit.message in recent:
                    kept[unit.index] = unit.text
            budget -= sum(u.tokens for u in units if u.index in kept)
            chunks = [[u for u in units if u.message not in recent]]
            kind = "conversation"
        else:
            chunks = _chunks(units, self.chunk_tokens)
            kind = "focused" if candidates.question else "document"
        total = sum(u.tokens for chunk in chunks for u in chunk)
        shares = [max(8, budget * sum(u.tokens for u in chunk) // max(total, 1)) for chunk in chunks]
        for chunk, summary in zip(chunks, self._summaries(candidates, chunks, shares, kind), strict=True):
            if summary is None:  # the chunk fits its share as it is
                kept.update({u.index: u.text for u in chunk})
            elif summary:
                kept[chunk[0].index] = summary
        note = f"{len(chunks)} {kind} summaries by {self.llm} (prompt {self.prompt_version})"
        return Choice(kept, note=note)

    def _summaries(
        self, candidates: Candidates, chunks: list[list[Unit]], shares: list[int], kind: str
    ) -> list[str | None]:
        """One summary per chunk larger than its share (None for the others), trimmed to the share.

        Summaries are generated once per compression; a later pass with a smaller share trims them.
        """
        generated: dict[int, str] = candidates.scratch.setdefault("summaries", {})
        needed = [i for i, chunk in enumerate(chunks) if sum(u.tokens for u in chunk) > shares[i]]
        missing = [i for i in needed if i not in generated]
        if missing:
            llm = cached_llm(self.llm, self.base_url, self.timeout)

            def summarise(i: int) -> str:
                text = _render_chunk(chunks[i], kind)
                prompt = render(
                    self.prompt_version,
                    kind,
                    text=text,
                    words=int(shares[i] * WORDS_PER_TOKEN),
                    question=candidates.question,
                )
                answer = llm.chat(
                    [{"role": "user", "content": prompt}],
                    max_tokens=shares[i],
                    temperature=0.0,
                    frequency_penalty=0.5,
                    seed=candidates.seed,
                )
                return answer.text.strip()

            with ThreadPoolExecutor(max_workers=4) as pool:
                for i, text in zip(missing, pool.map(summarise, missing), strict=True):
                    generated[i] = text
        return [
            trim_to_tokens(generated[i], shares[i], candidates.model) if i in needed else None
            for i in range(len(chunks))
        ]


def _chunks(units: Sequence[Unit], size: int) -> list[list[Unit]]:
    """Consecutive units of one message, about ``size`` tokens each."""
    chunks: list[list[Unit]] = []
    for unit in units:
        if (
            chunks
            and chunks[-1][-1].message == unit.message
            and sum(u.tokens for u in chunks[-1]) + unit.tokens <= size
        ):
            chunks[-1].append(unit)
        else:
            chunks.append([unit])
    return chunks


def _render_chunk(chunk: Sequence[Unit], kind: str) -> str:
    if kind != "conversation":
        return "\n".join(u.text for u in chunk)
    lines: list[str] = []
    for previous, unit in zip([None, *chunk], chunk, strict=False):
        if previous is not None and previous.message == unit.message:
            lines[-1] += " " + unit.text
        else:
            lines.append(f"{unit.role}: {unit.text}")
    return "\n".join(lines)
