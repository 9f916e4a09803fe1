"""Summaries, Markdown report and plots of a run."""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._metrics import METRICS, bootstrap_ratio
from ._runner import load_rows
from ._stats import (
    bootstrap_mean,
    bootstrap_ratio_of_sums,
    detectable_difference,
    mcnemar_exact,
    paired_difference,
    verdict,
)


def summarize_run(rows: Any, seed: int = 0, price_per_million_tokens: float = 2.5) -> Any:
    """One row per dataset x strategy x budget (see ``SUMMARY_COLUMNS`` for what each column means).

    Model-free numbers use every example; ``help_retained`` the examples with likelihoods where the context
    helped (LL(original) > LL(question only)); the reader's paired comparison the examples it answered.
    """
    import pandas as pd

    records = []
    keys = ["dataset", "strategy", "budget"]
    for (dataset, strategy, budget), group in rows.groupby(keys, sort=False):
        metric = METRICS.get(str(group["metric"].iloc[0]))
        sign = 1.0 if metric.higher_is_better else -1.0  # differences read "positive = better"
        read = group.dropna(subset=["score_original", "score_compressed"])
        compressed = sign * read["score_compressed"].astype(float)
        original = sign * read["score_original"].astype(float)
        difference = paired_difference(compressed, original, seed=seed)
        p_value = mcnemar_exact(compressed * sign, original * sign) if metric.binary and len(read) else None
        detectable = detectable_difference(compressed, original, binary=metric.binary)
        # an example the context did not help has no compressed likelihoods (see _runner.measure)
        scored = group.dropna(subset=["ll_original", "ll_none"])
        helped = scored[scored["ll_original"] > scored["ll_none"]].dropna(subset=["ll_compressed"])
        retained = bootstrap_ratio_of_sums(
            helped["ll_compressed"] - helped["ll_none"], helped["ll_original"] - helped["ll_none"], seed=seed
        )
        kept = group["answer_kept"].dropna().astype(float)
        kept_interval = bootstrap_mean(kept, seed=seed)
        fidelity, low, high = bootstrap_ratio(read["score_compressed"], read["score_original"], seed=seed)
        records.append(
            {
                "dataset": dataset,
                "kind": group["kind"].iloc[0],
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
                "answer_kept": kept_interval.value if len(kept) else None,
                "answer_kept_low": kept_interval.low if len(kept) else None,
                "answer_kept_high": kept_interval.high if len(kept) else None,
                "n_likelihood": len(scored),
                "n_helped": len(helped),
                "help_retained": retained.value,
                "help_retained_low": retained.low,
                "help_retained_high": retained.high,
                "n_read": len(read),
                "metric": metric.name,
                "score_original": read["score_original"].mean() if len(read) else None,
                "score_compressed": read["score_compressed"].mean() if len(read) else None,
                "difference": difference.value,
                "difference_low": difference.low,
                "difference_high": difference.high,
                "mcnemar_p": p_value,
                "detectable": detectable,
                "verdict": "the original"
                if strategy == "identity"
                else verdict(difference, detectable, len(read), p_value),
                "fidelity": fidelity,
                "fidelity_low": low,
                "fidelity_high": high,
                "agreement": read["agreement"].astype(float).mean() if len(read) else None,
            }
        )
    return pd.DataFrame.from_records(records)


#: the report's table per dataset: column -> (header, format)
REPORT_COLUMNS = {
    "strategy": ("strategy", ""),
    "budget": ("budget", "g"),
    "n": ("n", ""),
    "savings": ("savings", ".1%"),
    "answer_kept": ("answer kept", ".1%"),
    "help_retained": ("help retained [95% CI]", ""),
    "ms_per_request": ("ms", ".1f"),
    "n_read": ("n read", ""),
    "scores": ("reader: original -> compressed", ""),
    "difference": ("difference [95% CI]", ""),
    "verdict": ("paired verdict", ""),
}


