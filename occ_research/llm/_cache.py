"""An on-disk cache of LLM calls, so re-running an experiment costs nothing.

Keys hash (back end, model, messages, parameters). SQLite in WAL mode makes concurrent readers and writers,
threads or processes, safe; a write that loses a race simply rewrites the same value.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._base import LLM, ChatResponse


def default_cache_path() -> Path:
    """``OCC_CACHE_DIR``/llm-cache.sqlite, else ~/.cache/occ-research/llm-cache.sqlite."""
    base = Path(os.environ.get("OCC_CACHE_DIR") or Path.home() / ".cache" / "occ-research")
    return base / "llm-cache.sqlite"


class CallCache:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as db:
            db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    @staticmethod
    def key(llm: LLM, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
        payload = json.dumps(
            [llm.backend, llm.model, list(messages), dict(params)], sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> ChatResponse | None:
        row = self._connection().execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else ChatResponse(**json.loads(row[0]))

    def put(self, key: str, response: ChatResponse) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", (key, json.dumps(response.to_dict()))
        )

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM calls").fetchone()[0])


class CachedLLM(LLM):
    """Wraps an LLM; answers repeated calls (same back end, model, messages, parameters) from the cache."""

    def __init__(self, llm: LLM, cache: CallCache) -> None:
        self.llm = llm
        self.cache = cache
        self.backend = llm.backend
        self.model = llm.model

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        key = CallCache.key(self.llm, messages, params)
        hit = self.cache.get(key)
        if hit is None:
            hit = self.llm.chat(messages, **params)
            self.cache.put(key, hit)
        return hit

    async def achat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        key = CallCache.key(self.llm, messages, params)
        hit = self.cache.get(key)
        if hit is None:
            hit = await self.llm.achat(messages, **params)
            self.cache.put(key, hit)
        return hit
