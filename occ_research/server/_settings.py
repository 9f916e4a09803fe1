"""Server settings: from a TOML file, then environment variables.

    # server.toml
    preset = "winner"            # a preset name or .toml path; default: winner.toml if present, else bm25-q25
    presets = ["bm25-q25", "dedup"]  # the presets a client may pick by name ("occ": {"preset": ...});
                                 # default: every model-free preset on the search path that loads
    min_prompt_tokens = 400      # shorter prompts are forwarded as they are
    compression_budget_ms = 300  # longer compressions are abandoned: the original prompt is forwarded
    compression_workers = 2      # worker processes compressing prompts, one prompt each at a time (per
                                 # server process: `occ serve --workers 2` runs 2 x this many)
    compression_queue = 128      # compressions that may wait for a worker; past that, the original is
                                 # forwarded at once (over-budget)
    compression_nice = 10        # the workers' CPU priority below the server's (Unix nice): with the cores
                                 # busy, the event loop goes first (relayed requests are not slowed down;
                                 # a compression waits, within its budget); 0: the same priority
    compression_processes = true # false: the workers are threads of the server's process (no start-up
                                 # cost, no isolation; compression then slows the event loop down)
    max_body_bytes = 4194304
    timeout = 120                # upstream connect and per-read timeout, seconds
    header_timeout = 10          # a client has this long to send a request's headers, seconds
    body_timeout = 30            # ... and this long to send its body
    keep_alive_timeout = 5       # an idle keep-alive connection is closed after this long
    access_log = false           # one JSON line per request on the "occ_research.server.access" logger
    cache_stable = true          # each message compressed from the messages up to it: earlier turns are
                                 # re-sent byte-identical, so the provider's prompt cache keeps hitting
    keep_recent = 0              # chats: how many earlier exchanges stay verbatim. 0 here (the library's
                                 # default is 2): with cache_stable, a verbatim message that ages out is
                                 # rewritten once, and the provider then re-bills everything after it
                                 # (measured: -18% net at a 10% cached-input price with 2, +33% with 0)
    json_array_items = 0         # > 0: long JSON arrays in tool outputs keep first and last items
    message_cache = 4096         # compressed messages remembered (LRU), so a history is compressed once

    [[upstreams]]                # model-name prefix -> OpenAI-compatible base URL; the longest prefix wins
    prefix = "gpt-"
    base_url = "https://api.openai.com/v1"
    key_env = "OPENAI_API_KEY"   # the upstream key is read from this variable, never from the file

Environment: ``OCC_API_KEYS`` (comma-separated client keys) or ``OCC_API_KEYS_FILE`` (one per line, see
``auth.parse_keys``), ``OCC_PRESET``, and ``OCC_UPSTREAM_URL`` / ``OCC_UPSTREAM_KEY_ENV`` for one default
upstream. With no upstream, every model is answered by the local GGUF model.

Every problem is a ``SettingsError`` of one line that names the file (or variable) and the line.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import SettingsError
from ._auth import parse_keys


@dataclass(frozen=True)
class Route:
    prefix: str  # "" matches every model
    base_url: str
    key_env: str = ""

    @property
    def label(self) -> str:
        """The route as a metrics label: a few bounded values, never a client's model name."""
        return f"{self.prefix}*"


@dataclass(frozen=True)
class Settings:
    api_keys: tuple[str, ...] = ()
    preset: str = ""
    presets: tuple[str, ...] = ()  # allow-list of presets clients may name; () = the model-free ones
    routes: tuple[Route, ...] = ()
    min_prompt_tokens: int = 400
    compression_budget_ms: float = 300.0
    compression_workers: int = 2
    compression_queue: int = 128
    compression_nice: int = 10
    compression_processes: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    timeout: float = 120.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    access_log: bool = False
    local_model: str = ""  # a .gguf path; "" = the embedded SmolLM2
    cache_stable: bool = True
    keep_recent: int = 0  # see the module docstring: 2 loses money once a prompt cache is priced in
    json_array_items: int = 0
    message_cache: int = 4096
    keys: dict[str, str] = field(default_factory=dict, repr=False)  # upstream keys, by env var name

    def route(self, model: str) -> Route | None:
        """The upstream for a model name (longest matching prefix); None = the local model."""
        if model == "local":
            return None
        found = None
        for route in self.routes:  # a loop, not max(): this runs for every request
            if model.startswith(route.prefix) and (found is None or len(route.prefix) > len(found.prefix)):
                found = route
        return found

    @classmethod
    def load(cls, path: str | Path | None = None) -> Settings:
        config: dict[str, Any] = {}
        text = ""
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{path}: cannot read the server settings: {_reason(exc)}") from None
            try:
                config = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(_toml_error(path, exc)) from None
        where = _Locator(str(path), text)
        unknown = sorted(set(config) - set(_FIELDS) - {"upstreams"})
        if unknown:
            close = difflib.get_close_matches(unknown[0], [*_FIELDS, "upstreams"], n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(_FIELDS))}"
            raise SettingsError(f"{where.at(unknown[0])}unknown setting {unknown[0]!r}{hint}")
        values = {name: check(where, name, config[name]) for name, check in _FIELDS.items() if name in config}
        routes = _routes(where, config.get("upstreams", []))
        if os.environ.get("OCC_UPSTREAM_URL"):
            url = os.environ["OCC_UPSTREAM_URL"]
            if not _is_http_url(url):
                raise SettingsError("OCC_UPSTREAM_URL: must be an http:// or https:// URL")
            routes.append(Route("", url, os.environ.get("OCC_UPSTREAM_KEY_ENV", "")))
        keys = [k.strip() for k in os.environ.get("OCC_API_KEYS", "").split(",") if k.strip()]
        if os.environ.get("OCC_API_KEYS_FILE"):
            keys += _keys_file(os.environ["OCC_API_KEYS_FILE"])
        preset = os.environ.get("OCC_PRESET", values.pop("preset", ""))
        settings = cls(api_keys=tuple(keys), preset=str(preset), routes=tuple(routes), **values)
        return replace(settings, keys={r.key_env: os.environ.get(r.key_env, "") for r in routes if r.key_env})


