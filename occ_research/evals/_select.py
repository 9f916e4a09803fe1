"""Pick the winning strategy of a run by a stated rule and write it as a preset the server reads.

Default rule: among strategy x budget pairs other than ``identity``, average fidelity and savings over the
suite's datasets; keep the pairs whose averaged fidelity lower bound (95% bootstrap) is at least
``min_fidelity`` and which, where gold answers can be looked for in the prompt (QA, retrieval), keep one in
at least ``min_retention`` of the prompts; the winner saves the most tokens. Ties go to the faster strategy.

The retention guard matters with a weak reader and small samples: a reader that answers badly anyway can
score as well on a randomly cut prompt, and a fidelity interval from a dozen examples is wide.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._report import summarize_run
from ._runner import load_rows


def select_winner(
    run: str | Path, min_fidelity: float = 0.95, min_retention: float = 0.9
) -> dict[str, Any] | None:
    """The winning row (strategy label, budget, averaged numbers), or None when no pair passes the rule."""
    run = Path(run)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    summary = summarize_run(load_rows(run), manifest.get("seed", 0))
    summary = summary[summary["strategy"] != "identity"]
    averaged = summary.groupby(["strategy", "budget"], as_index=False)[
        ["savings", "fidelity", "fidelity_low", "ms_per_1k_tokens", "answer_kept"]
    ].mean()
    retained = averaged["answer_kept"].isna() | (averaged["answer_kept"] >= min_retention)
    passing = averaged[(averaged["fidelity_low"] >= min_fidelity) & retained]
    if passing.empty:
        return None
    best = passing.sort_values(["savings", "ms_per_1k_tokens"], ascending=[False, True]).iloc[0]
    config = next(s for s in manifest["strategies"] if s["label"] == best["strategy"])
    return {
        "strategy": {k: v for k, v in config.items() if k != "label"},
        "label": best["strategy"],
        "rate": float(best["budget"]),
        "savings": float(best["savings"]),
        "fidelity": float(best["fidelity"]),
        "fidelity_low": float(best["fidelity_low"]),
        "ms_per_1k_tokens": float(best["ms_per_1k_tokens"]),
        "run": run.name,
        "suite": manifest["suite"],
        "reader": manifest["reader"]["spec"],
        "min_fidelity": min_fidelity,
        "min_retention": min_retention,
    }


def write_winner(winner: dict[str, Any], path: str | Path) -> Path:
    """Write the winner as a preset TOML file (its ``[evidence]`` table is ignored when loading)."""
    path = Path(path)
    config = dict(winner["strategy"])
    steps = config.pop("steps", [])
    lines = [
        f'description = "Winner of suite {winner["suite"]} (run {winner["run"]}): {winner["label"]} at rate {winner["rate"]:g}"',
        f"rate = {winner['rate']!r}",
        *(f"{key} = {json.dumps(value)}" for key, value in config.items()),
    ]
    for step in steps:
        lines += ["", "[[steps]]", *(f"{key} = {json.dumps(value)}" for key, value in step.items())]
    lines += [
        "",
        "[evidence]",
        f'rule = "largest savings with mean fidelity lower bound >= {winner["min_fidelity"]:g} '
        f'and gold-answer retention >= {winner["min_retention"]:g}"',
        f'run = "{winner["run"]}"',
        f'reader = "{winner["reader"]}"',
        f"savings = {winner['savings']:.4f}",
        f"fidelity = {winner['fidelity']:.4f}",
        f"fidelity_low = {winner['fidelity_low']:.4f}",
        f"ms_per_1k_tokens = {winner['ms_per_1k_tokens']:.3f}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
