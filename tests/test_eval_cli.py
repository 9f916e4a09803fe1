"""`occ report --select` elects a winner per kind of prompt and writes the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from occ_research.cli import main
from occ_research.evals import read_policy

from .test_evals import _synthetic_run


def test_report_select_writes_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _synthetic_run(
        tmp_path / "run", [("identity", 1.0, [1]), ("bm25", 0.5, [1]), ("tfidf", 0.25, [1] * 9 + [0])]
    )
    (tmp_path / "strategies").mkdir()
    monkeypatch.chdir(tmp_path)  # winner.toml goes to ./strategies when it exists
    assert main(["report", str(run), "--select"]) == 0
    out = capsys.readouterr().out
    assert "winner for rag: bm25 at rate 0.5" in out and "report.md" in out
    assert read_policy(tmp_path / "strategies" / "winner.toml")["rag"] == ({"strategy": "bm25"}, 0.5)
    assert (run / "savings_vs_fidelity.png").is_file() and (run / "paired_differences.png").is_file()
