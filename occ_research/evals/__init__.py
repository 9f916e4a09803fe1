"""Evaluation: real datasets, registered metrics, suites run into folders of rows, reports and the winner.

    from occ_research.evals import evaluate, load_rows, summarize_run
    run = evaluate("quick", limit=5)          # evals/quick.toml; returns the run folder with report.md
    summarize_run(load_rows(run))             # one row per dataset x strategy x budget

Where things go: a dataset is a loader registered in ``_datasets.py`` with ``register_dataset`` (its task,
kind of prompt, default metric) that returns ``Example`` records; a metric is registered in ``_metrics.py``
with ``register_metric`` (``higher_is_better``, aggregation, right/wrong); the runner (``_runner.py``) writes
one ``Row`` per line of ``rows.jsonl`` and ``manifest.json``; ``_likelihood.py`` scores the gold answer's
likelihood; ``_stats.py`` holds the paired statistics; ``_report.py`` writes ``report.md`` and the plots
(and every Markdown table of the project); ``_select.py`` holds the winner rule per kind of prompt and the
policy file; ``_compare.py`` compares strategies without a reader (``occ demo``).
"""

from .._kinds import KINDS
from .._paths import data_dir
from .._presets import read_policy
from . import _chat_sets  # noqa: F401  (registers needle-chat and sharegpt-next)
from ._compare import available, compare, demo_strategies, run_demo, summarize
from ._datasets import DATASETS, DatasetSpec, Example, load_examples, register_dataset
from ._evaluate import evaluate, find_suite
from ._likelihood import AnswerScorer, help_retained
from ._metrics import METRICS, Metric, bootstrap_ratio, contains_answer, register_metric
from ._report import likelihood_vs_reader, markdown_table, summarize_run, write_report
from ._runner import (
    DatasetEntry,
    Row,
    StrategyEntry,
    Suite,
    check_sample_sizes,
    load_rows,
    load_suite,
    run_suite,
)
from ._select import Rule, Winner, select_winners, write_policy
from ._stats import (
    Interval,
    bootstrap_mean,
    detectable_difference,
    mcnemar_exact,
    paired_difference,
    sample_size_for,
)

__all__ = [
    "DATASETS",
    "KINDS",
    "METRICS",
    "AnswerScorer",
    "DatasetEntry",
    "DatasetSpec",
    "Example",
    "Interval",
    "Metric",
    "Row",
    "Rule",
    "StrategyEntry",
    "Suite",
    "Winner",
    "available",
    "bootstrap_mean",
    "bootstrap_ratio",
    "check_sample_sizes",
    "compare",
    "contains_answer",
    "data_dir",
    "demo_strategies",
    "detectable_difference",
    "evaluate",
    "find_suite",
    "help_retained",
    "likelihood_vs_reader",
    "load_examples",
    "load_rows",
    "load_suite",
    "markdown_table",
    "mcnemar_exact",
    "paired_difference",
    "read_policy",
    "register_dataset",
    "register_metric",
    "run_demo",
    "run_suite",
    "sample_size_for",
    "select_winners",
    "summarize",
    "summarize_run",
    "write_policy",
    "write_report",
]
