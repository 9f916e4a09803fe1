"""A small generic registry: names to objects, with lazy ``"module:attr"`` entries and "did you mean".

Lazy entries keep heavy optional dependencies (llama-cpp, onnxruntime, ...) out of ``import occ_research``:
the module is imported only when its entry is first looked up.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .exceptions import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("tfidf")`` on a class or function."""

        def add(obj: T) -> T:
            self._add(name, obj)
            return obj

        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first lookup."""
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
        self._add(name, target)

    def _add(self, name: str, entry: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``UnknownNameError`` with close names otherwise."""
        try:
            entry = self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=2, cutoff=0.6)
            raise UnknownNameError(self.kind, name, close) from None
        if isinstance(entry, str):
            module_name, attr = entry.split(":", 1)
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
