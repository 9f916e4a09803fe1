from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from occ_research._text import join_atoms, protected_blocks, split_sentences, split_text
from occ_research._tokens import count_tokens, token_ends
from occ_research.strategies._layout import atom_tokens


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_abbreviations_initials_and_numbers_do_not_end_sentences() -> None:
    text = (
        "Dr. Smith met J. K. Rowling at 3.30 p.m. on Monday. It went well, e.g. the lunch. Was it fun? Yes!"
    )
    assert sentences(text) == [
        "Dr. Smith met J. K. Rowling at 3.30 p.m. on Monday.",
        "It went well, e.g. the lunch.",
        "Was it fun?",
        "Yes!",
    ]


def test_list_markers_and_quotes() -> None:
    assert sentences("1. First item here. Second one.") == ["1. First item here.", "Second one."]
    assert sentences('He said "Stop." Then he left.') == ['He said "Stop."', "Then he left."]


def test_a_passage_title_is_not_cut_at_its_marks() -> None:
    """ "Help!" in a title ended a sentence inside the header, which then lost its title when kept."""
    assert sentences("Document [5](Title: Help! (album)) Help! is an album. It sold well.") == [
        "Document [5](Title: Help! (album)) Help! is an album.",
        "It sold well.",
    ]
    assert sentences("[2] (source: Why? A study) Results vary. More work.") == [
        "[2] (source: Why? A study) Results vary.",
        "More work.",
    ]


def test_cjk_sentences_split_without_spaces() -> None:
    assert sentences("这是第一句。这是第二句！最后一句？") == ["这是第一句。", "这是第二句！", "最后一句？"]


def test_protected_blocks_code_json_tables() -> None:
    text = (
        "Intro line.\n```python\nx = 1. \nprint(x)\n```\n| a | b |\n|---|---|\n| 1 | 2 |\n"
        '{"key": [1, 2, 3]}\n[1] Smith et al. said so.\n  ["a",\n   "b"]\nEnd.'
    )
    blocks = [text[a:b] for a, b in protected_blocks(text)]
    assert blocks == [
        "```python\nx = 1. \nprint(x)\n```",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        '{"key": [1, 2, 3]}',
        '["a",\n   "b"]',
    ]


def test_unclosed_fence_runs_to_the_end() -> None:
    text = "Look:\n```\ncode without end. More code."
    assert [text[a:b] for a, b in protected_blocks(text)] == ["```\ncode without end. More code."]


def test_whole_json_text_is_one_block() -> None:
    text = '  {"a": {"b": "Sentence one. Sentence two."}}\n'
    assert [text[a:b] for a, b in protected_blocks(text)] == ['{"a": {"b": "Sentence one. Sentence two."}}']


def test_speaker_labels_are_atoms_of_their_own() -> None:
    seg = split_text("Barry Hughes: Perfectly happy. Thank you.\nDocument [1](Title: X) Text here.")
    kinds = [(a.kind, a.text) for a in seg.atoms]
    assert kinds[0] == ("label", "Barry Hughes:")
    assert ("sentence", "Document [1](Title: X) Text here.") in kinds


def test_join_keeps_paragraph_breaks_of_dropped_text() -> None:
    seg = split_text("A one. A two.\n\nB one.\nC one.")
    texts = [a.text for a in seg.atoms]
    assert join_atoms(seg, [texts[0], None, None, texts[3]]) == "A one.\n\nC one."
    assert join_atoms(seg, [None] * 4) == ""


@given(st.text(max_size=400))
def test_join_with_everything_kept_is_the_identity(text: str) -> None:
    seg = split_text(text)
    if seg.atoms:
        assert join_atoms(seg, [a.text for a in seg.atoms]) == text


@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\t`{}[]|:\"'。")), max_size=300))
def test_atoms_cover_all_non_space_text(text: str) -> None:
    seg = split_text(text)
    assert "".join("".join(a.text.split()) for a in seg.atoms) == "".join(text.split())
    assert all(not a.after.strip() for a in seg.atoms)


@settings(deadline=None)  # the first example loads the encoding
@given(st.text(alphabet=st.sampled_from(list("ab Zé中🎉 .!?\n\t`{}|:\"'。")), max_size=300))
def test_atom_counts_from_one_pass_add_up_to_the_text(text: str) -> None:
    """Every token of the text counts for exactly one atom, but those that end in the whitespace before
    the first atom."""
    seg = split_text(text)
    ends = token_ends(text, "gpt-4o")
    counts = atom_tokens(seg, ends)
    assert len(counts) == len(seg) and all(n >= 0 for n in counts)
    in_lead = int((ends <= len(seg.lead)).sum()) if len(seg) else len(ends)
    assert sum(counts) + in_lead == count_tokens(text, "gpt-4o")


def test_an_atom_costs_about_what_it_costs_alone() -> None:
    text = (
        "Alice: The meeting starts now. We review the budget.\n"
        "Bob: Numbers first, please! The totals are in the table.\n\n"
        "Document [2](Title: Help! (album)) Help! is the fifth album by the Beatles."
    )
    seg = split_text(text)
    for atom, tokens in zip(seg.atoms, atom_tokens(seg, token_ends(text, "gpt-4o")), strict=True):
        alone = count_tokens(atom.text + "\n" * min(atom.after.count("\n"), 2), "gpt-4o")
        assert abs(tokens - alone) <= 1, atom
