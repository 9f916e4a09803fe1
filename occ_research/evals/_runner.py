"""Run an evaluation suite: every example x strategy x budget, compressed, answered by a reader, scored.

A suite is a TOML file (see ``evals/quick.toml``)::

    name = "quick"
    seed = 0
    budgets = [0.5, 0.25]                      # rates: kept fraction of the prompt's tokens
    reader = "local"                           # an LLM spec for occ_research.llm.make_llm
    strategies = ["bm25", "dedup+bm25", { strategy = "tfidf", granularity = "passage", label = "tfidf-p" }]

    [[datasets]]
    name = "nq-multidoc"
    n = 10
    documents = 5

Rows are appended to ``rows.jsonl`` in the run folder as they are produced, so an interrupted run resumes
where it stopped; the reader's calls go through the on-disk LLM cache.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .._messages import text_slots
from .._presets import load_preset
from ..exceptions import SuiteError
from ..llm import LLM, make_llm
from ..strategies import STRATEGIES, Strategy, strategy_from_config
from ._datasets import Example, load_examples
from ._metrics import METRICS, contains_answer, normalize_answer

BASELINES = ("identity", "truncate", "random")
TASK_METRIC = {
    "qa": "contains",
    "retrieval": "contains",
    "math": "numeric_match",
    "summary": "rougel",
    "chat": "rougel",
}
TASK_MAX_TOKENS = {"qa": 32, "retrieval": 48, "math": 256, "summary": 200, "chat": 200}


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: list[dict[str, Any]]
    strategies: list[dict[str, Any]]  # strategy configs, labelled by "label" (default: the strategy name)
    budgets: list[float]
    reader: str = "local"
    reader_base_url: str = ""
    seed: int = 0
    model: str = "gpt-4o"  # whose tokenizer counts the savings
    workers: int = 4
    min_fidelity: float = 0.95
    price_per_million_tokens: float = 2.5  # USD per 1M input tokens of the target model, for savings in money
    path: Path | None = field(default=None, compare=False)


def load_suite(path: str | Path) -> Suite:
    """Read a suite file; the baselines (identity, truncate, random) are always added."""
    path = Path(path)
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SuiteError(f"cannot read suite {path}: {exc}") from exc
    specs = [_spec(s) for s in config.get("strategies", [])]
    names = {s.get("label", s["strategy"]) for s in specs}
    specs = [{"strategy": b} for b in BASELINES if b not in names] + specs
    if len({s.get("label", s["strategy"]) for s in specs}) != len(specs):
        raise SuiteError(f"suite {path}: strategies need distinct labels (add label = ...)")
    for spec in specs:
        label = spec.pop("label", spec["strategy"])
        strategy_from_config(spec).validate()  # fail before any work is done
        spec["label"] = label
    budgets = [float(b) for b in config.get("budgets", [0.5])]
    if not budgets or any(not 0 < b <= 1 for b in budgets):
        raise SuiteError(f"suite {path}: budgets must be rates in (0, 1], got {budgets}")
    return Suite(
        name=str(config.get("name", path.stem)),
        datasets=list(config.get("datasets", [])),
        strategies=specs,
        budgets=budgets,
        reader=str(config.get("reader", "local")),
        reader_base_url=str(config.get("reader_base_url", "")),
        seed=int(config.get("seed", 0)),
        model=str(config.get("model", "gpt-4o")),
        workers=int(config.get("workers", 4)),
        min_fidelity=float(config.get("min_fidelity", 0.95)),
        price_per_million_tokens=float(config.get("price_per_million_tokens", 2.5)),
        path=path,
    )


def _spec(entry: str | dict[str, Any]) -> dict[str, Any]:
    """A suite's strategy entry: a strategy name, a preset name, or an inline config table."""
    if not isinstance(entry, str):
        return dict(entry)
    if entry in STRATEGIES:
        return {"strategy": entry}
    return {**load_preset(entry).strategy.config(), "label": entry}


def _strategy(spec: dict[str, Any]) -> Strategy:
    return strategy_from_config({k: v for k, v in spec.items() if k != "label"})


def _text(messages: Iterable[dict[str, Any]]) -> str:
    return "\n".join(slot.text for slot in text_slots(list(messages)))


