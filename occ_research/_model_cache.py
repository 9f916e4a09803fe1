"""Loaded models, and results worth keeping next to them, held by one owner object per kind.

A model loads once per process and key (file, context size, ...) and stays until ``clear()``, which tests and
benchmarks call to start cold. The owner is an object, not a module dict, so clearing is a public call and
closing what it holds happens in one place.
"""

from __future__ import annotations

import atexit
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ModelCache(Generic[K, V]):
    """Values by key, built on first use; ``max_items`` keeps only the most recently used ones.

    ``close`` is called on every value that ``clear()`` drops, and ``clear()`` runs once more at exit,
    while the interpreter is still whole (native finalisers such as llama-cpp's fail during shutdown).
    Thread-safe: a value is built at most once per key, under the cache's lock.
    """

    def __init__(self, *, max_items: int | None = None, close: Callable[[V], None] | None = None) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self._items: OrderedDict[K, V] = OrderedDict()
        self._max_items = max_items
        self._close = close
        self._lock = threading.RLock()
        if close is not None:
            atexit.register(self.clear)

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        """The value for ``key``, built by ``build()`` if it is not held."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = build()
            self._store(key, value)
            return value

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._store(key, value)

    def clear(self) -> None:
        """Drop (and close) everything held."""
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
        if self._close is not None:
            for value in dropped:
                self._close(value)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def _store(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while self._max_items is not None and len(self._items) > self._max_items:
            _, evicted = self._items.popitem(last=False)
            if self._close is not None:
                self._close(evicted)
