"""Splitting text into atoms (sentences, speaker labels, protected blocks) and joining them back.

Compression keeps or drops whole atoms, so where an atom starts and ends decides what can break. The rules:

- fenced code blocks, JSON blocks and Markdown tables are *protected*: one atom each, never altered;
- every line is split into sentences on its own, so list items and headings stay separate;
- a ``Speaker Name:`` prefix is a *label* atom: it is kept when any sentence of its line is kept;
- sentence ends are ``.!?…`` followed by space and a capital, digit or opening mark, except after common
  abbreviations, single-letter initials and list markers; CJK ``。！？`` end a sentence without a space.

Joining puts back the original whitespace: between two kept atoms it uses the widest separator that stood
between them (a paragraph break survives when the text between was dropped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

AtomKind = Literal["sentence", "label", "protected"]


@dataclass(frozen=True, slots=True)
class Atom:
    """A piece of text that is kept or dropped as a whole."""

    text: str
    after: str  # the whitespace that follows it, up to the next atom or the end of the text
    line: int  # index of the line it starts on
    block: int  # index of the blank-line separated block it starts in
    kind: AtomKind


@dataclass(frozen=True, slots=True)
class Segmented:
    """A text split into atoms, stored column by column: atom ``i`` is ``texts[i]``, ``afters[i]``,
    ``lines[i]``, ``blocks[i]``, ``kinds[i]`` (``atom(i)`` as one record).

    Columns rather than one object per atom: tuples of strings and integers are not tracked by the garbage
    collector, so a 100k-token prompt's tens of thousands of atoms do not set off full collections while it
    is being compressed (one ``Atom`` object each made them cost 20-50% more time).
    """

    lead: str  # whitespace before the first atom
    texts: tuple[str, ...]
    afters: tuple[str, ...]  # the whitespace that follows each atom, up to the next one or the end
    lines: tuple[int, ...]  # the index of the line each atom starts on
    blocks: tuple[int, ...]  # the index of the blank-line separated block each atom starts in
    kinds: tuple[AtomKind, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def atom(self, i: int) -> Atom:
        return Atom(self.texts[i], self.afters[i], self.lines[i], self.blocks[i], self.kinds[i])

    @property
    def atoms(self) -> tuple[Atom, ...]:
        """Every atom as a record (for reading and tests; the hot paths read the columns)."""
        return tuple(self.atom(i) for i in range(len(self)))


_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_TABLE_LINE = re.compile(r"^[ \t]*\|.*\|[ \t]*$", re.MULTILINE)
_JSON_START = re.compile(r"^[ \t]*[{\[]", re.MULTILINE)
_NEWLINE = re.compile(r"\n")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_LABEL = re.compile(r"[^\W\d_][\w .'’\-]{0,48}?:[ \t]+(?=\S)")
#: a sentence end: ``.!?…`` (and closing marks) then space and a capital, digit, opening mark or non-ASCII
#: non-space character (``_is_boundary`` then rules out abbreviations and the like), or a CJK end, space or
#: not. Written to start with one character class, so that the regex engine jumps from candidate to
#: candidate (an alternation at the start makes it try every position: four times slower on long text).
_SENTENCE_END = re.compile(
    r"[.!?…。！？](?:(?<=[.!?…])[.!?…]*[\"'”’)\]]*\s+(?=[A-Z0-9\"'(\[]|[^\x00-\x7f\s])"
    r"|(?<=[。！？])[。！？]*[」』”’)）]*\s*)"
)
_OPENERS = "\"'“‘([¿¡"
#: a passage header's title still open: "Document [5](Title: Help!" ends no sentence, its title goes on
_OPEN_TITLE = re.compile(r"\((?:title|source):[^()\n]*(?:\([^()\n]*\)[^()\n]*)*$", re.IGNORECASE)
_LIST_MARKER = re.compile(r"(?:\d{1,3}|[A-Za-z]|[ivxlcIVXLC]{1,5})[.)]")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf al fig figs no nos vol ed eds inc ltd co corp "
    "dept approx est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m ph.d gen col "
    "lt sgt rev hon".split()
)
CJK_CHARACTER = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def is_cjk_heavy(text: str) -> bool:
    """True when CJK characters make up over a quarter of the non-space characters."""
    letters = len(text) - text.count(" ")
    return letters > 0 and len(CJK_CHARACTER.findall(text)) * 4 > letters


def _fenced_blocks(text: str) -> Iterable[tuple[int, int]]:
    if "```" not in text and "~~~" not in text:  # a quick look saves a scan of every line start
        return
    pos = 0
    while (opening := _FENCE_OPEN.search(text, pos)) is not None:
        fence = opening.group(1)
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        close = closing.search(text, opening.end() + 1)
        end = close.end() if close else len(text)  # an unclosed fence runs to the end, as in Markdown
        yield opening.start(), end
        pos = end + 1


def _tables(text: str) -> Iterable[tuple[int, int]]:
    """Runs of two or more consecutive lines that start and end with a pipe."""
    if "|" not in text:
        return
    run_start = run_end = -1
    rows = 0
    for match in _TABLE_LINE.finditer(text):
        if rows and match.start() == run_end + 1:
            run_end, rows = match.end(), rows + 1
            continue
        if rows >= 2:
            yield run_start, run_end
        run_start, run_end, rows = match.start(), match.end(), 1
    if rows >= 2:
        yield run_start, run_end


_JSON = json.JSONDecoder()


def _json_blocks(text: str) -> Iterable[tuple[int, int]]:
    """The whole text if it is JSON, else every line-initial object or array that parses to its line end."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            json.loads(stripped)
        except ValueError:
            pass
        else:
            yield text.index(stripped[0]), len(text.rstrip())
            return
    for match in _JSON_START.finditer(text):
        first = match.end() - 1
        try:
            value, value_end = _JSON.raw_decode(text, first)
        except ValueError:
            continue
        line_end = text.find("\n", value_end)
        line_end = len(text) if line_end < 0 else line_end
        if isinstance(value, dict | list) and not text[value_end:line_end].strip():
            yield first, value_end


