"""Meeting a budget by measurement: the rendered prompt is counted, never the sum of its units.

Units are counted from one encoding pass over each text (``Layout``), so their counts add up to the
text's; the rendered prompt still differs from their sum by a few tokens, because kept units meet across
dropped text (separators, merges at the new token boundaries). ``fit_to_target`` feeds the measured gap
back into the budget the strategy chooses with; ``fit_after_render`` is its last resort.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from .._messages import Message, Slot, replace_texts
from .._tokens import count_messages_tokens
from ._layout import Layout
from ._prepare import Prepared
from ._selection import HEAD_TRIES, WORD, Candidates, Choice, Unit, head_floor

Fitted = tuple[Choice, list[Message], int]  # the choice, the messages it renders to, their tokens


def fit_to_target(
    choose: Callable[[Candidates], Choice], candidates: Candidates, layout: Layout, job: Prepared, target: int
) -> Fitted:
    """Choose, render and count; adjust the budget by the measured gap until the result fits snugly.

    The gap goes back into the budget: added when under by more than 2%, taken off (doubling each time) when
    over, for at most six rounds. A gap still left (the rounds can swing between a sentence too many and
    one too few, which at a small target is more than 5% of it) is spent by ``top_up``. As a last resort
    the least valuable units are dropped until the prompt fits.
    """
    tolerance = max(1, target // 50)
    best: Fitted | None = None
    overshoot_scale = 1
    allowed = candidates.budget or 0
    for _ in range(6):
        choice = choose(candidates)
        out = replace_texts(job.messages, job.slots, layout.render(choice.kept, choice.blocks, choice.scores))
        compressed = count_messages_tokens(out, job.model, job.memo)
        if compressed <= target:
            if best is None or compressed > best[2]:
                best = (choice, out, compressed)
            if target - compressed <= tolerance:
                break
            budget = allowed + (target - compressed)
        else:
            budget = allowed - overshoot_scale * (compressed - target)
            overshoot_scale *= 2
        budget = max(0, budget)
        if budget == allowed:
            break
        allowed = budget
        candidates = dataclasses.replace(candidates, budget=budget)
    if best is not None:
        return top_up(best, candidates.units, layout, job, target) if target - best[2] > tolerance else best
    return fit_after_render(layout, choice, job.messages, job.slots, target, job.model, job.memo)


def fit_after_render(
    layout: Layout,
    choice: Choice,
    messages: list[Message],
    slots: Sequence[Slot],
    target: int,
    model: str,
    memo: dict[str, int],
) -> Fitted:
    """Drop the least valuable kept units until the rendered prompt fits ``target``."""
    kept = dict(choice.kept)
    scores = choice.scores

    def rank(i: int) -> tuple[float, int]:  # lowest first: drop order
        return (scores[i], -i) if scores is not None else (0.0, -i)

    while True:
        out = replace_texts(messages, slots, layout.render(kept, choice.blocks, scores))
        compressed = count_messages_tokens(out, model, memo)
        if compressed <= target or not kept:
            return Choice(kept, scores, choice.note, choice.blocks), out, compressed
        excess = compressed - target
        for i in sorted(kept, key=rank):
            excess -= layout.units[i].tokens
            del kept[i]
            if excess <= 0:
                break


def top_up(fitted: Fitted, units: Sequence[Unit], layout: Layout, job: Prepared, target: int) -> Fitted:
    """Spend what a fitted prompt leaves under ``target`` on the head of the best-scoring unit that is not
    kept whole (the next ones, up to ``HEAD_TRIES``, if its header alone does not fit: ``head_floor``),
    sized by rendering and counting (a binary search over its words), so that the budget is met by the
    prompt as sent rather than by the sum of unit counts. Only for choices that carry scores
    and keep units as they are or cut to a head; anything else is returned unchanged."""
    choice, _, compressed = fitted
    scores = choice.scores
    if scores is None:
        return fitted
    open_units = [
        u
        for u in units
        if u.index < len(scores)
        and scores[u.index] > -math.inf
        and choice.kept.get(u.index, "") != u.text
        and u.text.startswith(choice.kept.get(u.index, ""))
    ]
    open_units.sort(key=lambda u: (-scores[u.index], u.index))
    for unit in open_units[:HEAD_TRIES]:  # the next one only if the best has no head that fits
        words = WORD.findall(unit.text)
        kept_words = len(WORD.findall(choice.kept.get(unit.index, "")))
        best = fitted
        low, high = max(kept_words + 1, head_floor(unit.text)), len(words)
        while low <= high:  # the most words of the unit's head that still fit
            middle = (low + high) // 2
            kept = {**choice.kept, unit.index: "".join(words[:middle]).strip()}
            out = replace_texts(job.messages, job.slots, layout.render(kept, choice.blocks, scores))
            tokens = count_messages_tokens(out, job.model, job.memo)
            if tokens <= target:
                best = (dataclasses.replace(choice, kept=kept), out, tokens)
                low = middle + 1
            else:
                high = middle - 1
        if best[2] > compressed:
            return best
    return fitted
