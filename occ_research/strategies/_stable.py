"""Cache-stable compression: each message compressed on its own, from the messages up to it.

Providers cache a prompt's prefix (OpenAI automatically, Anthropic at ``cache_control`` breakpoints), so a
proxy that rewrites earlier turns differently every turn makes them miss. Here message i is compressed with
messages 0..i as its whole world: its question is the user turn of its exchange, its budget ``rate`` of its
own compressible tokens (a budget for the whole prompt would change with every turn), and what a strategy
reads around it (dedup's originals) comes only from earlier messages, in their original text. A message is
then either verbatim (recent or frozen, see ``_policy.py``) or in its one compressed form, byte-identical
in every later turn. ``MessageCache`` remembers compressed messages, so a long history is compressed once.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._messages import Message
from .._tokens import count_messages_tokens
from ..exceptions import InvalidParameterError
from ._policy import Mode, slot_plans
from ._prepare import Prepared, tokens_to_remove
from ._results import CompressionResult, TraceEntry


@dataclass(frozen=True)
class _Compressed:
    message: Message
    budget_met: bool
    note: str
    trace: tuple[TraceEntry, ...]


class MessageCache:
    """A bounded LRU of compressed messages, keyed by a hash of the messages up to one and the settings.

    Safe across threads. ``hits`` and ``misses`` count lookups."""

    def __init__(self, maxsize: int = 4096) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise InvalidParameterError("MessageCache maxsize must be an integer >= 1")
        self.maxsize = maxsize
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, _Compressed] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> _Compressed | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: str, value: _Compressed) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def compress_stable(
    name: str,
    params: dict[str, Any],
    run: Callable[[Prepared], CompressionResult],
    job: Prepared,
    cache: MessageCache | None,
) -> CompressionResult:
    """Compress every message that may change on its own (``run`` is the strategy's ``_compress_prepared``)
    and put the prompt back together."""
    out = list(job.messages)
    notes: list[str] = []
    trace: list[TraceEntry] = []
    met = True
    target = None if job.rate is None else job.original_tokens
    settings = json.dumps(
        [params, job.rate, job.model, job.seed, job.compress_system, job.policy.json_array_items, job.chat],
        sort_keys=True,
        default=repr,
    )
    chain = _digest(settings)
    for i, message in enumerate(job.messages):
        chain = _digest(chain, json.dumps(message, sort_keys=True, default=repr))
        mode = job.modes[i]
        if not any(job.plans[k].free for k, slot in enumerate(job.slots) if slot.message == i):
            continue
        removed = 0
        if target is not None and job.rate is not None:
            removed = tokens_to_remove(job.slots, job.plans, job.model, job.memo, job.rate, message=i)
            target -= removed
        key = _digest(chain, mode, job.questions[i] if job.questions else job.question)
        done = cache.get(key) if cache is not None else None
        if done is None:
            done = _compress_one(run, job, i, mode, removed)
            if cache is not None:
                cache.put(key, done)
        out[i] = copy.deepcopy(done.message)
        met = met and done.budget_met
        if done.note and done.note not in notes:
            notes.append(done.note)
        trace.extend(done.trace)
    compressed = count_messages_tokens(out, job.model, job.memo)
    return CompressionResult(
        messages=out,
        original_tokens=job.original_tokens,
        compressed_tokens=compressed,
        target_tokens=target,
        budget_met=met and (target is None or compressed <= target),
        seconds=time.perf_counter() - job.started,
        strategy=name,
        params=params,
        model=job.model,
        note="; ".join(notes),
        trace=tuple(trace),
    )


def _compress_one(
    run: Callable[[Prepared], CompressionResult], job: Prepared, i: int, mode: Mode, removed: int
) -> _Compressed:
    """Message ``i`` compressed as the only changeable message of the prompt ``messages[: i + 1]``, to
    remove ``removed`` tokens."""
    prefix = job.messages[: i + 1]
    slots = [s for s in job.slots if s.message <= i]  # the same slot indices as in the whole prompt
    fixed: Mode = "fixed"
    modes = (*([fixed] * i), mode)
    located = job.located if job.located is not None and job.located[0] < len(slots) else None
    prefix_tokens = count_messages_tokens(prefix, job.model, job.memo)
    sub = dataclasses.replace(
        job,
        messages=prefix,
        slots=slots,
        original_tokens=prefix_tokens,
        target=None if job.rate is None else prefix_tokens - removed,
        question=job.questions[i] if job.questions else job.question,
        located=located,
        modes=modes,
        plans=slot_plans(slots, modes, located, job.policy),
        cache_stable=False,
    )
    result = run(sub)
    return _Compressed(result.messages[i], result.budget_met, result.note, result.trace)
