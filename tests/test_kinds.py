"""Kinds of prompt read from structure (``occ_research._kinds``), and the server applying an evaluation's
policy by the kind of each request (uvicorn on loopback, the openai SDK)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from occ_research._kinds import KINDS, prompt_kind
from occ_research.evals import DATASETS, load_examples
from occ_research.server import Route, Settings, create_app

from .test_server import KEY, THREADS, echoed, sdk, serve, upstream

_ = (serve, upstream)  # fixtures

#: datasets that need a file or a hub name of the caller's
NEEDS_INPUT = {"jsonl", "hub"}


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if n not in NEEDS_INPUT])
def test_every_dataset_is_classified_as_the_kind_it_declares(name: str) -> None:
    """The server sees no dataset label: it must tell the kind from the messages alone."""
    spec = DATASETS.get(name)
    examples = load_examples(name, n=30)
    kinds = Counter(prompt_kind(e.messages) for e in examples)
    assert kinds[spec.kind] >= 0.9 * len(examples), kinds


def test_structural_rules() -> None:
    passages = "\n\n".join(  # long passages: a user turn's short paragraphs are kept as instructions
        f"Document {i}: a passage about topic {i}. It has two sentences." for i in range(5)
    )
    assert prompt_kind([{"role": "user", "content": f"{passages}\n\nWhich topic came first?"}]) == "rag"
    assert prompt_kind([{"role": "user", "content": "Summarise this.\n\nOne long text. " * 3}]) in KINDS
    shots = "\n".join(f"Q: what is {i} + {i}?\nA: {2 * i}" for i in range(3)) + "\nQ: what is 5 + 5?\nA:"
    assert prompt_kind([{"role": "user", "content": shots}]) == "few-shot"
    table = '{"rows": [' + ", ".join(f'{{"id": {i}, "name": "item {i}"}}' for i in range(40)) + "]}"
    assert prompt_kind([{"role": "user", "content": f"{table}\n\nWhich id has name item 7?"}]) == "structured"
    chat = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}]
    assert prompt_kind([*chat, {"role": "user", "content": "And?"}]) == "chat"
    assert prompt_kind([{"role": "user", "content": [{"type": "text", "text": passages}]}]) == "rag"
    assert prompt_kind([{"role": "user", "content": None}]) == "long-document"


POLICY = """description = "rag -> bm25 at 0.5; no other kind evaluated"
strategy = "bm25"
rate = 0.5

[evidence.kinds.rag]
strategy = "bm25"
rate = 0.5
"""


def test_the_server_applies_the_policy_by_kind_and_forwards_kinds_without_a_winner(
    serve: Any, upstream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "winner.toml").write_text(POLICY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # where an evaluation writes winner.toml: ./strategies
    settings = Settings(
        api_keys=(KEY,), routes=(Route("gpt-", f"{upstream}/v1"),), min_prompt_tokens=0, **THREADS
    )
    proxy = str(serve(create_app(settings)))
    client = sdk(proxy).chat.completions
    passages = "\n\n".join(  # long passages: a user turn's short paragraphs are kept as instructions
        f"Document {i}: the river {i} runs through town {i}. Its bridge was built in year {1800 + i}. "
        + "Boats carry goods along it every day, and the market by the water sells fish and bread. " * 4
        for i in range(12)
    )
    rag = [{"role": "user", "content": f"{passages}\n\nWhen was the bridge over river 3 built?"}]
    raw = client.with_raw_response.create(model="gpt-4o", messages=rag)  # type: ignore[arg-type]
    assert raw.headers["x-occ-prompt-kind"] == "rag"
    assert raw.headers["x-occ-compression"] == "on"
    assert raw.headers["x-occ-strategy"] == "winner-rag"
    assert len(echoed(raw.parse())["messages"][0]["content"]) < len(rag[0]["content"])

    chat = [
        {"role": "user", "content": passages},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "When was the bridge over river 3 built?"},
    ]
    raw = client.with_raw_response.create(model="gpt-4o", messages=chat)  # type: ignore[arg-type]
    assert raw.headers["x-occ-prompt-kind"] == "chat"
    assert raw.headers["x-occ-compression"] == "skipped-kind"
    assert echoed(raw.parse())["messages"] == chat  # forwarded as it came

    named = client.with_raw_response.create(
        model="gpt-4o",
        messages=chat,
        extra_body={"occ": {"preset": "bm25-q25"}},  # type: ignore[arg-type]
    )
    assert named.headers["x-occ-compression"] == "on"  # a preset the client names applies whatever the kind
    assert "x-occ-prompt-kind" not in named.headers