class _Locator:
    """``file:line: `` for a key of the settings file (its first assignment), for one-line errors."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def at(self, key: str, occurrence: int = 0) -> str:
        pattern = re.compile(rf"^\s*(\[\[\s*)?{re.escape(key)}\s*(=|\]\])")
        seen = 0
        for number, line in enumerate(self.lines, 1):
            if pattern.match(line):
                if seen == occurrence:
                    return f"{self.path}:{number}: "
                seen += 1
        return f"{self.path}: "


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _toml_error(path: str | Path, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    found = re.search(r"\(at line (\d+), column \d+\)", message)
    line = f"{found[1]}:" if found else ""
    return f"{path}:{line} not valid TOML: {message.split(' (at')[0]}"


def _number(low: float) -> Callable[[_Locator, str, object], float]:
    def check(where: _Locator, name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise SettingsError(f"{where.at(name)}{name} must be a number >= {low:g}")
        return float(value)

    return check


def _integer(low: int) -> Callable[[_Locator, str, object], int]:
    def check(where: _Locator, name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SettingsError(f"{where.at(name)}{name} must be an integer >= {low}")
        return value

    return check


def _string(where: _Locator, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{where.at(name)}{name} must be a string")
    return value


def _boolean(where: _Locator, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{where.at(name)}{name} must be true or false")
    return value


def _names(where: _Locator, name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{where.at(name)}{name} must be a list of preset names")
    return tuple(value)


_FIELDS: dict[str, Callable[[_Locator, str, Any], Any]] = {
    "preset": _string,
    "presets": _names,
    "min_prompt_tokens": _integer(0),
    "compression_budget_ms": _number(1),
    "compression_workers": _integer(1),
    "compression_queue": _integer(1),
    "compression_nice": _integer(0),
    "compression_processes": _boolean,
    "max_body_bytes": _integer(1),
    "timeout": _number(0.001),
    "header_timeout": _number(0.001),
    "body_timeout": _number(0.001),
    "keep_alive_timeout": _number(0.001),
    "access_log": _boolean,
    "local_model": _string,
    "cache_stable": _boolean,
    "keep_recent": _integer(0),
    "json_array_items": _integer(0),
    "message_cache": _integer(1),
}


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _routes(where: _Locator, tables: object) -> list[Route]:
    if not isinstance(tables, list):
        raise SettingsError(f"{where.at('upstreams')}upstreams must be [[upstreams]] tables")
    routes = []
    for i, table in enumerate(tables):
        at = where.at("upstreams", i)
        if not isinstance(table, dict):
            raise SettingsError(f"{at}each [[upstreams]] entry must be a table")
        unknown = sorted(set(table) - {"prefix", "base_url", "key_env"})
        if unknown:
            raise SettingsError(f"{at}[[upstreams]] takes prefix, base_url and key_env, not {unknown[0]!r}")
        if not all(isinstance(table.get(k, ""), str) for k in ("prefix", "base_url", "key_env")):
            raise SettingsError(f"{at}[[upstreams]] prefix, base_url and key_env must be strings")
        if not _is_http_url(table.get("base_url", "")):
            raise SettingsError(f"{at}[[upstreams]] base_url must be an http:// or https:// URL")
        routes.append(Route(table.get("prefix", ""), table["base_url"], table.get("key_env", "")))
    return routes


def _keys_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"OCC_API_KEYS_FILE {path}: cannot read it: {_reason(exc)}") from None
    try:
        keys = parse_keys(text)
    except ValueError as exc:
        raise SettingsError(f"{path}:{exc}") from None
    if not keys:
        raise SettingsError(f"{path}: OCC_API_KEYS_FILE holds no keys (refusing to run without them)")
    return keys
