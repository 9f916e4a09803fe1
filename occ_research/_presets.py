"""Named strategy presets: TOML files in the top-level ``strategies/`` folder.

A preset is a strategy config plus a default budget and a description::

    description = "Near-duplicate removal, then question-aware BM25 sentence selection"
    strategy = "pipeline"
    rate = 0.5

    [[steps]]
    strategy = "dedup"

    [[steps]]
    strategy = "bm25"
    granularity = "sentence"

Every key other than ``description``, ``rate`` and ``target_tokens`` is part of the strategy config.
Presets are looked up in the folders of ``OCC_PRESET_PATH`` (os.pathsep-separated), then ``./strategies``,
then the ``strategies/`` folder of the source checkout; a path to a ``.toml`` file works too.

``winner.toml``, written by an evaluation, is a preset (the rag winner) that also holds a policy: a preset
per kind of prompt (``read_policy``), which the server applies by the kind of each request.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._kinds import KINDS
from ._paths import project_folders, writable_folder
from .exceptions import OCCError, PresetError, UnknownNameError
from .strategies import Strategy, check_budget, strategy_from_config


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    strategy: Strategy
    rate: float | None = None
    target_tokens: int | None = None
    path: Path | None = None


def writable_preset_dir() -> Path:
    """Where an evaluation writes ``winner.toml``: ./strategies if it exists, else the source checkout's."""
    return writable_folder("strategies")


def preset_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("OCC_PRESET_PATH", "").split(os.pathsep) if p]
    dirs = [*extra, *project_folders("strategies")]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def preset_files() -> dict[str, Path]:
    """Preset name -> file, for every preset on the search path (the first folder holding a name wins)."""
    found: dict[str, Path] = {}
    for folder in preset_dirs():
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def list_presets() -> dict[str, str]:
    """Preset name -> description, for every preset on the search path."""
    out = {}
    for name, path in preset_files().items():
        try:
            out[name] = load_preset(str(path)).description
        except OCCError as exc:
            out[name] = f"(unreadable: {exc})"
    return out


def load_preset(name_or_path: str) -> Preset:
    """Load a preset by name (see the module docstring for where it is looked up) or by file path.

    Paths are for people configuring their own machine (the command line, server settings): a server
    never passes a client's string here, it picks from the presets it loaded at start by name.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.is_file():
        files = preset_files()
        if name_or_path not in files:
            close = difflib.get_close_matches(name_or_path, list(files), n=2, cutoff=0.5)
            raise UnknownNameError("preset", name_or_path, close)
        path = files[name_or_path]
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PresetError(f"cannot read preset {path.name}: {exc}") from exc
    description = str(config.pop("description", ""))
    config.pop("evidence", None)  # written by the evaluation's winner selection; not a parameter
    rate = config.pop("rate", None)
    target_tokens = config.pop("target_tokens", None)
    try:
        check_budget(rate, target_tokens)
        strategy = strategy_from_config(config)
        strategy.validate()
    except OCCError as exc:
        raise PresetError(f"preset {path.name}: {exc}") from exc
    return Preset(path.stem, description, strategy, rate, target_tokens, path)


def read_policy(path: str | Path) -> dict[str, tuple[dict[str, Any], float] | None]:
    """The policy in a ``winner.toml``: for every kind of prompt, (strategy config, rate), or None where
    there is no evaluated winner (forward uncompressed). A file written before policies (a single preset)
    applies to the rag kind only."""
    config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    kinds = config.get("evidence", {}).get("kinds")
    policy: dict[str, tuple[dict[str, Any], float] | None] = dict.fromkeys(KINDS)
    if kinds is None:
        preset = {k: v for k, v in config.items() if k not in ("description", "evidence", "rate")}
        policy["rag"] = (preset, float(config.get("rate", 1.0)))
        return policy
    for kind, entry in kinds.items():
        strategy = {k: v for k, v in entry.items() if k not in ("rate", "evidence")}
        policy[kind] = (strategy, float(entry["rate"]))
    return policy
