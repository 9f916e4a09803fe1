"""The lost-in-the-middle table and plot of a report, from a small hand-made rows table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from occ_research.evals import Row
from occ_research.evals._report import by_gold_position, write_report
from occ_research.evals._runner import load_rows

POSITIONS = (0, 9, 19)


def _row(
    example: int, strategy: str, budget: float, kept: bool, score: float | None, position: int | None
) -> Row:
    return Row(
        dataset="nq-multidoc",
        kind="rag",
        task="qa",
        example=f"nq-{example}",
        strategy=strategy,
        budget=budget,
        original_tokens=1000,
        compressed_tokens=int(1000 * budget),
        rate=budget,
        saved_tokens=1000 - int(1000 * budget),
        budget_met=True,
        compress_seconds=0.001,
        answer_kept=kept,
        metric="contains",
        score_original=score,
        score_compressed=score,
        gold_position=position,
    )


def _run(folder: Path, with_positions: bool = True) -> Path:
    """12 examples, 4 per gold position; ``bm25`` loses the answer in the middle at 0.25, never at 0.5."""
    folder.mkdir()
    rows = []
    for i in range(12):
        position = POSITIONS[i % 3] if with_positions else None
        middle = position == 9
        rows += [
            _row(i, "identity", 1.0, True, 1.0 if i % 2 else 0.0, position),
            _row(i, "bm25", 0.5, True, None, position),
            _row(i, "bm25", 0.25, not (middle and i < 6), None, position),
        ]
    (folder / "rows.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    manifest = {
        "suite": "t",
        "seed": 0,
        "datasets": [{"name": "nq-multidoc", "documents": 20, "distractors": "retrieved"}],
        "reader": {"spec": "stub", "model": "m"},
        "likelihood": {"model": None},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_answer_kept_by_gold_position(tmp_path: Path) -> None:
    table = by_gold_position(load_rows(_run(tmp_path / "run")))
    cell = table[(table.strategy == "bm25") & (table.budget == 0.25)].set_index("gold_position")
    # examples 1, 4, 7, 10 have the gold in the middle; 1 and 4 lost it
    assert cell.loc[9, "n"] == 4 and cell.loc[9, "answer_kept"] == pytest.approx(0.5)
    assert cell.loc[9, "answer_kept_low"] <= 0.5 <= cell.loc[9, "answer_kept_high"]
    assert cell.loc[0, "answer_kept"] == cell.loc[19, "answer_kept"] == 1.0
    original = table[table.strategy == "identity"].set_index("gold_position")
    assert original.loc[9, "n_read"] == 4 and original.loc[9, "score"] == pytest.approx(0.5)
    assert (table[table.strategy == "bm25"]["n_read"] == 0).all()


def test_report_writes_the_lost_in_the_middle_plot(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    report = write_report(run).read_text()
    plot = run / "lost_in_the_middle_nq-multidoc.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert f"![{plot.stem}]({plot.name})" in report
    assert "## Answer kept by gold position" in report and "gold at 10" in report
    assert "retrieved: the pool passages most similar" in report
    assert (run / "by_position.csv").is_file()


def test_no_positions_no_plot(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", with_positions=False)
    report = write_report(run).read_text()
    assert "gold position" not in report and not list(run.glob("lost_in_the_middle*"))
    assert by_gold_position(load_rows(run)).empty
