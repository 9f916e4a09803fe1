"""Strategy parameters: how they are declared (``param``), checked, and what a budget may be."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import field
from typing import Any, Literal

from ..exceptions import InvalidParameterError

Granularity = Literal["sentence", "paragraph", "passage"]
GRANULARITIES: tuple[Granularity, ...] = ("sentence", "paragraph", "passage")
#: where a ranking strategy puts the passages it keeps (``_order.py``)
Order = Literal["original", "relevance", "edges"]
ORDERS: tuple[Order, ...] = ("original", "relevance", "edges")
#: the budget that a ranking strategy sets per prompt, from where relevance falls off
AUTO: Literal["auto"] = "auto"
Rate = float | Literal["auto"]


def param(
    default: Any,
    *,
    choices: Sequence[Any] | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """Declare a strategy parameter: a dataclass field whose value ``Strategy.validate`` checks."""
    return field(default=default, metadata={"choices": choices, "low": low, "high": high})


def check_param(strategy: str, f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    where = f"{strategy}.{f.name}"
    default = f.default
    if default is not dataclasses.MISSING and default is not None:
        expected = float if isinstance(default, float) else type(default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (isinstance(value, bool) and expected is not bool):
            raise InvalidParameterError(f"{where} must be {expected.__name__}, got {value!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), [str(c) for c in meta["choices"]], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(f"{where} must be one of {list(meta['choices'])}, got {value!r}{hint}")
    if meta.get("low") is not None and value < meta["low"]:
        raise InvalidParameterError(f"{where} must be >= {meta['low']}, got {value!r}")
    if meta.get("high") is not None and value > meta["high"]:
        raise InvalidParameterError(f"{where} must be <= {meta['high']}, got {value!r}")


def check_budget(rate: Rate | None, target_tokens: int | None) -> None:
    """A budget is a kept fraction (``rate``), ``"auto"`` (the strategy sets it per prompt) or a token
    count, or none of them; never two."""
    if rate is not None and target_tokens is not None:
        raise InvalidParameterError("give either rate or target_tokens, not both")
    if (
        rate is not None
        and rate != AUTO
        and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1)
    ):
        raise InvalidParameterError(f"rate must be a number with 0 < rate <= 1 or 'auto', got {rate!r}")
    if target_tokens is not None and (
        isinstance(target_tokens, bool) or not isinstance(target_tokens, int) or target_tokens < 0
    ):
        raise InvalidParameterError(f"target_tokens must be a non-negative integer, got {target_tokens!r}")
