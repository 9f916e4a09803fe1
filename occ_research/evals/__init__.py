"""Evaluation: real datasets, registered metrics, suites run into folders of rows, reports and the winner.

    from occ_research.evals import evaluate, load_rows, summarize_run
    run = evaluate("quick", limit=5)          # evals/quick.toml; returns the run folder with report.md
    summarize_run(load_rows(run))             # one row per dataset x strategy x budget

Where things go: a dataset is a function registered in ``_datasets.py`` (``DATASETS``) that returns
``Example`` records; a metric is registered in ``_metrics.py`` (``METRICS``) with ``higher_is_better``; the
runner (``_runner.py``) writes ``rows.jsonl`` and ``manifest.json``; ``_report.py`` writes ``report.md`` and
the plots (and every Markdown table of the project); ``_select.py`` holds the winner rule; ``_compare.py``
compares strategies without a reader (``occ demo``).
"""

from .._paths import data_dir
from ._compare import compare, demo_strategies, run_demo, summarize
from ._datasets import DATASETS, Example, load_examples
from ._evaluate import evaluate, find_suite
from ._metrics import METRICS, bootstrap_ratio, contains_answer
from ._report import markdown_table, summarize_run, write_report
from ._runner import Suite, load_rows, load_suite, run_suite
from ._select import select_winner, write_winner

__all__ = [
    "DATASETS",
    "METRICS",
    "Example",
    "Suite",
    "bootstrap_ratio",
    "compare",
    "contains_answer",
    "data_dir",
    "demo_strategies",
    "evaluate",
    "find_suite",
    "load_examples",
    "load_rows",
    "load_suite",
    "markdown_table",
    "run_demo",
    "run_suite",
    "select_winner",
    "summarize",
    "summarize_run",
    "write_report",
    "write_winner",
]
