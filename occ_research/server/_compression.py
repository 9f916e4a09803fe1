"""The compression step: which presets the server offers, and running one within a time budget, off the
event loop.

Compression (token counting included) runs in a small pool of threads of its own. A compression that does
not finish within the budget is abandoned: the original prompt is forwarded and ``x-occ-compression`` says
``over-budget``. Python threads cannot be stopped, so an abandoned compression keeps its thread until it
ends; the pool's size bounds how many can run at once, and a queued compression whose request has already
given up is skipped without running.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._presets import Preset, load_preset, preset_files, writable_preset_dir
from .._tokens import ENCODING_SHA256, count_tokens, get_encoding
from ..exceptions import OCCError, PresetError
from ..strategies import ChatPolicy, MessageCache, Strategy
from ._settings import Settings
from ._wire import header_value

DEFAULT_PRESET = "bm25-q25"
WARM_UP_PROMPT = [{"role": "user", "content": "One sentence to warm up. Another one follows here. Why?"}]
log = logging.getLogger("occ_research.server")
T = TypeVar("T")


def uses_model(strategy: Strategy) -> bool:
    """Whether a strategy, or any step of a pipeline (at any depth), runs a model."""
    steps = getattr(strategy, "steps", None) or ()
    return bool(strategy.uses_model) or any(uses_model(step) for step in steps)


@dataclass(frozen=True)
class Presets:
    """The preset used by default and the presets a client may name (``"occ": {"preset": NAME}``)."""

    default: Preset
    selectable: Mapping[str, Preset]


def choose_preset(settings: Settings) -> Preset:
    """The configured preset; else ``winner.toml`` written by an evaluation; else the documented default."""
    if settings.preset:
        return load_preset(settings.preset)
    winner = writable_preset_dir() / "winner.toml"
    return load_preset(str(winner)) if Path(winner).is_file() else load_preset(DEFAULT_PRESET)


def selectable_presets(settings: Settings) -> dict[str, Preset]:
    """The presets a client may name, loaded once at start: those of ``settings.presets`` when set, else
    every model-free preset on the search path (a model-based one can hold a thread for minutes). A client
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
        if settings.presets or not uses_model(preset.strategy):
            loaded[name] = preset
    return loaded


def load_presets(settings: Settings) -> Presets:
    return Presets(choose_preset(settings), selectable_presets(settings))


def warm_up(presets: Presets) -> None:
    """Load what the first request would otherwise load: every encoding, and whatever each model-free
    preset loads on first use. Runs in a thread at start."""
    for name in ENCODING_SHA256:
        get_encoding(name)
    for preset in {id(p): p for p in (presets.default, *presets.selectable.values())}.values():
        if uses_model(preset.strategy):
            continue
        try:
            preset.strategy.compress(WARM_UP_PROMPT, rate=0.5)
        except Exception as exc:  # a warm-up is best effort; the request path reports failures
            log.warning("warming up preset %s failed: %s", preset.name, type(exc).__name__)


class OverBudget(Exception):
    """The compression did not finish within the budget."""


class _Abandoned(Exception):
    pass


class CompressionPool:
    """Threads for compressions; ``run`` waits at most the budget, then abandons the work."""

    def __init__(self, threads: int, budget_s: float) -> None:
        self.budget_s = budget_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="occ-compress")

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a pool thread; ``OverBudget`` after ``budget_s`` (the thread finishes on its own).
        A cancelled caller (client gone) abandons the work the same way."""
        abandoned = threading.Event()

        def guarded() -> T:
            if abandoned.is_set():  # waited in the queue past its request: skip it
                raise _Abandoned
            return work()

        future: Future[T] = self._pool.submit(guarded)
        try:
            with anyio.fail_after(self.budget_s):
                return await asyncio.shield(asyncio.wrap_future(future))
        except TimeoutError:
            raise OverBudget from None
        finally:
            if not future.done():
                abandoned.set()
                future.add_done_callback(_forget)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _forget(future: Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so nothing is logged about an abandoned compression


@dataclass
class Outcome:
    """What compression did to one request: ``outcome`` is the ``x-occ-compression`` word."""

    outcome: str
    messages: Any = None  # the messages to forward (None: the original ones)
    strategy: str = ""
    original_tokens: int | None = None
    compressed_tokens: int | None = None
    seconds: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def compress(
    pool: CompressionPool,
    preset: Preset,
    control: Mapping[str, Any],
    body: Mapping[str, Any],
    settings: Settings,
    cache: MessageCache | None = None,
) -> Outcome:
    """Compress ``body["messages"]`` with ``preset`` (``control`` may set the rate and the frozen messages)
    within the pool's budget, with the chat policy of ``settings``. Never raises for a compression
    problem: the outcome says what happened.

    Cache-stable mode (``settings.cache_stable``) needs a rate: a preset with a token budget for the whole
    prompt compresses the whole prompt instead (its earlier turns then change from turn to turn)."""
    rate = control.get("rate", preset.rate)
    target = None if "rate" in control else preset.target_tokens
    messages, model = body["messages"], body["model"]
    chat = ChatPolicy(
        keep_recent=settings.keep_recent,
        frozen_messages=control.get("frozen_messages", 0),
        json_array_items=settings.json_array_items,
    )
    stable = settings.cache_stable and target is None

    def work() -> Outcome:
        started = time.perf_counter()
        original = count_tokens(messages, model)
        if original < settings.min_prompt_tokens:
            return Outcome("skipped-short", original_tokens=original)
        result = preset.strategy.compress(
            messages,
            rate=rate,
            target_tokens=target,
            model=model,
            chat=chat,
            cache_stable=stable,
            cache=cache if stable else None,
        )
        return Outcome(
            "on",
            messages=result.messages,
            strategy=preset.name,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            seconds=time.perf_counter() - started,
        )

    started = time.perf_counter()
    try:
        outcome = await pool.run(work)
    except OverBudget:
        log.warning(
            "compression over its %.0f ms budget: forwarding the original prompt", pool.budget_s * 1000
        )
        outcome = Outcome("over-budget", strategy=preset.name, seconds=time.perf_counter() - started)
    except Exception as exc:  # never lose a request to compression: forward it as it came
        # the client gets a stable word; the reason stays in the server's log (one line, no traceback)
        log.warning("compression failed, forwarding the original prompt: %s: %s", type(exc).__name__, exc)
        outcome = Outcome("failed", strategy=preset.name)
    outcome.headers = {"x-occ-compression": outcome.outcome}
    if outcome.outcome == "on":
        outcome.headers["x-occ-strategy"] = header_value(outcome.strategy)
    if outcome.original_tokens is not None:
        outcome.headers["x-occ-original-tokens"] = str(outcome.original_tokens)
    if outcome.compressed_tokens is not None:
        outcome.headers["x-occ-compressed-tokens"] = str(outcome.compressed_tokens)
    if outcome.seconds is not None:
        outcome.headers["x-occ-compression-ms"] = f"{outcome.seconds * 1000:.2f}"
    return outcome
