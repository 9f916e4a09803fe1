"""Run an evaluation suite: every example x strategy x budget, compressed, scored, and compared with the original.

A suite is a TOML file (see ``evals/quick.toml``)::

    name = "quick"
    seed = 0
    budgets = [0.5, 0.25]                      # rates: kept fraction of the prompt's tokens
    reader = "local"                           # an LLM spec for occ_research.llm.make_llm
    likelihood = "local"                       # the model of the likelihood signal ("" for none)
    executor = "local"                         # or "ray": tasks and actors on a Ray cluster (see below)
    workers = 2                                # threads (local) or reader / likelihood actors (ray)
    strategies = ["bm25", "dedup+bm25", { strategy = "tfidf", granularity = "passage", label = "tfidf-p" }]
    # an entry's ``options`` compress its prompts another way, e.g. the way the server does:
    #   { strategy = "bm25", label = "bm25-served", options = { chat = { keep_recent = 0 },
    #     cache_stable = true, question = "found" } }

    [[datasets]]
    name = "nq-multidoc"
    n = 100              # examples: every one is compressed (savings, retention, time)
    n_likelihood = 100   # the first ones also get the gold answer's likelihood (default: all)
    n_read = 20          # the first ones are also answered by the reader (default: all)
    documents = 5

Each example yields one ``Row`` per strategy x budget, appended to ``rows.jsonl`` as it is produced, so an
interrupted run resumes where it stopped; the reader's calls go through the on-disk LLM cache.

The work of one example is three plain functions, so that it runs the same wherever it runs:
``compress_cell`` (one strategy x budget), ``measure`` (the reader and the likelihood model on the original
and compressed prompts, a ``ModelJob`` in, ``Measures`` out) and ``rows_of``. ``executor = "local"`` (the
default) runs ``evaluate_item``, the three in a row, on ``workers`` threads; ``executor = "ray"`` (or
``occ eval --executor ray``) runs the compressions as Ray tasks and ``measure`` on ``workers`` Ray actors
that each load the reader and the likelihood model once (see ``_ray_executor``). Both write the same rows
in the same order: seeds travel with the work, and rows are written in suite order.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import subprocess
import time
import tomllib
import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from .._messages import Message, text_slots
from .._presets import load_preset
from ..exceptions import ContextLengthError, InvalidParameterError, SuiteError, UnknownNameError
from ..llm import LLM, make_llm
from ..strategies import (
    STRATEGIES,
    ChatPolicy,
    CompressionResult,
    CompressOptions,
    Strategy,
    strategy_from_config,
)
from ._datasets import DATASETS, DatasetSpec, Example
from ._likelihood import AnswerScorer
from ._metrics import METRICS, Metric, contains_answer, normalize_answer
from ._stats import sample_size_for

BASELINES = ("identity", "truncate", "random")
#: what a strategy entry's ``options`` table may set (``entry_options``)
ENTRY_OPTIONS = ("chat", "cache_stable", "question")
#: options of a suite's dataset entry that the runner reads (the others go to the loader)
RUNNER_OPTIONS = ("name", "n_read", "n_likelihood", "metric")
#: where the work runs: threads in this process, or Ray tasks and actors (``_ray_executor``, the [ray] extra)
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Row:
    """One example x strategy x budget: a line of ``rows.jsonl``. None marks what was not measured (the
    reader and the likelihood run on the first ``n_read`` and ``n_likelihood`` examples only)."""

    dataset: str
    kind: str
    task: str
    example: str
    strategy: str
    budget: float
    original_tokens: int
    compressed_tokens: int
    rate: float
    saved_tokens: int
    budget_met: bool
    compress_seconds: float
    answer_kept: bool | None  # a gold answer still in the compressed prompt (where that means something)
    metric: str
    score_original: float | None = None
    score_compressed: float | None = None
    agreement: bool | None = None
    answer_original: str | None = None
    answer_compressed: str | None = None
    ll_original: float | None = None  # log-likelihood of the gold answer after the original prompt
    ll_compressed: float | None = None  # ... after the compressed prompt
    ll_none: float | None = None  # ... after the question alone
    gold_position: int | None = None  # 0-based document holding the gold passage (multi-document QA)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class StrategyEntry:
    """One strategy entry of a suite: its label (the rows' ``strategy``), the strategy's config, and the
    ``options`` table saying how it compresses (``compress_options``). Checked when the suite is read."""

    label: str
    config: dict[str, Any]  # what ``strategy_from_config`` takes
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, entry: str | dict[str, Any]) -> StrategyEntry:
        """A strategy name, a preset name, an inline config table, or a manifest's record of an entry."""
        if isinstance(entry, str):
            if entry in STRATEGIES:
                return cls(entry, {"strategy": entry})
            return cls(entry, load_preset(entry).strategy.config())
        if not isinstance(entry, dict) or "strategy" not in entry:
            raise SuiteError(f"a strategy entry is a name or a table with 'strategy', got {entry!r}")
        config = {k: v for k, v in entry.items() if k not in ("label", "options")}
        return cls(str(entry.get("label", entry["strategy"])), config, dict(entry.get("options", {})))

    @property
    def is_identity(self) -> bool:
        return bool(self.config["strategy"] == "identity")

    def strategy(self) -> Strategy:
        return strategy_from_config(self.config)

    def record(self) -> dict[str, Any]:
        """The entry as the manifest holds it: the config with its label (and options, if any)."""
        return {**self.config, "label": self.label, **({"options": self.options} if self.options else {})}

    def compress_options(self, question: str) -> CompressOptions:
        """How this entry compresses an example: by default as a document with the example's question;
        ``options`` may set ``chat`` (a ``ChatPolicy``'s fields), ``cache_stable`` and ``question`` ("given":
        the example's, the default; "found": none passed, the library finds it, as the server does). An
        unknown or ill-typed option is a ``SuiteError``."""
        given, where = self.options, f"strategy {self.label!r}"
        if set(given) - set(ENTRY_OPTIONS):
            raise SuiteError(f"{where}: options may set only {', '.join(ENTRY_OPTIONS)}")
        if given.get("question", "given") not in ("given", "found"):
            raise SuiteError(f"{where}: options.question must be 'given' or 'found'")
        if not isinstance(given.get("cache_stable", False), bool):
            raise SuiteError(f"{where}: options.cache_stable must be true or false")
        options: CompressOptions = {"question": None if given.get("question") == "found" else question}
        if "chat" in given:
            try:
                policy = ChatPolicy(**given["chat"])
                policy.validate()
            except (TypeError, InvalidParameterError) as exc:
                raise SuiteError(f"{where}: options.chat: {exc}") from exc
            options["chat"] = policy
        options["cache_stable"] = given.get("cache_stable", False)
        return options


@dataclass(frozen=True)
class DatasetEntry:
    """One ``[[datasets]]`` table of a suite: a registered dataset, the options its loader takes (``n``,
    ``documents``, ``distractors``, ...), how many of the examples the likelihood model and the reader see
    (None: every one), and the metric (None: the dataset's). Checked when the suite is read, so a typo
    fails before any work is done."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    n_read: int | None = None
    n_likelihood: int | None = None
    metric_name: str | None = None

    @classmethod
    def parse(cls, entry: object) -> DatasetEntry:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SuiteError(f"a dataset entry is a table with a 'name', got {entry!r}")
        name = entry["name"]
        try:
            spec = DATASETS.get(name)
            metric = entry.get("metric")
            if metric is not None:
                METRICS.get(str(metric))
        except UnknownNameError as exc:
            raise SuiteError(f"dataset entry {name!r}: {exc.args[0]}") from exc
        for key in ("n", "n_read", "n_likelihood"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise SuiteError(
                    f"dataset entry {name!r}: {key} must be a non-negative integer, got {value!r}"
                )
        options = {k: v for k, v in entry.items() if k not in RUNNER_OPTIONS}
        takes = inspect.signature(spec.load).parameters
        unknown = sorted(set(options) - set(takes))
        if unknown:
            raise SuiteError(
                f"dataset entry {name!r}: unknown option {', '.join(map(repr, unknown))}; "
                f"{name} takes {', '.join(takes)}"
            )
        metric_name = None if metric is None else str(metric)
        return cls(name, options, entry.get("n_read"), entry.get("n_likelihood"), metric_name)

    @property
    def kind(self) -> str:
        """The kind of prompt its examples are: the dataset's, or the ``kind`` option of your own data."""
        return str(self.options.get("kind", DATASETS.get(self.name).kind))

    def metric(self) -> Metric:
        return METRICS.get(self.metric_name or DATASETS.get(self.name).metric)

    def record(self) -> dict[str, Any]:
        """The entry as the suite file (and the manifest) hold it."""
        counts = {"n_read": self.n_read, "n_likelihood": self.n_likelihood, "metric": self.metric_name}
        return {"name": self.name, **self.options, **{k: v for k, v in counts.items() if v is not None}}


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: list[DatasetEntry]
    strategies: list[StrategyEntry]
    budgets: list[float]
    reader: str = "local"
    reader_base_url: str = ""
    seed: int = 0
    model: str = "gpt-4o"  # whose tokenizer counts the savings
    workers: int = 4  # threads (local) or reader / likelihood actors (ray)
    executor: str = "local"  # one of EXECUTORS
    min_fidelity: float = 0.95  # the lower bound the winner's likelihood help retained must reach
    max_loss: float = 0.05  # the largest drop in reader score the winner may show (non-inferiority margin)
    min_retention: float = 0.9  # share of prompts that keep a gold answer (QA and lookups)
    likelihood: str = "local"  # model of the likelihood signal: "local", a .gguf path, or "" for none
    price_per_million_tokens: float = 2.5  # USD per 1M input tokens of the target model, for savings in money
    path: Path | None = field(default=None, compare=False)


def load_suite(path: str | Path) -> Suite:
    """Read a suite file; the baselines (identity, truncate, random) are always added."""
    path = Path(path)
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SuiteError(f"cannot read suite {path}: {exc}") from exc
    entries = [StrategyEntry.parse(e) for e in config.get("strategies", [])]
    labels = {e.label for e in entries}
    entries = [StrategyEntry(b, {"strategy": b}) for b in BASELINES if b not in labels] + entries
    if len({e.label for e in entries}) != len(entries):
        raise SuiteError(f"suite {path}: strategies need distinct labels (add label = ...)")
    for entry in entries:  # fail before any work is done
        entry.strategy().validate()
        entry.compress_options("")
    budgets = [float(b) for b in config.get("budgets", [0.5])]
    executor = str(config.get("executor", "local"))
    if executor not in EXECUTORS:
        raise SuiteError(f"suite {path}: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if not budgets or any(not 0 < b <= 1 for b in budgets):
        raise SuiteError(f"suite {path}: budgets must be rates in (0, 1], got {budgets}")
    return Suite(
        name=str(config.get("name", path.stem)),
        datasets=[DatasetEntry.parse(d) for d in config.get("datasets", [])],
        strategies=entries,
        budgets=budgets,
        reader=str(config.get("reader", "local")),
        reader_base_url=str(config.get("reader_base_url", "")),
        seed=int(config.get("seed", 0)),
        model=str(config.get("model", "gpt-4o")),
        workers=int(config.get("workers", 4)),
        executor=executor,
        min_fidelity=float(config.get("min_fidelity", 0.95)),
        max_loss=float(config.get("max_loss", 0.05)),
        min_retention=float(config.get("min_retention", 0.9)),
        likelihood=str(config.get("likelihood", "local")),
        price_per_million_tokens=float(config.get("price_per_million_tokens", 2.5)),
        path=path,
    )


def _text(messages: Iterable[dict[str, Any]]) -> str:
    return "\n".join(slot.text for slot in text_slots(list(messages)))


def _answer(reader: LLM, messages: list[Message], max_tokens: int, seed: int) -> str | None:
    """The reader's answer; None for a prompt longer than a local reader's context (not read, as an
    example too long for the likelihood model is not scored)."""
    try:
        return reader.chat(messages, max_tokens=max_tokens, temperature=0.0, seed=seed).text
    except ContextLengthError:
        return None


@dataclass(frozen=True)
class _Plan:
    """One dataset entry of a suite, resolved for a run (``limit`` applied): its spec, metric, the loader's
    options and how many examples get each measurement (None: all of them)."""

    name: str
    spec: DatasetSpec
    metric: Metric
    options: dict[str, Any]
    n_read: int | None
    n_likelihood: int | None


def _plans(suite: Suite, limit: int | None) -> list[_Plan]:
    plans = []
    for entry in suite.datasets:
        options = dict(entry.options)
        if limit is not None:
            options["n"] = min(int(options.get("n", limit)), limit)
        cap = options.get("n")
        n_read = entry.n_read if entry.n_read is not None else cap
        n_likelihood = (
            (entry.n_likelihood if entry.n_likelihood is not None else cap) if suite.likelihood else 0
        )
        if limit is not None:
            n_read = None if n_read is None else min(n_read, limit)
            n_likelihood = None if n_likelihood is None else min(n_likelihood, limit)
        spec = DATASETS.get(entry.name)
        plans.append(_Plan(entry.name, spec, entry.metric(), options, n_read, n_likelihood))
    return plans


def check_sample_sizes(suite: Suite, limit: int | None = None) -> list[str]:
    """Warnings for datasets whose reader sample cannot detect a loss of ``max_loss`` (worst case: half the
    pairs discordant); ``run_suite`` emits them as ``UserWarning``."""
    needed = sample_size_for(suite.max_loss)
    messages = []
    for plan in _plans(suite, limit):
        n = plan.n_read if plan.n_read is not None else plan.options.get("n")
        if n is not None and 0 < int(n) < needed:
            detectable = sample_size_for_inverse(int(n))
            messages.append(
                f"suite {suite.name}, {plan.name}: n_read = {n} can detect only a reader loss >= "
                f"{detectable:.2f} (worst case); the rule's margin max_loss = {suite.max_loss:g} needs about "
                f"{needed} examples: the reader check will be weak, the likelihood signal carries the rule"
            )
    return messages


def sample_size_for_inverse(n: int, sd: float = 0.5) -> float:
    """The worst-case detectable difference at ``n`` paired right/wrong examples (see ``sample_size_for``)."""
    from ._stats import Z_ALPHA, Z_POWER

    return (Z_ALPHA + Z_POWER) * sd / math.sqrt(n)


@dataclass(frozen=True)
class WorkItem:
    """One example and what is left to do on it: the (strategy entry, budget) cells not yet in ``rows.jsonl``,
    and whether the reader and the likelihood model run on it. The runner decides this once, in the driver,
    so that every executor does the same work and writes the same rows."""

    plan: _Plan
    example: Example
    cells: tuple[tuple[StrategyEntry, float], ...]
    read: bool
    scored: bool


@dataclass(frozen=True)
class ModelJob:
    """The model work of one example, as plain data (messages and numbers) so that it travels to a Ray actor.

    ``compressed`` holds one prompt per cell, None for the identity, whose answer and likelihood are the
    original's (one call fewer, and the same value by construction)."""

    messages: list[Message]
    question: str
    gold: str
    max_tokens: int
    seed: int
    read: bool
    scored: bool
    compressed: tuple[list[Message] | None, ...]


@dataclass(frozen=True)
class Measures:
    """What the reader and the likelihood model said about one example; per-cell tuples in cell order."""

    answer_original: str | None = None
    ll_original: float | None = None
    ll_none: float | None = None
    answers: tuple[str | None, ...] = ()
    ll_compressed: tuple[float | None, ...] = ()


def compress_cell(
    entry: StrategyEntry, budget: float, messages: list[Message], question: str, model: str, seed: int
) -> CompressionResult:
    """One example x strategy x budget: a module-level function, so the Ray executor runs it as a task and
    the local executor calls it directly; the seed travels with it, so the result does not depend on where."""
    options = entry.compress_options(question)
    options["rate"], options["model"], options["seed"] = budget, model, seed
    return entry.strategy().compress(messages, **options)


def model_job(item: WorkItem, results: Sequence[CompressionResult], seed: int) -> ModelJob | None:
    """The model work ``item`` needs once its cells are compressed; None when it needs none."""
    if not (item.read or item.scored):
        return None
    example = item.example
    return ModelJob(
        messages=example.messages,
        question=example.question,
        gold=example.likelihood_target,
        max_tokens=item.plan.spec.max_tokens,
        seed=seed,
        read=item.read,
        scored=item.scored,
        compressed=tuple(
            None if entry.is_identity else result.messages
            for (entry, _), result in zip(item.cells, results, strict=True)
        ),
    )


def measure(job: ModelJob, reader: LLM | None, scorer: AnswerScorer | None) -> Measures:
    """Read and score one example's original and compressed prompts, in a fixed order: the question alone
    and the original are scored before the compressed prompts, so that a truncated prompt reuses the
    original's cache on the scoring model whichever executor runs it.

    The compressed prompts of an example whose context did not help (LL(original) <= LL(question only))
    are scored only if the reader answers it: help retained reads the examples the context helped, and the
    likelihood-versus-reader comparison the examples read, so their likelihoods would be computed for
    nothing (on NQ a quarter of the examples, each with a dozen compressed prompts)."""
    read = job.read and reader is not None
    scored = job.scored and scorer is not None and scorer.fits(job.messages, job.gold)
    original = _answer(reader, job.messages, job.max_tokens, job.seed) if read and reader else None
    ll_original = ll_none = None
    if scored and scorer is not None:
        ll_none = scorer.loglikelihood([{"role": "user", "content": job.question}], job.gold)
        ll_original = scorer.loglikelihood(job.messages, job.gold)
        scored = read or ll_original > ll_none
    answers: list[str | None] = []
    lls: list[float | None] = []
    for messages in job.compressed:
        answer = ll = None
        if original is not None and reader is not None:
            answer = original if messages is None else _answer(reader, messages, job.max_tokens, job.seed)
        if scored and scorer is not None:
            ll = ll_original if messages is None else scorer.loglikelihood(messages, job.gold)
        elif ll_original is not None and messages is None:
            ll = ll_original  # the identity's row keeps its value: it costs nothing
        answers.append(answer)
        lls.append(ll)
    return Measures(original, ll_original, ll_none, tuple(answers), tuple(lls))


def rows_of(item: WorkItem, results: Sequence[CompressionResult], measures: Measures | None) -> list[Row]:
    """The rows of one example, in cell order, from its compressions and (if any) its model measures."""
    plan, example = item.plan, item.example
    measures = measures or Measures()
    original = measures.answer_original
    rows = []
    for k, ((entry, budget), result) in enumerate(zip(item.cells, results, strict=True)):
        answer = measures.answers[k] if measures.answers else None
        rows.append(
            Row(
                dataset=plan.name,
                kind=example.kind,
                task=example.task,
                example=example.id,
                strategy=entry.label,
                budget=budget,
                original_tokens=result.original_tokens,
                compressed_tokens=result.compressed_tokens,
                rate=result.rate,
                saved_tokens=result.saved_tokens,
                budget_met=result.budget_met,
                compress_seconds=result.seconds,
                answer_kept=contains_answer(_text(result.messages), example.answers)
                if plan.spec.retention
                else None,
                metric=plan.metric.name,
                score_original=None if original is None else plan.metric.score(original, example.answers),
                score_compressed=None if answer is None else plan.metric.score(answer, example.answers),
                agreement=None
                if answer is None or original is None
                else normalize_answer(answer) == normalize_answer(original),
                answer_original=original,
                answer_compressed=answer,
                ll_original=measures.ll_original,
                ll_compressed=measures.ll_compressed[k] if measures.ll_compressed else None,
                ll_none=measures.ll_none,
                gold_position=example.gold_position,
            )
        )
    return rows


def evaluate_item(
    item: WorkItem, *, model: str, seed: int, reader: LLM | None, scorer: AnswerScorer | None
) -> list[Row]:
    """All of one example's rows in this process: what the local executor runs per item (the Ray executor
    runs the same three steps, compression as tasks and ``measure`` on actors)."""
    example = item.example
    results = [
        compress_cell(entry, budget, example.messages, example.question, model, seed)
        for entry, budget in item.cells
    ]
    job = model_job(item, results, seed)
    return rows_of(item, results, None if job is None else measure(job, reader, scorer))


def _work_items(
    plans: Sequence[_Plan],
    suite: Suite,
    done: set[tuple[str, str, float]],
    reader: LLM | None,
    scorer: AnswerScorer | None,
) -> list[WorkItem]:
    """Every example that still has a cell to run, in suite order (the order of the rows)."""
    items = []
    for plan in plans:
        for index, example in enumerate(plan.spec.load(**plan.options)):
            cells = tuple(
                (entry, budget)
                for entry in suite.strategies
                for budget in ([1.0] if entry.is_identity else suite.budgets)
                if (example.id, entry.label, budget) not in done
            )
            if not cells:
                continue
            read = reader is not None and (plan.n_read is None or index < plan.n_read)
            scored = (
                scorer is not None
                and bool(example.answers)
                and (plan.n_likelihood is None or index < plan.n_likelihood)
            )
            items.append(WorkItem(plan, example, cells, read, scored))
    return items


def _run_local(
    suite: Suite, items: Sequence[WorkItem], reader: LLM | None, scorer: AnswerScorer | None
) -> Generator[list[Row]]:
    """The local executor: ``suite.workers`` threads in this process, rows in item order (``map`` keeps it)."""
    work = partial(evaluate_item, model=suite.model, seed=suite.seed, reader=reader, scorer=scorer)
    with ThreadPoolExecutor(max_workers=max(1, suite.workers)) as pool:
        yield from pool.map(work, items)


def run_suite(
    suite: Suite,
    output: str | Path,
    *,
    limit: int | None = None,
    reader: LLM | None = None,
    scorer: AnswerScorer | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    executor: str | None = None,
) -> Path:
    """Run (or resume) ``suite`` into the folder ``output``; returns the folder. See the module docstring.

    ``reader`` and ``scorer`` replace the suite's reader and likelihood model (e.g. already loaded ones).
    ``executor`` replaces the suite's: "local" (threads) or "ray" (see ``_ray_executor``); both write the
    same rows in the same order.
    """
    executor = executor or suite.executor
    if executor not in EXECUTORS:
        raise SuiteError(f"unknown executor {executor!r}: one of {', '.join(EXECUTORS)}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    done = set()
    if rows_path.exists():
        for line in rows_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done.add((row["example"], row["strategy"], row["budget"]))
    for message in check_sample_sizes(suite, limit):
        warnings.warn(message, UserWarning, stacklevel=2)
    plans = _plans(suite, limit)
    reads = any(p.n_read is None or p.n_read > 0 for p in plans)
    given_reader = reader
    reader = reader or (make_llm(suite.reader, base_url=suite.reader_base_url) if reads else None)
    if scorer is None and suite.likelihood and any(p.n_likelihood != 0 for p in plans):
        # one scoring model per worker, the cores shared among them (see AnswerScorer)
        scorer = AnswerScorer(None if suite.likelihood == "local" else suite.likelihood, copies=suite.workers)
    _write_manifest(suite, out, reader, scorer, limit, executor, len(done))
    items = _work_items(plans, suite, done, reader, scorer)
    results: Generator[list[Row]]
    if executor == "ray":
        from ._ray_executor import run_on_ray

        results = run_on_ray(suite, items, reader=reader, scorer=scorer, given_reader=given_reader)
    else:
        results = _run_local(suite, items, reader, scorer)
    written = len(done)
    with closing(results), rows_path.open("a", encoding="utf-8") as sink:
        iterator: Iterable[list[Row]] = results
        if progress is not None:
            iterator = progress(iterator, len(items))
        for rows in iterator:
            for row in rows:
                sink.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            written += len(rows)
            sink.flush()
    _finish_manifest(out, written)
    return out


def load_rows(run: str | Path) -> Any:
    """The run's rows as a pandas DataFrame with the columns of ``Row`` (one per example x strategy x budget);
    rows written before a column existed get None in it."""
    import pandas as pd

    records = [
        json.loads(line)
        for line in (Path(run) / "rows.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    frame = pd.DataFrame.from_records(records)
    for column in Row.columns():
        if column not in frame:
            frame[column] = None
    if "kind" in frame:
        frame["kind"] = frame["kind"].fillna("rag")
    return frame


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except OSError:
        return ""


def _write_manifest(
    suite: Suite,
    out: Path,
    reader: LLM | None,
    scorer: AnswerScorer | None,
    limit: int | None,
    executor: str,
    rows_before: int,
) -> None:
    """Write the run's record, or, resuming a run that has rows (``rows_before``), add a session to it:
    every session keeps its commit, start, end and row counts, so a run finished by later code says which
    rows that code wrote."""
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
        "datasets": [entry.record() for entry in suite.datasets],
        "strategies": [entry.record() for entry in suite.strategies],
        "budgets": suite.budgets,
        "seed": suite.seed,
        "limit": limit,
        "executor": executor,
        "workers": suite.workers,
        "reader": {
            "spec": suite.reader,
            "backend": reader.backend if reader else None,
            "model": reader.model if reader else None,
        },
        "likelihood": {"spec": suite.likelihood, "model": scorer.model if scorer else None},
        "kinds": {entry.name: entry.kind for entry in suite.datasets},
        "token_model": suite.model,
        "min_fidelity": suite.min_fidelity,
        "max_loss": suite.max_loss,
        "min_retention": suite.min_retention,
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
    session = {
        "git_commit": manifest["git_commit"],
        "started": manifest["started"],
        "rows_before": rows_before,
    }
    path = out / "manifest.json"
    # a resumed run keeps the record of its first session and adds this one
    record: dict[str, Any] = manifest
    if rows_before and path.exists():
        record = json.loads(path.read_text(encoding="utf-8"))
    record["sessions"] = [*record.get("sessions", []), session]
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")


def _finish_manifest(out: Path, rows_after: int) -> None:
    """Close this session; ``seconds`` is the time of every session together (a resumed run's rows were
    computed over several), ``finished`` the last one's end."""
    path = out / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    session = manifest["sessions"][-1]
    session["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    session["seconds"] = round(time.time() - datetime.fromisoformat(session["started"]).timestamp(), 1)
    session["rows_after"] = rows_after
    manifest["finished"] = session["finished"]
    manifest["seconds"] = round(sum(s.get("seconds", 0.0) for s in manifest["sessions"]), 1)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
