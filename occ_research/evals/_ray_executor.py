"""The Ray executor: a suite's compressions as Ray tasks, its reader and likelihood model on Ray actors.

Why: a sweep of hundreds of strategy x budget configurations over thousands of examples is embarrassingly
parallel, and a reader served by vLLM answers many requests at once; one process with a few threads uses
neither. Ray runs the very functions the local executor runs (``_runner.compress_cell`` and
``_runner.measure``) with the seeds inside their arguments, so the rows are the same; only where the work
runs changes:

- every example x strategy x budget is one task; the example's messages go into the object store once and
  its cells share them;
- the reader and the likelihood model live on ``suite.workers`` actors, each loading its models once. An
  actor that holds a local model asks Ray for one CPU (two actors on a 2-core machine are two busy cores);
  one that only calls a served reader asks for none, so that a cluster runs as many as the suite says;
- the driver writes each example's rows in suite order as its measures come back (``ActorPool.map`` keeps
  the order), so an interrupted run resumes like a local one.

Compression finishes before the actors start: actors holding every CPU of a small machine would leave the
compression tasks they wait for unscheduled forever.

Where: ``ray.init()`` joins the cluster that ``RAY_ADDRESS`` names, else the one ``ray start`` last started
on this machine, else starts a local instance with every core; the driver disconnects at the end (which
stops an instance it started). A connection the caller opened (``ray.init(num_cpus=2)`` in a test) is used
and left open. A cluster's nodes need occ-research and its model packages installed; the LLM call cache is
each node's own.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..exceptions import ModelUnavailableError, SuiteError
from ..llm import LLM, make_llm
from ..strategies import CompressionResult
from ._likelihood import AnswerScorer
from ._runner import Measures, ModelJob, Row, Suite, WorkItem, compress_cell, measure, model_job, rows_of

#: makes the reader inside an actor (a fresh one per actor: readers hold model handles and cache connections)
ReaderFactory = Callable[[], LLM]


def import_ray() -> ModuleType:
    """Ray, imported only when a suite asks for it: it is an optional extra and takes a second to import."""
    try:
        import ray
    except ImportError as exc:
        raise ModelUnavailableError(
            "executor = 'ray' needs Ray, which is not installed: pip install 'occ-research[ray]'"
        ) from exc
    return ray


@dataclass(frozen=True)
class ScorerRecipe:
    """How an actor rebuilds the likelihood model: ``AnswerScorer`` holds locks and model handles that do not
    travel between processes, its model file and sizes do."""

    path: Path
    n_ctx: int
    threads: int
    n_threads_batch: int

    @classmethod
    def of(cls, scorer: AnswerScorer) -> ScorerRecipe:
        return cls(scorer.llm.path, scorer.n_ctx, scorer.threads, scorer.n_threads_batch)

    def build(self) -> AnswerScorer:
        return AnswerScorer(
            self.path, n_ctx=self.n_ctx, threads=self.threads, n_threads_batch=self.n_threads_batch
        )


class ModelWorker:
    """The body of a Ray actor: one reader and one likelihood model, loaded once, measuring the examples the
    pool sends it (with ``copies=1``: one actor is one core, concurrency comes from more actors)."""

    def __init__(self, reader: ReaderFactory | None, scorer: ScorerRecipe | None) -> None:
        self.reader = reader() if reader is not None else None
        self.scorer = scorer.build() if scorer is not None else None

    def measure(self, job: ModelJob) -> Measures:
        return measure(job, self.reader, self.scorer)


def _given(reader: LLM) -> LLM:
    return reader


def reader_factory(
    suite: Suite, reader: LLM | None, given: LLM | None, ray: ModuleType
) -> ReaderFactory | None:
    """What each actor calls to get its reader: the suite's reader made anew, or a copy of the one the caller
    passed to ``run_suite`` (which must then survive pickling; the default cached reader does not)."""
    if reader is None:
        return None
    if given is None:
        return functools.partial(make_llm, suite.reader, base_url=suite.reader_base_url)
    try:
        ray.cloudpickle.dumps(given)
    except Exception as exc:  # cloudpickle raises whatever the object's __reduce__ raises
        raise SuiteError(
            f"executor 'ray' sends the reader to its actors, and {type(given).__name__} cannot be pickled "
            f"({exc}); leave reader= out so that each actor makes the suite's reader ({suite.reader!r})"
        ) from exc
    return functools.partial(_given, given)


def run_on_ray(
    suite: Suite,
    items: Sequence[WorkItem],
    *,
    reader: LLM | None,
    scorer: AnswerScorer | None,
    given_reader: LLM | None = None,
) -> Generator[list[Row]]:
    """Each item's rows, in item order, computed on Ray (see the module docstring).

    ``reader`` and ``scorer`` are the driver's (they say which models the actors need); ``given_reader`` is
    the reader the caller passed, if any, shipped to the actors instead of making the suite's.
    """
    ray = import_ray()
    factory = reader_factory(suite, reader, given_reader, ray)
    recipe = None if scorer is None else ScorerRecipe.of(scorer)
    local_model = recipe is not None or (reader is not None and reader.backend == "llama-cpp")
    started = not ray.is_initialized()
    if started:
        ray.init()  # RAY_ADDRESS or a `ray start` cluster if there is one, else a new local instance
    try:
        results = _compress_all(ray, suite, items)
        jobs = [model_job(item, cells, suite.seed) for item, cells in zip(items, results, strict=True)]
        measured = _measure_all(
            ray, [job for job in jobs if job is not None], factory, recipe, suite.workers, local_model
        )
        for item, cells, job in zip(items, results, jobs, strict=True):
            yield rows_of(item, cells, None if job is None else next(measured))
    finally:
        if started:
            ray.shutdown()


def _compress_all(ray: ModuleType, suite: Suite, items: Sequence[WorkItem]) -> list[list[CompressionResult]]:
    """Every cell of every item as one task; results grouped per item, in cell order."""
    task = ray.remote(compress_cell)
    refs = []
    for item in items:
        messages = ray.put(item.example.messages)
        question = item.example.question
        refs.append(
            [
                task.remote(entry, budget, messages, question, suite.model, suite.seed)
                for entry, budget in item.cells
            ]
        )
    return [list(ray.get(cells)) for cells in refs]


def _measure_all(
    ray: ModuleType,
    jobs: Sequence[ModelJob],
    factory: ReaderFactory | None,
    recipe: ScorerRecipe | None,
    workers: int,
    local_model: bool,
) -> Iterator[Measures]:
    """The jobs' measures in job order, from a pool of model actors."""
    if not jobs:
        return iter(())
    from ray.util import ActorPool

    cpus = 1 if local_model else 0
    count = min(max(1, workers), len(jobs))
    if cpus:
        available = int(ray.cluster_resources().get("CPU", 1))
        if count > available:
            warnings.warn(
                f"workers = {workers}, but the Ray cluster has {available} CPUs: {available} model actors",
                UserWarning,
                stacklevel=3,
            )
            count = max(1, available)
    actor = ray.remote(num_cpus=cpus)(ModelWorker)
    pool = ActorPool([actor.remote(factory, recipe) for _ in range(count)])
    measures: Iterator[Measures] = pool.map(_submit, list(jobs))
    return measures


def _submit(actor: Any, job: ModelJob) -> Any:
    return actor.measure.remote(job)
