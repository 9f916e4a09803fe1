"""Summaries, Markdown report and plots of a run."""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._metrics import bootstrap_ratio
from ._runner import load_rows


def summarize_run(rows: Any, seed: int = 0, price_per_million_tokens: float = 2.5) -> Any:
    """One row per dataset x strategy x budget: savings (tokens and USD per 1M requests at the given input
    price), compression cost, gold-answer retention, reader fidelity with a 95% CI, answer agreement."""
    import pandas as pd

    records = []
    for (dataset, strategy, budget), group in rows.groupby(["dataset", "strategy", "budget"], sort=False):
        fidelity, low, high = bootstrap_ratio(group["score_compressed"], group["score_original"], seed=seed)
        kept = group["answer_kept"].dropna()
        records.append(
            {
                "dataset": dataset,
                "strategy": strategy,
                "budget": budget,
                "n": len(group),
                "rate": group["rate"].mean(),
                "savings": 1 - group["compressed_tokens"].sum() / group["original_tokens"].sum(),
                "tokens_saved": group["saved_tokens"].mean(),
                # saved tokens per request x 1M requests x price per token
                "usd_saved_per_1M_requests": group["saved_tokens"].mean() * price_per_million_tokens,
                "budget_met": group["budget_met"].mean(),
                # medians: the first call of a strategy pays for imports and model loads
                "ms_per_request": 1000 * group["compress_seconds"].median(),
                "ms_per_1k_tokens": (1e6 * group["compress_seconds"] / group["original_tokens"]).median(),
                "answer_kept": kept.astype(float).mean() if len(kept) else None,
                "score_original": group["score_original"].mean(),
                "score_compressed": group["score_compressed"].mean(),
                "fidelity": fidelity,
                "fidelity_low": low,
                "fidelity_high": high,
                "agreement": group["agreement"].mean(),
            }
        )
    return pd.DataFrame.from_records(records)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (savings, fidelity), both higher-is-better."""
    front = []
    for i, (s, f) in enumerate(points):
        if not any(
            (s2 >= s and f2 >= f) and (s2 > s or f2 > f) for j, (s2, f2) in enumerate(points) if j != i
        ):
            front.append(i)
    return front


def write_report(run: str | Path) -> Path:
    """Write ``report.md``, ``rows.csv``, ``summary.csv`` and the plots into the run folder; returns the
    report's path."""
    run = Path(run)
    rows = load_rows(run)
    rows.to_csv(run / "rows.csv", index=False)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    summary = summarize_run(rows, manifest.get("seed", 0), manifest.get("price_per_million_tokens", 2.5))
    summary.to_csv(run / "summary.csv", index=False)
    plots = _plots(summary, run)
    lines = [
        f"# Evaluation report: {manifest['suite']}",
        "",
        f"Reader: `{manifest['reader']['spec']}` ({manifest['reader']['model']}); tokens counted for "
        f"{manifest['token_model']}; seed {manifest['seed']}; commit {manifest.get('git_commit', '')[:10]}; "
        f"{manifest.get('finished', manifest['started'])}.",
        "",
        "Fidelity = the reader's mean score with the compressed prompt / with the original prompt (95% bootstrap "
        "interval). Savings = share of prompt tokens removed. Agreement = the reader gave the same answer with both "
        "prompts. Answer kept = a gold answer still appears in the compressed prompt (model-free). USD saved per "
        f"1M requests at ${manifest.get('price_per_million_tokens', 2.5):g} per 1M input tokens.",
    ]
    if manifest["reader"]["spec"] == "local":
        lines += [
            "",
            "The reader is SmolLM2-135M-Instruct: its absolute accuracy is low, so read the relative figures "
            "(fidelity, agreement), not the scores.",
        ]
    if "nq-multidoc" in set(summary["dataset"]):
        lines += [
            "",
            "nq-multidoc distractors are other questions' gold passages drawn at random, not retrieved.",
        ]
    for dataset, table in summary.groupby("dataset", sort=False):
        lines += ["", f"## {dataset}", "", markdown_table(table.drop(columns=["dataset"]).to_dict("records"))]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    report = run / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def markdown_table(
    records: Sequence[Mapping[str, Any]], columns: Mapping[str, tuple[str, str]] | None = None
) -> str:
    """A Markdown table: one row per record; ``columns`` maps a key to its header and format spec (default:
    every key, floats with 3 decimals). Numbers are right-aligned; None and NaN print as "-"."""
    columns = columns or {key: (key, "") for key in (records[0] if records else {})}

    def cell(value: Any, spec: str) -> str:
        if value is None or value != value:  # NaN is not equal to itself
            return "-"
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return format(value, spec or (".3f" if isinstance(value, float) else ""))
        return str(value)

    def numeric(key: str) -> bool:
        values = [r[key] for r in records if r[key] is not None]
        return bool(values) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)

    lines = [
        "| " + " | ".join(header for header, _ in columns.values()) + " |",
        "|" + "".join("---:|" if numeric(key) else "---|" for key in columns),
    ]
    for record in records:
        lines.append("| " + " | ".join(cell(record[key], spec) for key, (_, spec) in columns.items()) + " |")
    return "\n".join(lines)


def _plots(summary: Any, run: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    averaged = summary.groupby(["strategy", "budget"], as_index=False)[["savings", "fidelity"]].mean()
    points = list(zip(averaged["savings"], averaged["fidelity"].fillna(0), strict=True))
    front = set(pareto_front(points))
    figure, axes = plt.subplots(figsize=(7, 5))
    for i, row in averaged.iterrows():
        axes.scatter(row["savings"], row["fidelity"], color="tab:red" if i in front else "tab:gray", zorder=3)
        axes.annotate(
            f"{row['strategy']}@{row['budget']:g}",
            (row["savings"], row["fidelity"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    frontier = sorted((points[i] for i in front), key=lambda p: p[0])
    if frontier:
        axes.plot(*zip(*frontier, strict=True), color="tab:red", linewidth=1, label="Pareto frontier")
        axes.legend()
    axes.set_xlabel("token savings (share removed)")
    axes.set_ylabel("fidelity (compressed / original score)")
    axes.set_title("Savings vs fidelity, averaged over datasets")
    axes.grid(alpha=0.3)
    paths.append(run / "savings_vs_fidelity.png")
    figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 5))
    for strategy, group in averaged.groupby("strategy"):
        group = group.sort_values("budget")
        axes.plot(group["budget"], group["fidelity"], marker="o", label=strategy)
    axes.set_xlabel("budget (asked rate)")
    axes.set_ylabel("fidelity")
    axes.set_title("Fidelity vs budget")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    paths.append(run / "fidelity_vs_budget.png")
    figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(figure)
    return paths
