"""How a prompt's text becomes units and how a choice of units becomes text again.

``Layout`` splits every compressible slot into atoms (``occ_research._text``), groups sentences into units at
the strategy's granularity (speaker labels charged once per line), counts them, and renders a choice back
into the slots' texts with their original whitespace; protected atoms always come back as they were.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

from .._messages import (
    INSTRUCTION_ROLES,
    Message,
    Slot,
    default_question,
    find_question,
    replace_texts,
)
from .._text import Segmented, join_atoms, split_text
from .._tokens import count_messages_tokens, count_text_tokens
from ._params import Granularity
from ._selection import Choice, Unit

QuestionSpan = tuple[int, tuple[int, int]]  # slot index, (start, end) in its text


def resolve_question(
    prompt: object, slots: Sequence[Slot], question: str | None
) -> tuple[str, QuestionSpan | None]:
    """The question text and where it stands (slot, span) in the prompt, if it stands there verbatim.

    None means the default: the last paragraph of the last user turn, or no question for plain text.
    """
    if question is None and isinstance(prompt, str):
        return "", None
    if question is None:
        located = default_question(slots)
        return (slots[located[0]].text[slice(*located[1])] if located else ""), located
    return question, find_question(slots, question)


class Layout:
    """Atoms of every slot, the units built from them, and how to render a choice back into texts."""

    def __init__(
        self,
        slots: Sequence[Slot],
        question: QuestionSpan | None,
        compress_system: bool,
        granularity: Granularity,
        model: str,
    ) -> None:
        self.slots = slots
        self.segmented: list[Segmented | None] = []
        self.members: list[tuple[int, tuple[int, ...]]] = []  # per unit: slot index, atom indices
        texts: list[str] = []
        counted: list[str] = []
        lines: list[tuple[int, int]] = []
        labels: dict[tuple[int, int], str] = {}  # (slot, line) -> speaker label on that line
        roles: list[tuple[int, str]] = []
        for k, slot in enumerate(slots):
            if slot.role in INSTRUCTION_ROLES and not compress_system:
                self.segmented.append(None)
                continue
            protected = [question[1]] if question and question[0] == k else []
            seg = split_text(slot.text, protected)
            self.segmented.append(seg)
            for atom in seg.atoms:
                if atom.kind == "label":
                    labels[(k, atom.line)] = atom.text
            sentences = [i for i, atom in enumerate(seg.atoms) if atom.kind == "sentence"]
            # lines and blocks only grow along the atoms, so a unit is a run of sentences with the same key
            for _, run in itertools.groupby(sentences, key=_unit_key(seg, granularity)):
                atom_ids = tuple(run)
                self.members.append((k, atom_ids))
                texts.append(_join_members(seg, atom_ids))
                lines.append((k, seg.atoms[atom_ids[0]].line))
                roles.append((slot.message, slot.role))
                # a kept unit also pays for the line break after it, so count that too
                counted.append(texts[-1] + "\n" * min(seg.atoms[atom_ids[-1]].after.count("\n"), 2))
        tokens = count_text_tokens(counted, model)
        label_ids = {key: n for n, key in enumerate(labels)}
        label_tokens = dict(
            zip(labels, count_text_tokens([t + " " for t in labels.values()], model), strict=True)
        )
        self.label_tokens = sum(label_tokens.values())
        self.units = tuple(
            Unit(i, text, n, message, role, label_ids.get(line, -1), label_tokens.get(line, 0))
            for i, (text, n, (message, role), line) in enumerate(
                zip(texts, tokens, roles, lines, strict=True)
            )
        )

    def render(self, kept: Mapping[int, str]) -> list[str]:
        pieces: list[list[str | None]] = [
            [a.text if a.kind == "protected" else None for a in seg.atoms] if seg else []
            for seg in self.segmented
        ]
        for unit, (k, atom_ids) in zip(self.units, self.members, strict=True):
            if unit.index in kept:
                emitted = kept[unit.index]
                if emitted == unit.text:
                    for i in atom_ids:
                        pieces[k][i] = self.segmented[k].atoms[i].text  # type: ignore[union-attr]
                elif emitted:
                    pieces[k][atom_ids[0]] = emitted
        texts = []
        for slot, seg, slot_pieces in zip(self.slots, self.segmented, pieces, strict=True):
            if seg is None:
                texts.append(slot.text)
                continue
            lines_kept = {
                a.line
                for a, p in zip(seg.atoms, slot_pieces, strict=False)
                if p is not None and a.kind != "label"
            }
            for i, atom in enumerate(seg.atoms):
                if atom.kind == "label" and slot_pieces[i] is None and atom.line in lines_kept:
                    slot_pieces[i] = atom.text
            texts.append(join_atoms(seg, slot_pieces))
        return texts


def _unit_key(seg: Segmented, granularity: Granularity) -> Callable[[int], int]:
    atoms = seg.atoms
    if granularity == "paragraph":
        return lambda i: atoms[i].line
    if granularity == "passage":
        return lambda i: atoms[i].block
    return lambda i: i


def _join_members(seg: Segmented, atom_ids: Sequence[int]) -> str:
    atoms = seg.atoms
    return "".join(atoms[i].text + (atoms[i].after if i != atom_ids[-1] else "") for i in atom_ids)


def fit_after_render(
    layout: Layout,
    choice: Choice,
    messages: list[Message],
    slots: Sequence[Slot],
    target: int,
    model: str,
    memo: dict[str, int],
) -> tuple[Choice, list[Message], int]:
    """Drop the least valuable kept units until the rendered prompt fits ``target``."""
    kept = dict(choice.kept)
    scores = choice.scores

    def rank(i: int) -> tuple[float, int]:  # lowest first: drop order
        return (scores[i], -i) if scores is not None else (0.0, -i)

    while True:
        out = replace_texts(messages, slots, layout.render(kept))
        compressed = count_messages_tokens(out, model, memo)
        if compressed <= target or not kept:
            return Choice(kept, scores, choice.note), out, compressed
        excess = compressed - target
        for i in sorted(kept, key=rank):
            excess -= layout.units[i].tokens
            del kept[i]
            if excess <= 0:
                break
