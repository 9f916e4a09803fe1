from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from occ_research.cli import main

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": "Paris is the capital of France. The Seine flows through it. Cats are mammals.\n\nWhat river flows through Paris?",
    },
]


def run(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    """The real command line in a subprocess, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "occ_research.cli", *args], input=stdin, capture_output=True, text=True
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_compress_messages_from_stdin() -> None:
    code, out, err = run(["compress", "--strategy", "bm25", "--rate", "0.7"], json.dumps(MESSAGES))
    assert code == 0, err
    data = json.loads(out)
    assert data["messages"][0] == MESSAGES[0]
    assert data["messages"][1]["content"].endswith("What river flows through Paris?")
    assert data["stats"]["compressed_tokens"] <= data["stats"]["target_tokens"]


def test_compress_with_an_adaptive_rate() -> None:
    code, out, err = run(["compress", "--strategy", "bm25", "--rate", "auto"], json.dumps(MESSAGES))
    assert code == 0, err
    stats = json.loads(out)["stats"]
    assert stats["target_tokens"] <= stats["original_tokens"] // 2  # the chosen budget: at most auto_max
    assert stats["compressed_tokens"] < stats["original_tokens"]


def test_compress_request_body_file_and_stats_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "request.json"
    body.write_text(json.dumps({"model": "gpt-4o", "temperature": 0.2, "messages": MESSAGES}))
    assert main(["compress", str(body), "--preset", "bm25-q25"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["request"]["temperature"] == 0.2 and data["request"]["model"] == "gpt-4o"
    assert main(["compress", str(body), "--stats", "--strategy", "tfidf", "--target-tokens", "40"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) >= {"original_tokens", "compressed_tokens", "ratio", "seconds", "strategy"}


def test_compress_plain_text_with_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "doc.txt"
    text.write_text(" ".join(f"Sentence {i} is about item {i}." for i in range(40)))
    assert (
        main(["compress", str(text), "--strategy", "truncate", "--param", "side=head", "--rate", "0.5"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["text"].startswith("Sentence 0 is about item 0.")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["compress"], "[{bad json", "invalid JSON at line 1"),
        (["compress"], '{"model": "x"}', "'messages' list"),
        (["compress"], '[{"role": "wizard", "content": "x"}]', "role must be one of"),
        (["compress", "--rate", "1.5"], "Some text.", "0 < rate <= 1"),
        (["compress", "--strategy", "tfidff"], "Some text.", "did you mean 'tfidf'"),
        (["compress", "--preset", "bm25-q52"], "Some text.", "did you mean 'bm25-q25'"),
        (["compress", "--param", "granularty=sentence"], "Some text.", "did you mean 'granularity'"),
        (["compress", "no-such-file.json"], "", "cannot read no-such-file.json"),
        (["compress", "--rate", "most"], "Some text.", "0 < rate <= 1 or 'auto'"),
        (["compress", "--strategy", "dedup", "--rate", "auto"], "Some text.", "ranks units by relevance"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], stdin: str, message: str) -> None:
    code, _, err = run(args, stdin)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_strategies_lists_strategies_and_presets() -> None:
    code, out, _ = run(["strategies"])
    assert code == 0
    for name in [
        "identity",
        "truncate",
        "random",
        "tfidf",
        "bm25",
        "gzip",
        "dedup",
        "pipeline",
        "bm25-q25",
        "dedup+bm25",
    ]:
        assert name in out
