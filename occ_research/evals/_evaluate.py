"""``evaluate``: the one call that runs a suite and writes its report, for the command line and notebooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._paths import project_folders, writable_folder
from ..exceptions import SuiteError
from ..llm import LLM
from ._likelihood import AnswerScorer
from ._report import write_report
from ._runner import load_suite, run_suite


def find_suite(name: str | Path) -> Path:
    """A suite by path, or by name in the ``evals/`` folders (see ``occ_research._paths``)."""
    candidates = [Path(name), *(folder / f"{name}.toml" for folder in project_folders("evals"))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SuiteError(f"suite not found: {name} (looked for {name} and evals/{name}.toml)")


def evaluate(
    suite: str | Path,
    output: str | Path | None = None,
    *,
    limit: int | None = None,
    reader: LLM | None = None,
    scorer: AnswerScorer | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    executor: str | None = None,
) -> Path:
    """Run (or resume) a suite, by name or path, and write its report; returns the run folder.

    ``output`` defaults to ``evals/runs/SUITE-TIME``; an existing folder is resumed. ``limit`` caps the
    examples per dataset (a smoke run). ``reader`` and ``scorer`` replace the suite's reader and likelihood
    model (e.g. already loaded ones); ``executor`` the suite's executor ("local" or "ray").
    """
    loaded = load_suite(find_suite(suite))
    if output is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        output = writable_folder("evals") / "runs" / f"{loaded.name}-{stamp}"
    run = run_suite(
        loaded, output, limit=limit, reader=reader, scorer=scorer, progress=progress, executor=executor
    )
    write_report(run)
    return run
