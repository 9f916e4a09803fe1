"""How a prompt's text becomes units and how a choice of units becomes text again.

``Layout`` splits every compressible slot into atoms (``occ_research._text``), groups sentences into units at
the strategy's granularity (speaker labels charged once per line), counts them, and renders a choice back
into the slots' texts with their original whitespace; protected atoms always come back as they were. With an
``order`` other than "original", the kept passages of each text are rearranged by relevance (``_order.py``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence

import numpy as np

from .._messages import Slot, default_question, find_question
from .._text import Segmented, join_atoms, protected_blocks, split_text
from .._tokens import TokenMemo
from ._order import reorder
from ._params import Granularity, Order
from ._policy import OMITTED, SlotPlan
from ._selection import Block, Surroundings, Unit

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
    """Atoms of every slot, the units built from them, and how to render a choice back into texts.

    ``plans`` (``_policy.slot_plans``) says per slot whether its text may change and which spans stay as
    they are. Slots that stay are still split (lazily, see ``surroundings``) so that a strategy may read them:
    dedup finds the originals of repeats there.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        plans: Sequence[SlotPlan],
        granularity: Granularity,
        model: str,
        order: Order = "original",
        memo: TokenMemo | None = None,
    ) -> None:
        self.slots = slots
        self.plans = plans
        self.granularity = granularity
        self.order = order
        memo = TokenMemo(model) if memo is None else memo
        self.segmented: list[Segmented | None] = []
        self.members: list[tuple[int, tuple[int, ...]]] = []  # per unit: slot index, atom indices
        units: list[Unit] = []
        labels: dict[tuple[int, int], tuple[int, int]] = {}  # (slot, line) -> its speaker label: id, tokens
        for k, slot in enumerate(slots):
            if not plans[k].free:
                self.segmented.append(None)
                continue
            seg = split_text(slot.text, plans[k].protected)
            self.segmented.append(seg)
            tokens = atom_tokens(seg, memo.ends(slot.text))
            for i in (i for i, kind in enumerate(seg.kinds) if kind == "label"):
                labels[(k, seg.lines[i])] = (len(labels), tokens[i])
            for atom_ids in _unit_atoms(seg, granularity):
                label, label_tokens = labels.get((k, seg.lines[atom_ids[0]]), (-1, 0))
                self.members.append((k, atom_ids))
                if len(atom_ids) == 1:
                    text, cost = seg.texts[atom_ids[0]], tokens[atom_ids[0]]
                else:
                    text, cost = _join_members(seg, atom_ids), sum(tokens[i] for i in atom_ids)
                units.append(Unit(len(units), text, cost, slot.message, slot.role, label, label_tokens))
        self.label_tokens = sum(n for _, n in labels.values())
        self.units = tuple(units)
        self._surroundings: Surroundings | None = None
        self._block_at: dict[int, tuple[int, int]] = {}  # block index -> (slot, atom) of a free block

    def surroundings(self) -> Surroundings:
        """The text around the units, split once on demand (see ``Surroundings``)."""
        if self._surroundings is None:
            self._surroundings = self._survey()
        return self._surroundings

    def _survey(self) -> Surroundings:
        context: list[Unit] = []
        placed: list[tuple[tuple[int, int], Unit]] = []
        blocks: list[Block] = []
        units_of: dict[int, list[tuple[int, Unit]]] = {}
        for unit, (k, atom_ids) in zip(self.units, self.members, strict=True):
            units_of.setdefault(k, []).append((atom_ids[0], unit))
        for k, slot in enumerate(self.slots):
            seg = self.segmented[k] or split_text(slot.text)
            detected = {slot.text[s:e] for s, e in protected_blocks(slot.text)}
            # what the policy protects (a user's instructions, the question) is never replaced
            kept_whole = {slot.text[s:e] for s, e in self.plans[k].protected}
            for i, (kind, text) in enumerate(zip(seg.kinds, seg.texts, strict=True)):
                if kind == "protected" and text in detected:
                    free = self.segmented[k] is not None and text not in kept_whole
                    if free:
                        self._block_at[len(blocks)] = (k, i)
                    blocks.append(Block(len(blocks), slot.message, text, free))
            if self.segmented[k] is not None:
                placed.extend(((k, first), unit) for first, unit in units_of.get(k, ()))
                continue
            for atom_ids in _unit_atoms(seg, self.granularity):
                unit = Unit(-1 - len(context), _join_members(seg, atom_ids), 0, slot.message, slot.role)
                context.append(unit)
                placed.append(((k, atom_ids[0]), unit))
        placed.sort(key=lambda p: p[0])
        return Surroundings(tuple(u for _, u in placed), tuple(blocks))

    def render(
        self,
        kept: Mapping[int, str],
        blocks: Mapping[int, str] | None = None,
        scores: Sequence[float] | None = None,
    ) -> list[str]:
        """The slots' texts with the ``kept`` units (index -> text to emit), and the protected blocks as
        they were, but for ``blocks`` (index -> marker), honoured only for a free block that repeats an
        earlier block exactly (nothing is lost). A slot that had text never comes back empty. With
        ``scores`` (per unit) and an ``order`` other than "original", the kept passages are rearranged."""
        pieces: list[list[str | None]] = [
            [t if kind == "protected" else None for t, kind in zip(seg.texts, seg.kinds, strict=True)]
            if seg
            else []
            for seg in self.segmented
        ]
        for k, seg in enumerate(self.segmented):
            if seg is not None and self.plans[k].shorten_json:
                for i, (kind, text) in enumerate(zip(seg.kinds, seg.texts, strict=True)):
                    if kind == "protected":
                        pieces[k][i] = shorten_json_arrays(text, self.plans[k].shorten_json)
        if blocks:
            survey = self.surroundings()
            for index, marker in blocks.items():
                block = survey.blocks[index]
                if block.free and any(b.text == block.text for b in survey.blocks[:index]):
                    k, i = self._block_at[index]
                    pieces[k][i] = marker
        for unit, (k, atom_ids) in zip(self.units, self.members, strict=True):
            if unit.index in kept:
                emitted = kept[unit.index]
                if emitted == unit.text:
                    texts_k = self.segmented[k].texts  # type: ignore[union-attr]
                    for i in atom_ids:
                        pieces[k][i] = texts_k[i]
                elif emitted:
                    pieces[k][atom_ids[0]] = emitted
        ranks = self._ranks(kept, scores) if self.order != "original" and scores is not None else None
        texts = []
        for k, (slot, seg, slot_pieces) in enumerate(zip(self.slots, self.segmented, pieces, strict=True)):
            if seg is None:
                texts.append(slot.text)
                continue
            lines_kept = {
                line
                for line, kind, piece in zip(seg.lines, seg.kinds, slot_pieces, strict=True)
                if piece is not None and kind != "label"
            }
            for i, (kind, line) in enumerate(zip(seg.kinds, seg.lines, strict=True)):
                if kind == "label" and slot_pieces[i] is None and line in lines_kept:
                    slot_pieces[i] = seg.texts[i]
            if ranks is not None and k in ranks:
                seg, slot_pieces = reorder(seg, slot_pieces, ranks[k], self.order)
            text = join_atoms(seg, slot_pieces)
            if not text.strip() and slot.text.strip():  # never an empty message: a marker, if cheaper
                text = OMITTED if len(OMITTED) < len(slot.text.strip()) else slot.text
            texts.append(text)
        return texts

    def _ranks(self, kept: Mapping[int, str], scores: Sequence[float]) -> dict[int, dict[int, float]]:
        """Per slot, the score of every atom of a kept unit (atom index -> its unit's score)."""
        ranks: dict[int, dict[int, float]] = {}
        for unit, (k, atom_ids) in zip(self.units, self.members, strict=True):
            if unit.index in kept and unit.index < len(scores):
                ranks.setdefault(k, {}).update(dict.fromkeys(atom_ids, float(scores[unit.index])))
        return ranks