def _report_records(table: Any) -> list[dict[str, Any]]:
    def interval(value: Any, low: Any, high: Any, spec: str = ".3f") -> str:
        if value is None or value != value:
            return "-"
        return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"

    records = []
    for row in table.to_dict("records"):
        records.append(
            {
                **row,
                "help_retained": interval(
                    row["help_retained"], row["help_retained_low"], row["help_retained_high"]
                ),
                "scores": "-"
                if row["score_original"] is None or row["score_original"] != row["score_original"]
                else f"{row['score_original']:.3f} -> {row['score_compressed']:.3f}",
                "difference": interval(row["difference"], row["difference_low"], row["difference_high"]),
            }
        )
    return records


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (savings, fidelity), both higher-is-better."""
    front = []
    for i, (s, f) in enumerate(points):
        if not any(
            (s2 >= s and f2 >= f) and (s2 > s or f2 > f) for j, (s2, f2) in enumerate(points) if j != i
        ):
            front.append(i)
    return front


def likelihood_vs_reader(rows: Any) -> dict[str, float]:
    """How the likelihood signal relates to reader accuracy, on the rows that have both (compressed prompts
    other than the original): Spearman correlations per example and per strategy x budget, and the reader's
    accuracy where the gold answer's likelihood rose with the context vs where it did not."""
    import pandas as pd

    both = rows.dropna(subset=["ll_compressed", "ll_none", "score_compressed"])
    both = both[both["strategy"] != "identity"]
    if len(both) < 3:
        return {}
    gain = both["ll_compressed"] - both["ll_none"]
    score = both["score_compressed"].astype(float)
    configs = both.assign(gain=gain, score=score).groupby(["dataset", "strategy", "budget"])[
        ["gain", "score"]
    ]
    means = configs.mean()
    return {
        "pairs": float(len(both)),
        "spearman_examples": float(pd.Series(gain).corr(score, method="spearman")),
        "spearman_configs": float(means["gain"].corr(means["score"], method="spearman"))
        if len(means) > 2
        else float("nan"),
        "accuracy_when_context_helps": float(score[gain > 0].mean()),
        "accuracy_otherwise": float(score[gain <= 0].mean()),
        "share_context_helps": float((gain > 0).mean()),
    }


def by_gold_position(rows: Any, seed: int = 0) -> Any:
    """Answer kept and reader score per dataset x strategy x budget x gold position, with 95% bootstrap
    intervals: the lost-in-the-middle curve of each strategy. Empty when no row records a gold position.

    Answer kept uses every example; the reader's score the examples it answered (``n_read``), so a curve of
    the original prompt's accuracy comes from the ``identity`` rows.
    """
    import pandas as pd

    placed = rows.dropna(subset=["gold_position"]) if "gold_position" in rows else rows.iloc[0:0]
    placed = placed.sort_values("gold_position", kind="stable")  # groups: the run's order, positions rising
    records = []
    keys = ["dataset", "strategy", "budget", "gold_position"]
    for (dataset, strategy, budget, position), group in placed.groupby(keys, sort=False):
        kept = bootstrap_mean(group["answer_kept"].dropna().astype(float), seed=seed)
        scores = group["score_compressed"].dropna().astype(float)
        score = bootstrap_mean(scores, seed=seed)
        records.append(
            {
                "dataset": dataset,
                "strategy": strategy,
                "budget": budget,
                "gold_position": int(position),
                "n": len(group),
                "answer_kept": kept.value,
                "answer_kept_low": kept.low,
                "answer_kept_high": kept.high,
                "n_read": len(scores),
                "metric": group["metric"].iloc[0],
                "score": score.value,
                "score_low": score.low,
                "score_high": score.high,
            }
        )
    return pd.DataFrame.from_records(records, columns=POSITION_COLUMNS)


POSITION_COLUMNS = [
    "dataset",
    "strategy",
    "budget",
    "gold_position",
    "n",
    "answer_kept",
    "answer_kept_low",
    "answer_kept_high",
    "n_read",
    "metric",
    "score",
    "score_low",
    "score_high",
]