def _answer(reader: LLM, messages: list[dict[str, Any]], task: str, seed: int) -> str:
    return reader.chat(messages, max_tokens=TASK_MAX_TOKENS.get(task, 64), temperature=0.0, seed=seed).text


def run_suite(
    suite: Suite,
    output: str | Path,
    *,
    limit: int | None = None,
    reader: LLM | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> Path:
    """Run (or resume) ``suite`` into the folder ``output``; returns the folder. See the module docstring."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    done = set()
    if rows_path.exists():
        for line in rows_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done.add((row["example"], row["strategy"], row["budget"]))
    reader = reader or make_llm(suite.reader, base_url=suite.reader_base_url)
    _write_manifest(suite, out, reader, limit)
    examples: list[tuple[str, Example]] = []
    for spec in suite.datasets:
        options = {k: v for k, v in spec.items() if k != "name"}
        if limit is not None:
            options["n"] = min(int(options.get("n", limit)), limit)
        examples.extend((spec["name"], e) for e in load_examples(spec["name"], **options))

    def evaluate(item: tuple[str, Example]) -> list[dict[str, Any]]:
        dataset, example = item
        metric = METRICS.get(TASK_METRIC.get(example.task, "contains"))
        todo = [
            (spec, budget)
            for spec in suite.strategies
            for budget in ([1.0] if spec["strategy"] == "identity" else suite.budgets)
            if (example.id, spec["label"], budget) not in done
        ]
        if not todo:
            return []
        original = _answer(reader, example.messages, example.task, suite.seed)
        original_score = metric.score(original, example.answers)
        rows = []
        for spec, budget in todo:
            result = _strategy(spec).compress(
                example.messages, rate=budget, question=example.question, model=suite.model, seed=suite.seed
            )
            answer = (
                original
                if spec["strategy"] == "identity"
                else _answer(reader, result.messages, example.task, suite.seed)
            )
            rows.append(
                {
                    "dataset": dataset,
                    "example": example.id,
                    "task": example.task,
                    "strategy": spec["label"],
                    "budget": budget,
                    "original_tokens": result.original_tokens,
                    "compressed_tokens": result.compressed_tokens,
                    "rate": result.rate,
                    "saved_tokens": result.saved_tokens,
                    "budget_met": result.budget_met,
                    "compress_seconds": result.seconds,
                    "answer_kept": contains_answer(_text(result.messages), example.answers)
                    if example.task in ("qa", "retrieval")
                    else None,
                    "metric": metric.name,
                    "score_original": original_score,
                    "score_compressed": metric.score(answer, example.answers),
                    "agreement": normalize_answer(answer) == normalize_answer(original),
                    "answer_original": original,
                    "answer_compressed": answer,
                }
            )
        return rows

    iterator: Iterable[list[dict[str, Any]]]
    with (
        ThreadPoolExecutor(max_workers=max(1, suite.workers)) as pool,
        rows_path.open("a", encoding="utf-8") as sink,
    ):
        iterator = pool.map(evaluate, examples)
        if progress is not None:
            iterator = progress(iterator, len(examples))
        for rows in iterator:
            for row in rows:
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
    _finish_manifest(out)
    return out


def load_rows(run: str | Path) -> Any:
    """The run's rows as a pandas DataFrame (one row per example x strategy x budget)."""
    import pandas as pd

    return pd.read_json(Path(run) / "rows.jsonl", lines=True)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except OSError:
        return ""


def _write_manifest(suite: Suite, out: Path, reader: LLM, limit: int | None) -> None:
    packages = [
        "occ-research",
        "tiktoken",
        "scikit-learn",
        "numpy",
        "datasets",
        "llama-cpp-python",
        "onnxruntime",
    ]
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    manifest = {
        "suite": suite.name,
        "suite_file": suite.path.name if suite.path else None,
        "datasets": suite.datasets,
        "strategies": suite.strategies,
        "budgets": suite.budgets,
        "seed": suite.seed,
        "limit": limit,
        "reader": {"spec": suite.reader, "backend": reader.backend, "model": reader.model},
        "token_model": suite.model,
        "min_fidelity": suite.min_fidelity,
        "price_per_million_tokens": suite.price_per_million_tokens,
        "git_commit": _git_commit(),
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _finish_manifest(out: Path) -> None:
    path = out / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    manifest["seconds"] = round(time.time() - datetime.fromisoformat(manifest["started"]).timestamp(), 1)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
