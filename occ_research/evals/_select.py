"""Elect a winner per kind of prompt by a stated rule, and write the policy the server reads.

The rule, per kind of prompt (``KINDS``), over every strategy x budget but ``identity``; a pair must pass on
every dataset of the kind:

1. retention: where a gold answer can be looked for in the prompt (QA, lookups), it is still there in at
   least ``min_retention`` of the compressed prompts;
2. likelihood: the lower bound of the help retained (95% bootstrap) is at least ``min_fidelity``;
3. reader, paired with the original prompt on the same examples: when the sample can detect a loss of
   ``max_loss`` (see ``detectable``), the lower bound of the score difference is above ``-max_loss``
   (non-inferiority); when it cannot, the compressed prompt must not be significantly worse (exact McNemar
   for right/wrong metrics, else the paired interval), and the evidence records the check as weak.

A pair needs at least one fidelity signal (2 or 3). The winner saves the most tokens (averaged over the
kind's datasets); ties go to the faster strategy. A kind with no passing pair, or not evaluated, gets no
winner: its prompts are forwarded uncompressed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._kinds import KINDS
from ..strategies import runs_model, strategy_from_config
from ._report import summarize_run
from ._runner import StrategyEntry, load_rows


@dataclass(frozen=True)
class Winner:
    """The elected strategy and budget for one kind of prompt, with the evidence that elected it."""

    kind: str
    label: str
    strategy: dict[str, Any]  # the strategy config (a preset's keys)
    rate: float
    datasets: tuple[str, ...]
    n: int  # examples compressed (per dataset, summed)
    savings: float
    ms_per_1k_tokens: float
    answer_kept: float | None
    n_likelihood: int
    help_retained: float | None
    help_retained_low: float | None
    n_read: int
    difference: float | None  # reader score, compressed - original
    difference_low: float | None
    detectable: float | None  # the smallest difference the reader sample could detect
    reader_check: str  # "non-inferior", "weak: ...", or "not read"


@dataclass(frozen=True)
class Rule:
    min_fidelity: float = 0.95
    max_loss: float = 0.05
    min_retention: float = 0.9
    #: the winner is served per request by the proxy, within a compression budget of a few hundred ms: a
    #: strategy that runs a model per prompt (seconds on a CPU) would mostly be skipped there
    model_free: bool = True

    def describe(self) -> str:
        return (
            ("a strategy that runs no model per prompt, with the " if self.model_free else "")
            + f"largest savings such that, on every dataset of the kind: gold answer kept >= {self.min_retention:g} "
            f"(QA), likelihood help retained lower bound >= {self.min_fidelity:g}, and the reader's paired "
            f"difference lower bound >= -{self.max_loss:g} (or, where the sample cannot detect {self.max_loss:g}, "
            "not significantly worse: a weak check)"
        )


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _passes(row: Mapping[str, Any], rule: Rule) -> tuple[bool, str]:
    """Whether one dataset's summary row passes the rule, and how the reader check went."""
    if _finite(row["answer_kept"]) and row["answer_kept"] < rule.min_retention:
        return False, ""
    has_likelihood = row["n_helped"] > 0 and _finite(row["help_retained_low"])
    if has_likelihood and row["help_retained_low"] < rule.min_fidelity:
        return False, ""
    if row["n_read"] == 0:
        return has_likelihood, "not read"
    if row["detectable"] <= rule.max_loss:
        return row["difference_low"] >= -rule.max_loss, "non-inferior"
    worse = row["verdict"].startswith("worse")
    return not worse, f"weak: n = {row['n_read']} detects >= {row['detectable']:.2f}, not significantly worse"


