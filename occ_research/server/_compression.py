"""The compression step: which presets the server offers, and compressing a request's prompt within its
time budget in the compression workers (``_pool.py``, ``_worker.py``), never on the event loop.

A request is never lost to compression: if it fails, runs over its budget or finds every worker busy and the
queue full, the original prompt is forwarded and ``x-occ-compression`` says which (``failed``,
``over-budget``); the reason goes to the server's log, never to the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._presets import Preset, load_preset, preset_files, read_policy, writable_preset_dir
from ..exceptions import OCCError, PresetError
from ..strategies import runs_model, strategy_from_config
from ._pool import CompressionPool, OverBudget, QueueFull
from ._settings import Settings
from ._wire import header_value
from ._worker import Job, Presets, WorkerConfig

DEFAULT_PRESET = "bm25-q25"
log = logging.getLogger("occ_research.server")

__all__ = ["Outcome", "Presets", "compress", "load_presets", "worker_config"]


def choose_preset(settings: Settings) -> Preset:
    """The configured preset; else ``winner.toml`` written by an evaluation; else the documented default."""
    if settings.preset:
        return load_preset(settings.preset)
    winner = writable_preset_dir() / "winner.toml"
    return load_preset(str(winner)) if Path(winner).is_file() else load_preset(DEFAULT_PRESET)


def policy_presets(settings: Settings) -> dict[str, Preset | None] | None:
    """The evaluation's policy (``winner.toml``), one preset per kind of prompt (None: no evaluated winner,
    forward uncompressed), when the server compresses by it: no preset configured and a policy written."""
    winner = Path(writable_preset_dir() / "winner.toml")
    if settings.preset or not winner.is_file():
        return None
    by_kind: dict[str, Preset | None] = {}
    for kind, entry in read_policy(winner).items():
        if entry is None:
            by_kind[kind] = None
            continue
        config, rate = entry
        try:
            strategy = strategy_from_config(config)
            strategy.validate()
        except OCCError as exc:
            raise PresetError(f"{winner.name}: the {kind} entry does not load ({exc})") from None
        by_kind[kind] = Preset(f"winner-{kind}", f"the evaluated winner for {kind} prompts", strategy, rate)
    return by_kind


def selectable_presets(settings: Settings) -> dict[str, Preset]:
    """The presets a client may name, loaded once at start: those of ``settings.presets`` when set, else
    every model-free preset on the search path (a model-based one can hold a worker for minutes). A client
    names one of these; it never passes a path or a file."""
    files = preset_files()
    missing = [name for name in settings.presets if name not in files]
    if missing:
        raise PresetError(f"server settings: presets not found: {', '.join(missing)}")
    loaded = {}
    for name, path in files.items():
        if settings.presets and name not in settings.presets:
            continue
        try:
            preset = load_preset(str(path))
        except OCCError as exc:
            if settings.presets:  # named by the operator: a start-up error, not a warning
                raise PresetError(
                    f"server settings: preset {name} does not load ({type(exc).__name__})"
                ) from None
            # the reason is not logged: it may quote the file; `occ strategies` shows it to the operator
            log.warning(
                "preset %s is not selectable (%s; `occ strategies` says why)", name, type(exc).__name__
            )
            continue
        if settings.presets or not runs_model(preset.strategy):
            loaded[name] = preset
    return loaded


def load_presets(settings: Settings) -> Presets:
    return Presets(choose_preset(settings), selectable_presets(settings), policy_presets(settings))


def worker_config(settings: Settings, presets: Presets) -> WorkerConfig:
    """What the compression workers are given: the presets and the compression settings, no keys."""
    return WorkerConfig(
        presets=presets,
        min_prompt_tokens=settings.min_prompt_tokens,
        cache_stable=settings.cache_stable,
        keep_recent=settings.keep_recent,
        json_array_items=settings.json_array_items,
        message_cache=settings.message_cache,
        nice=settings.compression_nice,
    )


@dataclass
class Outcome:
    """What compression did to one request: ``outcome`` is the ``x-occ-compression`` word."""

    outcome: str
    messages: Any = None  # the messages to forward (None: the original ones)
    strategy: str = ""
    kind: str | None = None  # the kind of prompt the preset was chosen for (policy mode)
    original_tokens: int | None = None
    compressed_tokens: int | None = None
    seconds: float | None = None
    cache_hits: int = 0  # lookups in the worker's memo of compressed messages (cache-stable mode)
    cache_misses: int = 0
    headers: dict[str, str] = field(default_factory=dict)


async def compress(
    pool: CompressionPool,
    preset: str | None,
    presets: Presets,
    control: Mapping[str, Any],
    body: Mapping[str, Any],
) -> Outcome:
    """Compress ``body["messages"]`` with the named preset (None: the default; ``control`` may set the rate
    and the frozen messages) in a worker, within the pool's budget. Never raises for a compression problem:
    the outcome says what happened."""
    job = Job(
        messages=body["messages"],
        model=body["model"],
        preset=preset,
        rate=control.get("rate"),
        frozen_messages=control.get("frozen_messages", 0),
    )
    name = presets.get(preset).name
    started = time.perf_counter()
    try:
        done = await pool.run(job)
    except QueueFull:
        log.warning("every compression worker is busy and the queue is full: forwarding the original prompt")
        outcome = Outcome("over-budget", strategy=name, seconds=time.perf_counter() - started)
    except OverBudget:
        log.warning(
            "compression over its %.0f ms budget: forwarding the original prompt", pool.budget_s * 1000
        )
        outcome = Outcome("over-budget", strategy=name, seconds=time.perf_counter() - started)
    except Exception as exc:  # never lose a request to compression: forward it as it came
        # the client gets a stable word; the reason stays in the server's log (one line, no traceback)
        log.warning("compression failed, forwarding the original prompt: %s: %s", type(exc).__name__, exc)
        outcome = Outcome("failed", strategy=name)
    else:
        outcome = Outcome(
            done.outcome,
            messages=done.messages,
            strategy=done.preset or name,
            kind=done.kind,
            original_tokens=done.original_tokens,
            compressed_tokens=done.compressed_tokens,
            seconds=done.seconds,
            cache_hits=done.cache_hits,
            cache_misses=done.cache_misses,
        )
    outcome.headers = {"x-occ-compression": outcome.outcome}
    if outcome.outcome == "on":
        outcome.headers["x-occ-strategy"] = header_value(outcome.strategy)
    if outcome.kind is not None:
        outcome.headers["x-occ-prompt-kind"] = outcome.kind
    if outcome.original_tokens is not None:
        outcome.headers["x-occ-original-tokens"] = str(outcome.original_tokens)
    if outcome.compressed_tokens is not None:
        outcome.headers["x-occ-compressed-tokens"] = str(outcome.compressed_tokens)
    if outcome.seconds is not None:
        outcome.headers["x-occ-compression-ms"] = f"{outcome.seconds * 1000:.2f}"
    return outcome
