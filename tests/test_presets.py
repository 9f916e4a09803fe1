from __future__ import annotations

from pathlib import Path

import pytest

from occ_research import PresetError, UnknownNameError, compress, list_presets, load_preset
from occ_research.strategies import Pipeline


def test_shipped_presets_load_and_describe_themselves() -> None:
    presets = list_presets()
    assert {"bm25-q25", "tfidf-q50", "dedup+bm25", "dedup", "coarse2fine"} <= set(presets)
    assert all(description and not description.startswith("(unreadable") for description in presets.values())
    pipeline = load_preset("dedup+bm25")
    assert isinstance(pipeline.strategy, Pipeline) and pipeline.rate == 0.5


def test_preset_budget_applies_unless_overridden() -> None:
    text = "Some words about the topic. " * 60 + "\n\nWhat is the topic?"
    messages = [{"role": "user", "content": text}]
    assert compress(messages, preset="bm25-q25").target_tokens == int(
        0.25 * compress(messages, "identity").original_tokens
    )
    assert compress(messages, preset="bm25-q25", target_tokens=100).target_tokens == 100


def test_preset_from_a_path_and_from_the_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('description = "mine"\nstrategy = "truncate"\nside = "head"\ntarget_tokens = 50\n')
    assert load_preset(str(path)).strategy.get_params() == {"side": "head"}
    monkeypatch.setenv("OCC_PRESET_PATH", str(tmp_path))
    assert "mine" in list_presets()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("strategy = ", "cannot read"),
        ('description = "x"', "'strategy' name"),
        ('strategy = "tfidf"\nrate = 3', "rate"),
        ('strategy = "tfidf"\ngranularity = "word"', "must be one of"),
        ('strategy = "pipeline"\nstage_budgets = [1.0, 2.0]', "stage_budgets"),
        ('strategy = "pipeline"\nstage_budgets = [-1.0]', "stage_budgets"),
    ],
)
def test_malformed_presets_are_reported(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(PresetError, match=message):
        load_preset(str(path))


def test_unknown_preset_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean"):
        load_preset("tfidf-q5")
