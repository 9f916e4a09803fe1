"""Where the kept passages go: in their original order, most relevant first, or most relevant at the edges.

Readers use the start and the end of a long context best and the middle worst ("lost in the middle"), so
putting the passages that matter where they look can help them more than keeping more text. Only whole
passages move, and only within one message's text:

- a *passage* is a blank-line separated block; when a message's text has passage headers
  (``Document [3](Title: ...)``, ``[3]``, ``# Heading``, ``Title: ...``), a passage is a header block with
  the header-less blocks after it, and the blocks before the first header (an instruction) stay in place;
  without headers, the first and the last block of the text stay in place (the instruction, the question);
- a block that holds a protected atom (code, JSON, a table, the question, instructions the chat policy
  protects) is a wall: passages trade places only with passages between the same two walls;
- a passage's relevance is the best score among its kept units; passages with nothing kept go last (they
  render as nothing); ties keep their original order.

The separators stay where they were (the whitespace after the n-th passage is still after the n-th
passage), so the text around the passages reads as before.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from .._text import Segmented
from ._params import Order

#: the header that opens a passage: a numbered document or source, a bracketed number, a Markdown
#: heading or a title field (group 1 is the header itself, what a kept sentence of the passage brings along;
#: a title may hold one level of parentheses: "(Title: 21 Guns (song))")
_NUMBERED = r"(?:(?:document|doc|passage|source|chunk|context|result)\s*\[?#?\d+\]?:?|\[\d+\])"
HEADER = re.compile(
    rf"^\s*((?:{_NUMBERED}(?:\s*\((?:title|source):(?:[^()\n]|\([^()\n]{{0,100}}\)){{0,200}}\))?"
    r"|#{1,6}\s[^\n]{1,200}$"
    r"|title:\s[^\n]{1,200}$))",
    re.IGNORECASE,
)
#: a numbered passage header ("Document [3]", "[3]"): retrieved text, however short (a Markdown heading or
#: a title field may just as well open an instruction)
NUMBERED_PASSAGE = re.compile(rf"^\s*{_NUMBERED}", re.IGNORECASE)


def arrange(relevance: Sequence[float], order: Order) -> list[int]:
    """The passages' new order (indices into ``relevance``, which is in document order).

    ``relevance``: best first. ``edges``: the best first, the second best last, the third second, the
    fourth second to last, and so on, so the least relevant end up in the middle.
    """
    ranked = sorted(range(len(relevance)), key=lambda i: (-relevance[i], i))
    if order == "original":
        return list(range(len(relevance)))
    if order == "relevance":
        return ranked
    return ranked[0::2] + ranked[1::2][::-1]


def movable_passages(seg: Segmented) -> list[list[range]]:
    """Per stretch between walls, the passages that may trade places there (atom ranges, in order)."""
    blocks = _block_ranges(seg)
    wall = [any(seg.kinds[i] == "protected" for i in block) for block in blocks]
    header = [not w and _opens_with_header(seg, block.start) for w, block in zip(wall, blocks, strict=True)]
    headed = any(header)
    runs: list[list[range]] = []
    current: list[range] = []
    for j, block in enumerate(blocks):
        fixed = wall[j] or (not headed and j in (0, len(blocks) - 1))
        if fixed:
            runs, current = _flush(runs, current), []
        elif not headed or header[j]:
            current.append(block)
        elif current:  # a block without a header belongs to the passage of the header before it
            current[-1] = range(current[-1].start, block.stop)
        # else: text before the first header of the stretch (an instruction) stays where it is
    return _flush(runs, current)


def reorder(
    seg: Segmented, pieces: Sequence[str | None], ranks: Mapping[int, float], order: Order
) -> tuple[Segmented, list[str | None]]:
    """The slot's atoms and pieces (``Layout.render``'s, ``None`` = dropped) with the kept passages in
    ``order``; ``ranks`` gives the score of each kept atom. Unchanged when nothing moves."""
    index = list(range(len(seg)))
    afters = list(seg.afters)
    for run in movable_passages(seg):
        kept = [p for p in run if any(pieces[i] is not None for i in p)]
        if len(kept) < 2:
            continue
        relevance = [max(ranks.get(i, -math.inf) for i in p if pieces[i] is not None) for p in kept]
        moved = [kept[k] for k in arrange(relevance, order)] + [p for p in run if p not in kept]
        if moved == run:
            continue
        separators = [seg.afters[p[-1]] for p in run]  # they stay with the place, not the passage
        atoms: list[int] = []
        for passage, separator in zip(moved, separators, strict=True):
            atoms.extend(passage)
            afters[passage[-1]] = separator
        index[run[0].start : run[-1].stop] = atoms
    if index == list(range(len(seg))):
        return seg, list(pieces)
    arranged = Segmented(
        lead=seg.lead,
        texts=tuple(seg.texts[i] for i in index),
        afters=tuple(afters[i] for i in index),
        lines=tuple(seg.lines[i] for i in index),
        blocks=tuple(seg.blocks[i] for i in index),
        kinds=tuple(seg.kinds[i] for i in index),
    )
    return arranged, [pieces[i] for i in index]


def _block_ranges(seg: Segmented) -> list[range]:
    ranges: list[range] = []
    start = 0
    for i in range(1, len(seg) + 1):
        if i == len(seg) or seg.blocks[i] != seg.blocks[start]:
            ranges.append(range(start, i))
            start = i
    return ranges


def _opens_with_header(seg: Segmented, first: int) -> bool:
    text = seg.texts[first]
    if seg.kinds[first] == "label" and first + 1 < len(seg):  # "Title: x" is a label, then a sentence
        text += seg.afters[first] + seg.texts[first + 1]
    return HEADER.match(text) is not None


def _flush(runs: list[list[range]], current: list[range]) -> list[list[range]]:
    return [*runs, current] if len(current) > 1 else runs
