"""Where the project's folders are, found in one place so that every command agrees.

Configuration and results live outside the package, in top-level folders (``strategies/`` for presets,
``evals/`` for suites and runs). Each is looked for in the current directory first, then in the source
checkout this package runs from (an editable install). The shared datasets are in ``OCC_DATA_DIR``, else
``../shared/data`` beside the current directory or beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import DatasetError

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def project_folders(name: str) -> list[Path]:
    """The existing folders called ``name``: in the current directory, then in the source checkout."""
    found: list[Path] = []
    for folder in (Path.cwd() / name, SOURCE_ROOT / name):
        if folder.is_dir() and folder.resolve() not in [f.resolve() for f in found]:
            found.append(folder)
    return found


def writable_folder(name: str) -> Path:
    """Where to write into the folder ``name``: the current directory's if it has one, else the checkout's."""
    local = Path.cwd() / name
    return local if local.is_dir() else SOURCE_ROOT / name


def cache_dir() -> Path:
    """Where files derived on this machine are kept (``OCC_CACHE_DIR``, else ``~/.cache/occ-research``)."""
    return Path(os.environ.get("OCC_CACHE_DIR") or Path.home() / ".cache" / "occ-research")


def data_dir() -> Path:
    """The shared data folder (see the module docstring)."""
    if os.environ.get("OCC_DATA_DIR"):
        return Path(os.environ["OCC_DATA_DIR"])
    for candidate in (Path.cwd().parent / "shared" / "data", SOURCE_ROOT.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    raise DatasetError("shared data folder not found: set OCC_DATA_DIR to the folder holding the datasets")