def elect(summary: Any, strategies: list[dict[str, Any]], rule: Rule) -> dict[str, Winner | None]:
    """Apply the rule to a run's summary (``summarize_run``); one entry per kind evaluated."""
    configs = {e.label: e.config for e in map(StrategyEntry.parse, strategies)}
    out: dict[str, Winner | None] = {}
    for kind, part in summary.groupby("kind", sort=False):
        candidates = []
        for (label, budget), pair in part[part["strategy"] != "identity"].groupby(["strategy", "budget"]):
            if rule.model_free and runs_model(strategy_from_config(configs[str(label)])):
                continue
            checks = [_passes(row, rule) for row in pair.to_dict("records")]
            if not all(ok for ok, _ in checks):
                continue
            mean = pair.mean(numeric_only=True)
            winner = Winner(
                kind=str(kind),
                label=str(label),
                strategy=configs[str(label)],
                rate=float(budget),
                datasets=tuple(pair["dataset"]),
                n=int(pair["n"].sum()),
                savings=float(mean["savings"]),
                ms_per_1k_tokens=float(mean["ms_per_1k_tokens"]),
                answer_kept=float(mean["answer_kept"]) if _finite(mean.get("answer_kept")) else None,
                n_likelihood=int(pair["n_likelihood"].sum()),
                help_retained=float(mean["help_retained"]) if _finite(mean["help_retained"]) else None,
                help_retained_low=float(pair["help_retained_low"].min())
                if _finite(mean["help_retained_low"])
                else None,
                n_read=int(pair["n_read"].sum()),
                difference=float(mean["difference"]) if _finite(mean["difference"]) else None,
                difference_low=float(pair["difference_low"].min())
                if _finite(mean["difference_low"])
                else None,
                detectable=float(pair["detectable"].max()) if _finite(mean["detectable"]) else None,
                reader_check="; ".join(dict.fromkeys(check for _, check in checks)),
            )
            candidates.append(winner)
        candidates.sort(key=lambda w: (-w.savings, w.ms_per_1k_tokens))
        out[str(kind)] = candidates[0] if candidates else None
    return out


def select_winners(
    run: str | Path,
    min_fidelity: float | None = None,
    max_loss: float | None = None,
    min_retention: float | None = None,
) -> dict[str, Winner | None]:
    """The winner per kind of prompt of a run folder (None where no pair passes); the rule's thresholds
    default to the suite's (recorded in the manifest)."""
    run = Path(run)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    rule = Rule(
        min_fidelity if min_fidelity is not None else manifest.get("min_fidelity", 0.95),
        max_loss if max_loss is not None else manifest.get("max_loss", 0.05),
        min_retention if min_retention is not None else manifest.get("min_retention", 0.9),
    )
    summary = summarize_run(load_rows(run), manifest.get("seed", 0))
    return elect(summary, manifest["strategies"], rule)


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(round(value, 4))
    return json.dumps(value)  # strings, ints and booleans are written alike in JSON and TOML


def write_policy(winners: Mapping[str, Winner | None], path: str | Path, run: str | Path) -> Path:
    """Write ``winner.toml``: a policy per kind of prompt with its evidence (format in ``read_policy``)."""
    path, run = Path(path), Path(run)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    rule = Rule(
        manifest.get("min_fidelity", 0.95), manifest.get("max_loss", 0.05), manifest.get("min_retention", 0.9)
    )
    default = winners.get("rag")
    top = dict(default.strategy) if default else {"strategy": "identity"}
    elected = ", ".join(f"{k} -> {w.label} at {w.rate:g}" for k, w in winners.items() if w) or "none"
    description = f"Policy of suite {manifest['suite']} (run {run.name}): {elected}"
    lines = [
        "# Written by `occ eval` (occ_research.evals.write_policy); read it with occ_research.evals.read_policy.",
        "# The top level is a preset: the rag winner, applied by a server that reads one preset. The policy per",
        "# kind of prompt is under [evidence.kinds.KIND] (a preset's keys: strategy, its parameters, rate), with",
        "# its evidence in [evidence.kinds.KIND.evidence]; a kind not listed there is forwarded uncompressed.",
        f"description = {json.dumps(description)}",
        f"rate = {default.rate if default else 1.0!r}",
        *(f"{key} = {_toml_value(value)}" for key, value in top.items()),
        "",
        "[evidence]",
        f"rule = {json.dumps(rule.describe())}",
        f"suite = {json.dumps(manifest['suite'])}",
        f"run = {json.dumps(run.name)}",
        f"finished = {json.dumps(manifest.get('finished', manifest.get('started', '')))}",
        f"reader = {json.dumps(str(manifest['reader'].get('model') or manifest['reader']['spec']))}",
        f"likelihood_model = {json.dumps(str((manifest.get('likelihood') or {}).get('model') or ''))}",
        f"kinds_evaluated = {_toml_value(list(winners))}",
        f"kinds_without_winner = {_toml_value([k for k in KINDS if winners.get(k) is None])}",
        "",
        "[evidence.kinds]",
    ]
    for kind, winner in winners.items():
        if winner is None:
            continue
        entry = asdict(winner)
        config = entry.pop("strategy")
        entry.pop("kind")
        lines += ["", f"[evidence.kinds.{kind}]", f"rate = {winner.rate!r}"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in config.items()]
        lines += ["", f"[evidence.kinds.{kind}.evidence]"]
        lines += [
            f"{key} = {_toml_value(value)}"
            for key, value in entry.items()
            if value is not None and key != "rate"
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