def _position_lines(table: Any) -> list[str]:
    """The report's section on gold positions: answer kept per position, one row per strategy x budget."""
    lines = [
        "",
        "## Answer kept by gold position",
        "",
        "Position = the document holding the gold passage (1 = first); 95% bootstrap intervals; n per cell in "
        "by_position.csv, with the reader's score where it answered.",
    ]
    for dataset, part in table[table["strategy"] != "identity"].groupby("dataset", sort=False):
        positions = sorted(set(part["gold_position"]))
        records = []
        for (strategy, budget), cells in part.groupby(["strategy", "budget"], sort=False):
            record: dict[str, Any] = {"strategy": strategy, "budget": budget}
            for cell in cells.itertuples():
                record[f"p{cell.gold_position}"] = (
                    f"{cell.answer_kept:.1%} [{cell.answer_kept_low:.1%}, {cell.answer_kept_high:.1%}]"
                    if cell.answer_kept == cell.answer_kept
                    else "-"
                )
            records.append({**{f"p{p}": None for p in positions}, **record})
        columns = {"strategy": ("strategy", ""), "budget": ("budget", "g")}
        columns |= {f"p{p}": (f"gold at {p + 1}", "") for p in positions}
        lines += ["", f"### {dataset}", "", markdown_table(records, columns)]
    return lines


def write_report(run: str | Path) -> Path:
    """Write ``report.md``, ``rows.csv``, ``summary.csv`` and the plots into the run folder; returns the
    report's path."""
    run = Path(run)
    rows = load_rows(run)
    rows.to_csv(run / "rows.csv", index=False)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    summary = summarize_run(rows, manifest.get("seed", 0), manifest.get("price_per_million_tokens", 2.5))
    summary.to_csv(run / "summary.csv", index=False)
    plots = _plots(summary, run, manifest.get("max_loss", 0.05))
    positions = by_gold_position(rows, manifest.get("seed", 0))
    if len(positions):
        positions.to_csv(run / "by_position.csv", index=False)
        plots += plot_gold_positions(positions, run, strategy_colors(summary["strategy"]))
    reader = manifest["reader"]
    likelihood = manifest.get("likelihood") or {}
    lines = [
        f"# Evaluation report: {manifest['suite']}",
        "",
        f"Reader: `{reader['spec']}` ({reader['model']}); likelihood model: {likelihood.get('model') or 'none'}; "
        f"tokens counted for {manifest.get('token_model')}; seed {manifest.get('seed')}; commit "
        f"{manifest.get('git_commit', '')[:10]}; {manifest.get('finished', manifest.get('started'))}; "
        f"{manifest.get('seconds', '?')} s{_sessions(manifest)} on {manifest.get('machine', {}).get('platform')}.",
        "",
        "Savings = share of prompt tokens removed. Answer kept = a gold answer still appears in the compressed "
        "prompt (model-free). Help retained = (LL(gold | compressed) - LL(gold | question only)) / "
        "(LL(gold | original) - LL(gold | question only)), summed over the examples where the context helped, "
        "teacher-forced with the likelihood model (1 = all the context's help kept). The reader's scores are "
        "compared with the original prompt's on the same examples: difference = mean(compressed - original) "
        "with a paired bootstrap 95% interval; right/wrong metrics add an exact McNemar test; 'could detect' "
        "is the smallest difference the sample would find (5% test, 80% power). Intervals are 95% bootstrap "
        f"(2,000 resamples). USD saved per 1M requests at ${manifest.get('price_per_million_tokens', 2.5):g} "
        "per 1M input tokens: see summary.csv.",
    ]
    if reader["spec"] == "local":
        lines += [
            "",
            "The reader is SmolLM2-135M-Instruct: its absolute accuracy is low and its answers change with any "
            "change of prompt; the likelihood signal is the one to read.",
        ]
    if "nq-multidoc" in set(summary["dataset"]):
        lines += ["", _distractor_note(manifest)]
    relation = likelihood_vs_reader(rows)
    if relation:
        lines += [
            "",
            "## Likelihood signal vs reader accuracy",
            "",
            f"On {relation['pairs']:.0f} compressed prompts that were both read and scored: Spearman correlation "
            f"between the likelihood gain (LL(gold | compressed) - LL(gold | question only)) and the reader's "
            f"score {relation['spearman_examples']:.2f} per example, {relation['spearman_configs']:.2f} across "
            f"strategy x budget means. The reader is right {relation['accuracy_when_context_helps']:.1%} of the "
            f"time when the prompt raised the gold answer's likelihood ({relation['share_context_helps']:.0%} of "
            f"the prompts) and {relation['accuracy_otherwise']:.1%} otherwise.",
        ]
    widths = (summary["help_retained_high"] - summary["help_retained_low"]) / 2
    if widths.notna().any():
        lines += ["", "Help-retained intervals, half-widths (n = examples where the context helped):"]
        for dataset, table in summary[widths.notna()].groupby("dataset", sort=False):
            width = widths[table.index]
            wide = table[(width > 0.05) & (table["strategy"] != "identity")]
            listed = ", ".join(f"{r.strategy} @ {r.budget:g}" for r in wide.itertuples()) or "none"
            lines.append(
                f"- {dataset}: {width.min():.3f} to {width.max():.3f} (n = {int(table['n_helped'].max())}); "
                f"wider than +-0.05: {listed}."
            )
    for dataset, table in summary.groupby("dataset", sort=False):
        lines += [
            "",
            f"## {dataset} ({table['kind'].iloc[0]})",
            "",
            markdown_table(_report_records(table), REPORT_COLUMNS),
        ]
    if len(positions):
        lines += _position_lines(positions)
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


