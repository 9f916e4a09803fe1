"""What a compression returns: the messages and the numbers (``CompressionResult``) and the trace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .._messages import Message, text_slots
from ._selection import Choice, Unit


class TraceEntry(NamedTuple):
    """What one step did with one unit. A named tuple: a 100k-token prompt has thousands of units, and a
    frozen dataclass costs twice as much to build (it sets each field through ``object.__setattr__``)."""

    step: str
    message: int
    action: Literal["kept", "dropped", "rewritten"]
    tokens: int
    score: float | None
    text: str


@dataclass(frozen=True)
class CompressionResult:
    """The compressed messages and the numbers that describe what happened."""

    messages: list[Message]
    original_tokens: int
    compressed_tokens: int
    target_tokens: int | None
    budget_met: bool
    seconds: float
    strategy: str
    params: dict[str, Any]
    model: str
    note: str = ""
    trace: tuple[TraceEntry, ...] = ()

    @property
    def ratio(self) -> float:
        """Original tokens per compressed token (2.0 means half the tokens)."""
        return self.original_tokens / max(self.compressed_tokens, 1)

    @property
    def rate(self) -> float:
        """Compressed tokens as a fraction of the original."""
        return self.compressed_tokens / max(self.original_tokens, 1)

    @property
    def saved_tokens(self) -> int:
        return self.original_tokens - self.compressed_tokens

    @property
    def text(self) -> str:
        """The text of all messages, joined by blank lines (the whole output for a plain-text prompt)."""
        return "\n\n".join(s.text for s in text_slots(self.messages))

    def stats(self) -> dict[str, Any]:
        """The numbers, JSON-ready, without messages and trace."""
        return {
            "strategy": self.strategy,
            "params": self.params,
            "model": self.model,
            "original_tokens": self.original_tokens,
            "compressed_tokens": self.compressed_tokens,
            "saved_tokens": self.saved_tokens,
            "ratio": round(self.ratio, 4),
            "rate": round(self.rate, 4),
            "target_tokens": self.target_tokens,
            "budget_met": self.budget_met,
            "seconds": round(self.seconds, 6),
            "note": self.note,
        }


def trace_of(step: str, units: Sequence[Unit], choice: Choice) -> tuple[TraceEntry, ...]:
    entries = []
    for unit in units:
        emitted = choice.kept.get(unit.index)
        action: Literal["kept", "dropped", "rewritten"] = (
            "dropped" if emitted is None else "kept" if emitted == unit.text else "rewritten"
        )
        score = None if choice.scores is None else float(choice.scores[unit.index])
        entries.append(TraceEntry(step, unit.message, action, unit.tokens, score, unit.text))
    return tuple(entries)
