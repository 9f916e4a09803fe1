"""What a compression worker holds and runs: the presets, the message memo, and one compression at a time.

A worker is a process of its own (``_pool.py`` starts it; ``compression_processes = false`` makes it a thread
of the server's process instead). Whatever it holds is its own, so each worker has its own ``MessageCache``:
with N workers a chat's history may be compressed up to N times before every worker remembers it, and the
hits and misses each compression met travel back with its result (the server counts them in ``/metrics``).

Nothing secret reaches a worker: it gets the presets and the numbers compression needs, not the settings
(which hold the upstream keys) and never a client's key. In a process, a compression is interrupted at its
request's deadline (``SIGALRM``, where the platform has it), so an abandoned compression gives its worker
back instead of running on; the pool kills a worker that does not stop (stuck in C code).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .._kinds import prompt_kind
from .._presets import Preset
from .._tokens import ENCODING_SHA256, count_tokens, get_encoding
from ..strategies import ChatPolicy, MessageCache, runs_model

WARM_UP_PROMPT = [{"role": "user", "content": "One sentence to warm up. Another one follows here. Why?"}]
log = logging.getLogger("occ_research.server")


@dataclass(frozen=True)
class Presets:
    """The preset used by default, the presets a client may name (``"occ": {"preset": NAME}``) and, when
    the default comes from an evaluation's policy, the preset per kind of prompt (``by_kind``: None for a
    kind with no evaluated winner, whose prompts are forwarded uncompressed)."""

    default: Preset
    selectable: Mapping[str, Preset]
    by_kind: Mapping[str, Preset | None] | None = None

    def get(self, name: str | None) -> Preset:
        """A selectable preset by name; None: the default one."""
        return self.default if name is None else self.selectable[name]

    def for_prompt(self, name: str | None, messages: Any) -> tuple[Preset | None, str | None]:
        """The preset for a request and the kind of prompt it was chosen for (None where no policy
        applies): a named preset, else the policy's entry for the prompt's kind, else the default."""
        if name is not None or self.by_kind is None:
            return self.get(name), None
        kind = prompt_kind(messages)
        return self.by_kind.get(kind), kind


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to compress: the presets and the server's compression settings, no secrets."""

    presets: Presets
    min_prompt_tokens: int
    cache_stable: bool
    keep_recent: int
    json_array_items: int
    message_cache: int
    nice: int = 0  # added to a worker process's niceness: the event loop's process goes first for the CPU


@dataclass(frozen=True)
class Job:
    """One compression: the request's messages and model, the preset (a selectable name, or None for the
    default), and the client's ``occ`` overrides (``rate`` None: the preset's budget)."""

    messages: Any
    model: str
    preset: str | None = None
    rate: float | None = None
    frozen_messages: int = 0


@dataclass(frozen=True)
class JobResult:
    """What a worker did: ``outcome`` is ``on``, ``skipped-short`` or ``skipped-kind`` (``messages`` None:
    forward the original). ``seconds`` is the compression's own time, without the wait for a worker;
    ``preset`` the preset used and ``kind`` the kind of prompt it was chosen for (policy mode)."""

    outcome: str
    preset: str = ""
    kind: str | None = None
    messages: Any = None
    original_tokens: int | None = None
    compressed_tokens: int | None = None
    seconds: float | None = None
    cache_hits: int = 0
    cache_misses: int = 0


class Worker:
    """The state of one worker: its presets and its memo of compressed messages."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.cache = MessageCache(config.message_cache)

    def warm_up(self) -> None:
        """Load what the first compression would otherwise load: every encoding, and whatever each
        model-free preset loads on first use (a model-based one loads its model when first asked)."""
        for name in ENCODING_SHA256:
            get_encoding(name)
        presets = self.config.presets
        for preset in {id(p): p for p in (presets.default, *presets.selectable.values())}.values():
            if runs_model(preset.strategy):
                continue
            try:
                preset.strategy.compress(WARM_UP_PROMPT, rate=0.5)
            except Exception as exc:  # a warm-up is best effort; the request path reports failures
                log.warning("warming up preset %s failed: %s", preset.name, type(exc).__name__)

    def compress(self, job: Job) -> JobResult:
        """Choose the preset (by name, or by the prompt's kind under a policy: none for a kind without a
        winner), count the prompt; below ``min_prompt_tokens`` it is left alone, else compressed with the
        chat policy. Cache-stable mode needs a rate: a preset with a token budget for the whole prompt compresses
        the whole prompt instead (its earlier turns then change from turn to turn)."""
        started = time.perf_counter()
        config = self.config
        preset, kind = config.presets.for_prompt(job.preset, job.messages)
        original = count_tokens(job.messages, job.model)
        if preset is None:  # a kind of prompt with no evaluated winner
            return JobResult("skipped-kind", kind=kind, original_tokens=original)
        if original < config.min_prompt_tokens:
            return JobResult("skipped-short", preset=preset.name, kind=kind, original_tokens=original)
        rate = job.rate if job.rate is not None else preset.rate
        target = None if job.rate is not None else preset.target_tokens
        stable = config.cache_stable and target is None
        chat = ChatPolicy(
            keep_recent=config.keep_recent,
            frozen_messages=job.frozen_messages,
            json_array_items=config.json_array_items,
        )
        hits, misses = self.cache.hits, self.cache.misses
        result = preset.strategy.compress(
            job.messages,
            rate=rate,
            target_tokens=target,
            model=job.model,
            chat=chat,
            cache_stable=stable,
            cache=self.cache if stable else None,
        )
        return JobResult(
            "on",
            preset=preset.name,
            kind=kind,
            messages=result.messages,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            seconds=time.perf_counter() - started,
            cache_hits=self.cache.hits - hits,
            cache_misses=self.cache.misses - misses,
        )


# -- in a worker process ----------------------------------------------------------------------------------
# A process runs one compression at a time in its main thread, so its one Worker is held at module level.
_held: dict[str, Worker] = {}


class _Interrupted(BaseException):
    """Raised into a compression at its deadline; a BaseException, so no ``except Exception`` in a strategy
    (a fallback, a best-effort step) mistakes it for a failure to recover from."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted


def start_process(config: WorkerConfig) -> None:
    """The initializer of a worker process: take the presets and warm them up, before the first job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's; the server stops its workers
    if config.nice and hasattr(os, "nice"):
        os.nice(config.nice)
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _interrupt)
    atexit.register(_exit_now)  # runs first at exit (handlers run last-registered first)
    worker = Worker(config)
    worker.warm_up()
    _held["worker"] = worker


def _exit_now() -> None:
    """End a stopping worker process at once: tearing down its heap (encodings, presets, the memo: hundreds
    of MB) takes the interpreter a second or more, which the server's shutdown would wait for. Nothing in a
    worker needs saving at exit (its log lines are written as they are emitted)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ready() -> int:
    """Run once a new worker process has warmed up: its process id, for the pool to kill it if it must."""
    return os.getpid()


def run_in_process(job: Job, seconds: float) -> JobResult:
    """``job`` in this worker process, interrupted after ``seconds`` (its request's deadline) where the
    platform allows (``TimeoutError``); the request has stopped waiting by then anyway."""
    worker = _held["worker"]
    alarm = hasattr(signal, "setitimer")
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        return worker.compress(job)
    except _Interrupted:
        raise TimeoutError("compression stopped at its deadline") from None
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
