"""The model-based strategies with the real local models (SmolLM2 GGUF, MiniLM ONNX) on short real inputs."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap

import pytest

from occ_research import ChatPolicy, compress
from occ_research.evals import Example


def words(text: str) -> set[str]:
    return set(re.findall(r"\S+", text))


def test_selfinfo_prunes_words_without_fusing_them(nq_examples: list[Example]) -> None:
    example = nq_examples[0]
    short = [{"role": "user", "content": example.messages[0]["content"][:1500] + "\n\n" + example.question}]
    for level in ("word", "phrase", "sentence"):
        result = compress(short, "selfinfo", level=level, rate=0.5, question=example.question)
        assert result.budget_met and result.rate >= 0.4
        assert words(result.text) <= words(short[0]["content"])  # whole words only, nothing invented
    numbers = re.findall(r"\d[\d,.]*\d|\d", short[0]["content"][:1500])
    kept = compress(short, "selfinfo", level="word", rate=0.6, question=example.question).text
    assert sum(n in kept for n in numbers) >= 0.8 * len(numbers)


def test_summarize_document_mode_with_the_local_model(qmsum_examples: list[Example]) -> None:
    example = qmsum_examples[0]
    text = example.messages[1]["content"][:3000]
    messages = [example.messages[0], {"role": "user", "content": text + "\n\n" + example.question}]
    result = compress(messages, "summarize", rate=0.3, question=example.question, mode="document")
    assert result.budget_met
    assert "summaries by local" in result.note
    assert result.messages[1]["content"].endswith(example.question)
    assert any(e.action == "rewritten" for e in result.trace)


def test_summarize_conversation_keeps_recent_turns(chat_examples: list[Example]) -> None:
    history = chat_examples[1].messages
    # the summariser's own conversation mode, with the chat policy off: older turns become summaries
    result = compress(history, "summarize", rate=0.5, keep_recent=2, chat=ChatPolicy(conversation=False))
    assert result.budget_met, result.note
    assert result.messages[-1] == history[-1]
    assert "conversation summaries" in result.note or "fell back" not in result.note
    assert [m["role"] for m in result.messages] == [m["role"] for m in history]
    # under the chat policy (the default) user turns are never cut: when they alone exceed the budget, the
    # result says so instead of cutting them
    default = compress(history, "summarize", rate=0.5, keep_recent=2)
    assert default.messages[-1] == history[-1] and all(m["content"].strip() for m in default.messages)
    assert default.budget_met or "protected content" in default.note


def test_summarize_falls_back_when_the_llm_is_unreachable(nq_examples: list[Example]) -> None:
    example = nq_examples[1]
    result = compress(
        example.messages,
        "summarize",
        rate=0.3,
        question=example.question,
        llm="gpt-4o-mini",
        base_url="http://127.0.0.1:9/v1",
        timeout=2.0,
    )
    assert result.budget_met
    assert "fell back to bm25" in result.note and "unreachable" in result.note


def test_embed_ranks_paraphrases_and_drops_them_when_asked() -> None:
    text = (
        "The automobile would not start on cold mornings. "
        "Bananas are rich in potassium and easy to digest. "
        "My car refused to start whenever it was freezing outside. "
        "The museum opens at nine on weekdays."
    )
    result = compress(text, "embed", rate=0.5, question="Why does the vehicle fail to start in winter?")
    assert "automobile" in result.text or "car refused" in result.text
    assert "Bananas" not in result.text
    deduped = compress(text, "embed", rate=0.9, dedup_threshold=0.6)
    assert not ("automobile" in deduped.text and "car refused" in deduped.text)


def test_coarse2fine_preset_meets_its_budget(nq_examples: list[Example]) -> None:
    example = nq_examples[2]
    result = compress(example.messages, preset="coarse2fine", question=example.question)
    assert result.budget_met and 0.2 <= result.rate <= 0.25
    assert [e.step for e in result.trace][-1] == "selfinfo"
    assert result.messages[0]["content"].endswith(example.question)


def test_llmlingua_peer_runs_offline_and_reports_missed_budgets(nq_examples: list[Example]) -> None:
    example = nq_examples[3]
    for method in ("llmlingua", "longllmlingua"):
        result = compress(example.messages, "llmlingua", method=method, rate=0.3, question=example.question)
        assert result.compressed_tokens < 0.6 * result.original_tokens
        assert result.note.startswith(method)
        assert result.budget_met or "missed its target" in result.note
        assert result.messages[0]["content"].endswith(example.question)
    plain = compress("Alpha beta gamma. " * 80, "llmlingua", rate=0.3)  # no question: LongLLMLingua needs one
    assert plain.note.startswith("llmlingua") and plain.compressed_tokens < plain.original_tokens


def test_llmlingua_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from occ_research.strategies import _llmlingua_adapter as llmlingua_adapter

    llmlingua_adapter.COMPRESSORS.clear()
    monkeypatch.setitem(sys.modules, "llmlingua", None)  # as if the peers extra were not installed
    try:
        with pytest.raises(llmlingua_adapter.PeerUnavailableError, match=r'pip install -e "\.\[peers\]"'):
            compress("Alpha beta gamma. " * 80, "llmlingua", rate=0.3)
    finally:
        llmlingua_adapter.COMPRESSORS.clear()


def _self_assignments(function: ast.AST) -> dict[str, str]:
    """``self.name = value`` in a function: name -> the value's source."""
    found = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self":
                    found[target.attr] = ast.unparse(node.value)
    return found


def test_llmlingua_shim_sets_what_promptcompressor_init_sets() -> None:
    """The adapter replaces PromptCompressor.__init__ (to hand it our cl100k): it must set the same attributes,
    with the same fixed values."""
    llmlingua = pytest.importorskip("llmlingua")
    from occ_research.strategies import _llmlingua_adapter as llmlingua_adapter

    theirs = _self_assignments(
        ast.parse(textwrap.dedent(inspect.getsource(llmlingua.PromptCompressor.__init__)))
    )
    shim = next(
        n
        for n in ast.walk(ast.parse(inspect.getsource(llmlingua_adapter)))
        if isinstance(n, ast.ClassDef) and n.name == "LocalPromptCompressor"
    )
    init = next(n for n in shim.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    ours = _self_assignments(init)
    assert set(ours) == set(theirs) and "oai_tokenizer" in ours
    fixed = {k: v for k, v in theirs.items() if isinstance(ast.parse(v, mode="eval").body, ast.Constant)}
    assert fixed and all(ours[k] == v for k, v in fixed.items())
