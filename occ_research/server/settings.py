"""Server settings: from a TOML file, then environment variables.

    # server.toml
    preset = "winner"            # a preset name or .toml path; default: winner.toml if present, else bm25-q25
    presets = ["bm25-q25", "dedup"]  # the presets a client may pick by name ("occ": {"preset": ...});
                                 # default: every preset on the search path that loads
    min_prompt_tokens = 400      # shorter prompts are forwarded as they are
    max_body_bytes = 4194304
    timeout = 120

    [[upstreams]]                # model-name prefix -> OpenAI-compatible base URL; the longest prefix wins
    prefix = "gpt-"
    base_url = "https://api.openai.com/v1"
    key_env = "OPENAI_API_KEY"   # the upstream key is read from this variable, never from the file

Environment: ``OCC_API_KEYS`` (comma-separated client keys) or ``OCC_API_KEYS_FILE`` (one per line),
``OCC_PRESET``, and ``OCC_UPSTREAM_URL`` / ``OCC_UPSTREAM_KEY_ENV`` for one default upstream. With no
upstream, every model is answered by the local GGUF model.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..exceptions import PresetError


@dataclass(frozen=True)
class Route:
    prefix: str  # "" matches every model
    base_url: str
    key_env: str = ""


@dataclass(frozen=True)
class Settings:
    api_keys: tuple[str, ...] = ()
    preset: str = ""
    presets: tuple[str, ...] = ()  # allow-list of presets clients may name; () = all that load
    routes: tuple[Route, ...] = ()
    min_prompt_tokens: int = 400
    max_body_bytes: int = 4 * 1024 * 1024
    timeout: float = 120.0
    local_model: str = ""  # a .gguf path; "" = the embedded SmolLM2
    keys: dict[str, str] = field(default_factory=dict, repr=False)  # upstream keys, by env var name

    def route(self, model: str) -> Route | None:
        """The upstream for a model name (longest matching prefix); None = the local model."""
        if model == "local":
            return None
        matching = [r for r in self.routes if model.startswith(r.prefix)]
        return max(matching, key=lambda r: len(r.prefix)) if matching else None

    @classmethod
    def load(cls, path: str | Path | None = None) -> Settings:
        config: dict[str, object] = {}
        if path is not None:
            try:
                config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise PresetError(f"cannot read server settings {path}: {exc}") from exc
        routes = [Route(**r) for r in config.get("upstreams", [])]  # type: ignore[attr-defined]
        if os.environ.get("OCC_UPSTREAM_URL"):
            routes.append(
                Route("", os.environ["OCC_UPSTREAM_URL"], os.environ.get("OCC_UPSTREAM_KEY_ENV", ""))
            )
        keys = [k.strip() for k in os.environ.get("OCC_API_KEYS", "").split(",") if k.strip()]
        if os.environ.get("OCC_API_KEYS_FILE"):
            lines = Path(os.environ["OCC_API_KEYS_FILE"]).read_text(encoding="utf-8").splitlines()
            keys += [line.strip() for line in lines if line.strip()]
        settings = cls(
            api_keys=tuple(keys),
            preset=str(os.environ.get("OCC_PRESET", config.get("preset", ""))),
            presets=tuple(str(name) for name in config.get("presets", ())),  # type: ignore[attr-defined]
            routes=tuple(routes),
            min_prompt_tokens=int(config.get("min_prompt_tokens", 400)),  # type: ignore[call-overload]
            max_body_bytes=int(config.get("max_body_bytes", 4 * 1024 * 1024)),  # type: ignore[call-overload]
            timeout=float(config.get("timeout", 120.0)),  # type: ignore[arg-type]
            local_model=str(config.get("local_model", "")),
        )
        return replace(settings, keys={r.key_env: os.environ.get(r.key_env, "") for r in routes if r.key_env})
