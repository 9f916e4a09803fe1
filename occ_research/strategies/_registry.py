"""The registered strategies: ``register_strategy`` adds one under a name; ``make_strategy`` builds one by
name and ``strategy_from_config`` from a config (a preset file's table), both with "did you mean"."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from .._registry import Registry
from ..exceptions import InvalidParameterError
from ._base import Strategy

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str) -> Any:
    """Class decorator: register a ``Strategy`` subclass under ``name``."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES.register(name)(cls)
        return cls

    return add


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build a registered strategy by name; unknown names and parameters get a "did you mean"."""
    cls = STRATEGIES.get(name)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in params if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known) or 'none'}"
        raise InvalidParameterError(f"strategy {name!r} has no parameter {unknown[0]!r}{hint}")
    return cls(**params)


def strategy_from_config(config: Mapping[str, Any]) -> Strategy:
    """Inverse of ``Strategy.config``: ``{"strategy": "tfidf", "granularity": "sentence"}``."""
    if not isinstance(config.get("strategy"), str):
        # the config's values are not echoed: a misconfigured file must not have its contents printed
        raise InvalidParameterError(
            f"a strategy config needs a 'strategy' name (keys found: {', '.join(map(str, config)) or 'none'})"
        )
    params = {k: v for k, v in config.items() if k != "strategy"}
    if "steps" in params and isinstance(params["steps"], list):
        params["steps"] = [s if isinstance(s, Strategy) else strategy_from_config(s) for s in params["steps"]]
    return make_strategy(config["strategy"], **params)