def upper_staircase(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto frontier of (savings, fidelity), both higher-is-better, as the corners of its upper
    staircase in increasing savings: each point is the best fidelity available at that savings or more."""
    front = sorted((points[i] for i in pareto_front(points)), key=lambda p: (p[0], -p[1]))
    return [p for k, p in enumerate(front) if k == len(front) - 1 or p[0] != front[k + 1][0]]


def _sessions(manifest: Mapping[str, Any]) -> str:
    """ ", in N sessions (the last at commit C)" for a resumed run, else nothing."""
    sessions = manifest.get("sessions") or []
    if len(sessions) < 2:
        return ""
    return f" in {len(sessions)} sessions (the last at commit {str(sessions[-1].get('git_commit', ''))[:10]})"


def _distractor_note(manifest: Mapping[str, Any]) -> str:
    """What the run's nq-multidoc distractors were (the suite's dataset options say; random by default)."""
    kinds = sorted(
        {
            str(e.get("distractors", "random"))
            for e in manifest.get("datasets", [])
            if e.get("name") == "nq-multidoc"
        }
    )
    said = {
        "random": "other questions' gold passages drawn at random (easier than retrieved ones)",
        "retrieved": "the pool passages most similar to the question by BM25 that hold no gold answer (a "
        "lexical retriever; the published Lost-in-the-Middle set used Contriever)",
    }
    return (
        "nq-multidoc distractors: " + "; ".join(f"{k}: {said.get(k, k)}" for k in kinds or ["random"]) + "."
    )


def strategy_colors(strategies: Any) -> dict[str, Any]:
    """One colour per strategy, in order of first appearance, shared by every plot of a report."""
    import matplotlib.pyplot as plt

    return {s: plt.get_cmap("tab10")(k % 10) for k, s in enumerate(dict.fromkeys(strategies))}


def plot_gold_positions(table: Any, run: Path, colors: Mapping[str, Any]) -> list[Path]:
    """Per dataset, the lost-in-the-middle curves: answer kept (and the reader's score where it answered)
    against the gold passage's position, one line per strategy, one panel per budget, 95% bootstrap error
    bars; the original prompt's reader score is drawn in every reader panel as the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for dataset, part in table.groupby("dataset", sort=False):
        original = part[part["strategy"] == "identity"]
        compressed = part[part["strategy"] != "identity"]
        budgets = sorted(set(compressed["budget"]), reverse=True)
        if not budgets:
            continue
        measures = [("answer_kept", "answer kept (model-free)")]
        if (part["n_read"] > 0).any():
            measures.append(("score", f"reader score ({part['metric'].iloc[0]})"))
        strategies = list(dict.fromkeys(compressed["strategy"]))
        figure, axes = plt.subplots(
            len(measures),
            len(budgets),
            figsize=(max(6.0, 4.2 * len(budgets)), 3.4 * len(measures)),
            squeeze=False,
            sharex=True,
            sharey="row",
        )
        spread = max(1, int(part["gold_position"].max()))
        for r, (measure, label) in enumerate(measures):
            for c, budget in enumerate(budgets):
                axis = axes[r][c]
                lines = [
                    (s, compressed[(compressed["strategy"] == s) & (compressed["budget"] == budget)])
                    for s in strategies
                ]
                if measure == "score" and len(original):
                    lines.append(("original prompt", original))
                for k, (strategy, points) in enumerate(lines):
                    points = points.dropna(subset=[measure]).sort_values("gold_position")
                    if not len(points):
                        continue
                    dodge = 0.012 * spread * (k - (len(lines) - 1) / 2)  # keep error bars apart
                    reference = strategy == "original prompt"
                    axis.errorbar(
                        points["gold_position"] + 1 + dodge,
                        points[measure],
                        yerr=[
                            (points[measure] - points[f"{measure}_low"]).clip(lower=0),
                            (points[f"{measure}_high"] - points[measure]).clip(lower=0),
                        ],
                        color="black" if reference else colors.get(strategy, "gray"),
                        linestyle="--" if reference else "-",
                        marker="o",
                        markersize=4,
                        capsize=3,
                        label=strategy,
                    )
                axis.set_title(f"budget {budget:g} ({1 / budget:.0f}x)" if r == 0 else "")
                axis.set_xticks(sorted({int(p) + 1 for p in part["gold_position"]}))
                axis.grid(alpha=0.3)
                if c == 0:
                    axis.set_ylabel(label)
                if r == len(measures) - 1:
                    axis.set_xlabel("position of the gold document")
        handles, labels = [], []
        for axis in axes.flat:
            for handle, name in zip(*axis.get_legend_handles_labels(), strict=True):
                if name not in labels:
                    handles.append(handle)
                    labels.append(name)
        figure.legend(
            handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
        )
        figure.suptitle(f"{dataset}: by position of the gold document (95% bootstrap intervals)")
        figure.tight_layout()
        paths.append(run / f"lost_in_the_middle_{_slug(dataset)}.png")
        figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(figure)
    return paths


def _slug(name: str) -> str:
    """A file-name part for a dataset's name: runs of other characters become one hyphen."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", name).strip("-")


MEASURES = (  # what the savings plot shows for a kind of prompt, the first one it has
    ("help_retained", "help_retained_low", "help_retained_high", "help retained (likelihood)"),
    ("fidelity", "fidelity_low", "fidelity_high", "reader fidelity (compressed / original)"),
    ("answer_kept", "answer_kept_low", "answer_kept_high", "gold answer kept in the prompt"),
)


def _measure(table: Any) -> tuple[str, str, str, str] | None:
    """The first of ``MEASURES`` that a kind's summary rows hold, other than the original prompt's own
    (always 1); None when there is none (savings and time only: no panel)."""
    compressed = table[table["strategy"] != "identity"]
    return next((m for m in MEASURES if compressed[m[0]].notna().any()), None)


def _plots(summary: Any, run: Path, max_loss: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    strategies = list(dict.fromkeys(summary["strategy"]))
    colors = strategy_colors(strategies)
    budgets = sorted(set(summary["budget"]), reverse=True)
    markers = dict(zip(budgets, "o^sDvP*X", strict=False))
    # per kind, the first measure it has: the likelihood signal, the reader, else whether the answer was kept
    measures = {kind: _measure(summary[summary["kind"] == kind]) for kind in dict.fromkeys(summary["kind"])}
    kinds = [kind for kind, measure in measures.items() if measure is not None]
    paths = []

    figure, axes = plt.subplots(1, max(1, len(kinds)), figsize=(5.5 * max(1, len(kinds)), 4.5), squeeze=False)
    for axis, kind in zip(axes[0], kinds, strict=False):
        measure = measures[kind]
        assert measure is not None
        y, y_low, y_high, y_label = measure
        # a kind's datasets are averaged per strategy x budget
        part = summary[summary["kind"] == kind].groupby(["strategy", "budget"], as_index=False, sort=False)
        means = part[["savings", y, y_low, y_high]].mean()
        for _, row in means.iterrows():
            if row[y] != row[y]:
                continue
            # strategies at the same budget share a savings value: dodge them sideways so none hides another
            dodge = 0.006 * (strategies.index(row["strategy"]) - (len(strategies) - 1) / 2)
            axis.errorbar(
                row["savings"] + dodge,
                row[y],
                yerr=[[max(row[y] - row[y_low], 0)], [max(row[y_high] - row[y], 0)]],
                color=colors[row["strategy"]],
                marker=markers.get(row["budget"], "o"),
                linestyle="none",
                capsize=3,
                markersize=6,
            )
        valid = means.dropna(subset=[y])
        stairs = upper_staircase(list(zip(valid["savings"], valid[y], strict=True)))
        if stairs:  # from no savings at the best fidelity, down each step, to the floor after the last
            xs, ys = zip(*stairs, strict=True)
            floor = axis.get_ylim()[0]
            axis.step(
                [0.0, *xs, xs[-1]],
                [ys[0], *ys, floor],
                where="pre",
                color="black",
                linewidth=1,
                alpha=0.6,
                zorder=0,
            )
            axis.set_ylim(bottom=floor)
        axis.set_title(f"{kind} (averaged over its datasets)")
        axis.set_xlabel("token savings (share removed)")
        axis.set_ylabel(y_label)
        axis.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[s], marker="o", linestyle="none", label=s) for s in strategies] + [
        Line2D([], [], color="gray", marker=markers.get(b, "o"), linestyle="none", label=f"budget {b:g}")
        for b in budgets
    ]
    handles.append(Line2D([], [], color="black", alpha=0.6, label="Pareto frontier"))
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    figure.suptitle("Savings vs fidelity, 95% intervals (points at one budget dodged sideways)")
    paths.append(run / "savings_vs_fidelity.png")
    figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(figure)

    read = summary[(summary["n_read"] > 0) & (summary["strategy"] != "identity")]
    if len(read):
        read_kinds = list(dict.fromkeys(read["kind"]))
        figure, axes = plt.subplots(
            1,
            len(read_kinds),
            figsize=(5.5 * len(read_kinds), 0.35 * len(read) / len(read_kinds) + 2),
            squeeze=False,
        )
        for axis, kind in zip(axes[0], read_kinds, strict=True):
            part = read[read["kind"] == kind].reset_index(drop=True)
            labels = [f"{r.dataset}: {r.strategy} @ {r.budget:g}" for r in part.itertuples()]
            for k, row in part.iterrows():
                axis.errorbar(
                    row["difference"],
                    k,
                    xerr=[
                        [row["difference"] - row["difference_low"]],
                        [row["difference_high"] - row["difference"]],
                    ],
                    color=colors[row["strategy"]],
                    marker=markers.get(row["budget"], "o"),
                    capsize=3,
                )
            axis.axvline(0, color="black", linewidth=1)
            axis.axvline(
                -max_loss, color="tab:red", linewidth=1, linestyle="--", label=f"-max_loss ({max_loss:g})"
            )
            axis.set_yticks(range(len(part)), labels, fontsize=7)
            axis.invert_yaxis()
            axis.set_xlabel("reader score: compressed - original (paired, 95% CI)")
            axis.set_title(kind)
            axis.legend(fontsize=7, loc="lower left")
            axis.grid(alpha=0.3, axis="x")
        paths.append(run / "paired_differences.png")
        figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(figure)
    return paths