def atom_tokens(seg: Segmented, ends: np.ndarray) -> list[int]:
    """The tokens of each atom of a text split into ``seg``, given where the text's tokens end
    (``TokenMemo.ends``): a token counts for the atom its last character falls in, or after, so an atom
    also pays for the whitespace that follows it (a kept sentence brings its line break). Tokens before the
    first atom count for none."""
    if not len(seg):
        return []
    lengths = np.fromiter(map(len, seg.texts), np.int64, len(seg)) + np.fromiter(
        map(len, seg.afters), np.int64, len(seg)
    )
    starts = np.concatenate(([len(seg.lead)], len(seg.lead) + np.cumsum(lengths[:-1])))
    # the atom holding each token's last character (-1: the whitespace before the first atom)
    owner = np.searchsorted(starts, ends - 1, side="right") - 1
    counts: list[int] = np.bincount(owner[owner >= 0], minlength=len(seg)).tolist()
    return counts


def _unit_atoms(seg: Segmented, granularity: Granularity) -> list[tuple[int, ...]]:
    """The sentence atoms of each unit: one each, or the runs on one line (paragraph) or in one block
    (passage); lines and blocks only grow along the atoms, so a unit is a run of sentences with one key."""
    sentences = [i for i, kind in enumerate(seg.kinds) if kind == "sentence"]
    if granularity == "sentence":
        return [(i,) for i in sentences]
    key = seg.lines if granularity == "paragraph" else seg.blocks
    return [tuple(run) for _, run in itertools.groupby(sentences, key=key.__getitem__)]


def _join_members(seg: Segmented, atom_ids: Sequence[int]) -> str:
    texts, afters, last = seg.texts, seg.afters, atom_ids[-1]
    return "".join(texts[i] + (afters[i] if i != last else "") for i in atom_ids)


def shorten_json_arrays(text: str, items: int) -> str:
    """A JSON text whose arrays longer than ``items`` keep ``items`` of them, the first half and the last,
    with a string in between saying how many were removed; the text as it was when it is not JSON or nothing is shorter.
    Indented JSON stays indented (two spaces), compact JSON compact."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    changed = False

    def shorten(node: object) -> object:
        nonlocal changed
        if isinstance(node, dict):
            return {key: shorten(item) for key, item in node.items()}
        if isinstance(node, list):
            node = [shorten(item) for item in node]
            if len(node) > items:
                head, tail = (items + 1) // 2, items // 2
                changed = True
                removed = len(node) - head - tail
                return [*node[:head], f"[{removed} items removed]", *node[len(node) - tail :]]
        return node

    shortened = shorten(value)
    if not changed:
        return text
    out = json.dumps(shortened, ensure_ascii=False, indent=2 if "\n" in text.strip() else None)
    return out if len(out) < len(text) else text