def protected_blocks(text: str) -> list[tuple[int, int]]:
    """Character spans of fenced code, JSON blocks and Markdown tables, sorted and non-overlapping."""
    return merge_spans([*_fenced_blocks(text), *_tables(text), *_json_blocks(text)])


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _is_boundary(sentence_so_far: str) -> bool:
    """Whether a sentence end that ``_SENTENCE_END`` found ends a sentence (``sentence_so_far`` runs from
    the sentence's first character to that end): not after a list marker, inside an open passage title,
    after a single-letter initial or after a common abbreviation."""
    if _LIST_MARKER.fullmatch(sentence_so_far) or _OPEN_TITLE.search(sentence_so_far):
        return False
    if not sentence_so_far.endswith("."):
        return True
    words = sentence_so_far.rstrip(".!?…\"'”’)] \t").rsplit(None, 1)
    last_word = words[-1].lstrip(_OPENERS).lower() if words else ""
    if len(last_word) == 1 and last_word.isalpha():
        return False  # an initial: "J. K. Rowling"
    return last_word not in _ABBREVIATIONS


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of one line of text, without surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    _add_sentences(text, 0, len(text), spans)
    return [(offset + start, offset + end) for start, end in spans] if offset else spans


def _add_sentences(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    """Append the sentence spans of the line ``text[start:end]`` (no newline in it) to ``spans``."""
    line = text[start:end]
    start += len(line) - len(line.lstrip())
    for match in _SENTENCE_END.finditer(text, start, end):
        terminator_end = match.start() + len(match.group().rstrip())
        if match.group()[0] in "。！？" or _is_boundary(text[start:terminator_end]):
            spans.append((start, terminator_end))
            start = match.end()
    if start < end:
        spans.append((start, start + len(text[start:end].rstrip())))


def split_text(text: str, protected: Sequence[tuple[int, int]] = ()) -> Segmented:
    """Split ``text`` into atoms; ``protected`` adds spans (e.g. the question) to the detected blocks."""
    blocks = merge_spans([*protected_blocks(text), *protected])
    spans: list[tuple[int, int, AtomKind]] = []
    pos = 0
    for block_start, block_end in [*blocks, (len(text), len(text))]:
        spans.extend(_free_spans(text, pos, block_start))
        if block_end > block_start:
            spans.append((block_start, block_end, "protected"))
        pos = block_end
    newlines = np.array([m.start() for m in _NEWLINE.finditer(text)], dtype=np.int64)
    blanks = np.array([m.start() for m in _BLANK_LINE.finditer(text)], dtype=np.int64)
    starts = [start for start, _, _ in spans]
    ends = [end for _, end, _ in spans]
    next_starts = [*starts[1:], len(text)] if spans else []
    at = np.array(starts, dtype=np.int64)
    return Segmented(
        lead=text[: starts[0]] if spans else text,
        texts=tuple(text[start:end] for start, end in zip(starts, ends, strict=True)),
        afters=tuple(text[end:following] for end, following in zip(ends, next_starts, strict=True)),
        lines=tuple(np.searchsorted(newlines, at).tolist()),
        blocks=tuple(np.searchsorted(blanks, at).tolist()),
        kinds=tuple(kind for _, _, kind in spans),
    )


def _free_spans(text: str, start: int, end: int) -> list[tuple[int, int, AtomKind]]:
    spans: list[tuple[int, int, AtomKind]] = []
    line_start = start
    while line_start < end:
        line_end = text.find("\n", line_start, end)
        line_end = end if line_end < 0 else line_end
        sentence_start = line_start
        at_line_start = line_start == 0 or text[line_start - 1] == "\n"
        label = _LABEL.match(text, line_start, line_end) if at_line_start else None
        if label and len(label.group().split()) <= 5:
            label_end = line_start + len(label.group().rstrip())
            spans.append((line_start, label_end, "label"))
            sentence_start = label.end()
        sentences: list[tuple[int, int]] = []
        _add_sentences(text, sentence_start, line_end, sentences)
        spans.extend((s, e, "sentence") for s, e in sentences)
        line_start = line_end + 1
    return spans


def join_atoms(segmented: Segmented, pieces: Sequence[str | None]) -> str:
    """Rebuild text from the atoms: ``pieces[i]`` is the text emitted for atom ``i``, ``None`` if dropped."""
    afters = segmented.afters
    out: list[str] = []
    previous = -1
    for i, piece in enumerate(pieces):
        if piece is None:
            continue
        if previous < 0:
            out.append(segmented.lead)
        elif i == previous + 1:
            out.append(afters[previous])
        else:
            out.append(max(afters[previous:i], key=lambda s: s.count("\n")))
        out.append(piece)
        previous = i
    if previous < 0:
        return ""
    out.append(afters[-1])
    return "".join(out)
