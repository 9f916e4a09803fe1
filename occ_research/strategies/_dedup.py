"""Exact and near-duplicate removal across and within messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._tokens import count_text_tokens
from ._base import Strategy
from ._params import GRANULARITIES, param
from ._rankers import terms
from ._registry import register_strategy
from ._selection import Block, Candidates, Choice, Unit

_WORD_MULTIPLIER = np.uint64(1_000_003)
_FOLD = np.random.default_rng(0).integers(1, 1 << 63, size=512, dtype=np.uint64) | np.uint64(1)


@register_strategy("dedup")
@dataclass
class DedupStrategy(Strategy):
    """Removes exact and near-duplicate text, keeping the first occurrence.

    For repeated RAG chunks, pasted-again text, repeated tool outputs, a system prompt sent twice (with
    ``compress_system``).

    A unit is a duplicate when its normalised words equal an earlier unit's, or when the Jaccard similarity
    of their word shingles reaches ``threshold`` (MinHash with LSH finds candidates in near-linear time;
    each candidate is then checked exactly). The first occurrence stays; a run of later copies becomes one
    ``marker`` naming the message that holds the original (an empty marker drops them silently, and a
    marker is never used where it would cost more than the copy). Units shorter than ``min_words`` are never
    removed: "Yes." or "Thank you." repeat legitimately. Originals may stand in text that stays as it is (a
    system prompt, a recent turn, an earlier message in cache-stable mode). With ``blocks``, a protected
    block (code, JSON: a repeated tool output) that repeats an earlier one exactly becomes a marker too; the
    first stays, so nothing is lost. Dedup removes only duplicates and does not chase a budget: put a ranker
    after it in a pipeline for that.
    """

    fits_budget = False

    granularity: str = param("sentence", choices=GRANULARITIES)
    threshold: float = param(0.8, low=0.05, high=1.0)
    shingle_size: int = param(3, low=1, high=8)
    min_words: int = param(6, low=1)
    num_perm: int = param(64, low=8, high=512)
    marker: str = param("[repeated text removed: see message {message}]")
    blocks: bool = param(True)

    def _choose(self, candidates: Candidates) -> Choice:
        units = candidates.units
        survey = candidates.surroundings()
        # the text around the units (earlier messages that stay as they are) may hold the originals
        pool = survey.text if any(u.index < 0 for u in survey.text) else units
        found = self._find_duplicates(pool, candidates.seed)
        original_of = {pool[p].index: pool[o] for p, o in found.items() if pool[p].index >= 0}
        kept = {u.index: u.text for u in units if u.index not in original_of}
        removed = [u for u in units if u.index in original_of]
        if self.marker:
            kept.update(self._markers(units, original_of, candidates.model))
        blocks = self._repeated_blocks(survey.blocks, candidates.model) if self.blocks else {}
        note = f"removed {len(removed)} duplicate units ({sum(u.tokens for u in removed)} tokens)"
        if blocks:
            note += f" and {len(blocks)} repeated protected blocks"
        return Choice(kept, [0.0 if u.index in original_of else 1.0 for u in units], note, blocks)

    def _repeated_blocks(self, blocks: Sequence[Block], model: str) -> dict[int, str]:
        """Free protected blocks (code, JSON, tables) that repeat an earlier block exactly: a marker naming
        the message with the first, where the marker is cheaper."""
        first: dict[str, Block] = {}
        repeats: dict[int, str] = {}
        for block in blocks:
            if block.text not in first:
                first[block.text] = block
            elif block.free and len(terms(block.text)) >= self.min_words:
                marker = (self.marker or "[repeated block removed: see message {message}]").replace(
                    "{message}", str(first[block.text].message + 1)
                )
                repeats[block.index] = marker
        if not repeats:
            return {}
        costs = count_text_tokens(list(repeats.values()), model)
        sizes = count_text_tokens([blocks[i].text for i in repeats], model)
        return {i: m for (i, m), c, n in zip(repeats.items(), costs, sizes, strict=True) if c < n}

    def _find_duplicates(self, units: Sequence[Unit], seed: int) -> dict[int, int]:
        """Map the position of each duplicate unit to the position of the earlier unit it repeats."""
        words = [tuple(terms(u.text)) for u in units]
        original_of: dict[int, int] = {}
        first_with: dict[str, int] = {}
        candidates = [p for p, w in enumerate(words) if len(w) >= self.min_words]
        for i in candidates:
            normalised = " ".join(words[i])
            if normalised in first_with:
                original_of[i] = first_with[normalised]
            else:
                first_with[normalised] = i
        near = [i for i in candidates if i not in original_of and len(words[i]) >= self.shingle_size]
        if len(near) < 2 or self.threshold >= 1.0:
            return original_of
        shingles = self._shingles([words[i] for i in near])
        signatures = self._signatures(shingles, seed)
        bands, rows = _bands(self.num_perm, self.threshold)
        buckets: dict[tuple[int, int], tuple[int, ...]] = {}
        position_of = {i: p for p, i in enumerate(near)}
        sets: dict[int, frozenset[int]] = {}

        def shingle_set(i: int) -> frozenset[int]:  # built only for units that meet a candidate
            if i not in sets:
                sets[i] = frozenset(shingles[position_of[i]].tolist())
            return sets[i]

        # one 64-bit key per band: the band's rows folded with fixed odd multipliers (wrapping)
        folded = signatures[:, : bands * rows].reshape(len(near), bands, rows) * _FOLD[:rows]
        band_keys = folded.sum(axis=2, dtype=np.uint64)
        for position, i in enumerate(near):
            keys = list(enumerate(band_keys[position].tolist()))
            earlier = sorted({j for key in keys for j in buckets.get(key, ())})
            match = next(
                (j for j in earlier if _jaccard(shingle_set(i), shingle_set(j)) >= self.threshold), None
            )
            if match is not None:
                original_of[i] = match
                continue
            for key in keys:
                buckets[key] = (*buckets.get(key, ()), i)
        return original_of

    def _shingles(self, word_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Hashes of each unit's word k-shingles, computed over all units at once."""
        vocabulary: dict[str, int] = {}
        ids = np.fromiter(
            (vocabulary.setdefault(w, len(vocabulary) + 1) for ws in word_lists for w in ws), dtype=np.uint64
        )
        lengths = np.array([len(ws) for ws in word_lists])
        k = self.shingle_size
        hashes = np.zeros(len(ids) - k + 1, dtype=np.uint64)
        for j in range(k):
            hashes = hashes * _WORD_MULTIPLIER + ids[j : len(ids) - k + 1 + j]
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        return [hashes[s : s + n - k + 1] for s, n in zip(starts, lengths, strict=True)]

    def _signatures(self, shingles: Sequence[np.ndarray], seed: int) -> np.ndarray:
        """MinHash signatures, one row per unit, from ``num_perm`` seeded multiply-shift hash functions."""
        rng = np.random.default_rng(seed)
        a = rng.integers(1, 1 << 61, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 1 << 61, size=self.num_perm, dtype=np.uint64)
        flat = np.concatenate(shingles)
        permuted = (a[:, None] * flat[None, :] + b[:, None]) >> np.uint64(32)  # wraps mod 2**64 by design
        starts = np.concatenate(([0], np.cumsum([len(s) for s in shingles])[:-1]))
        return np.minimum.reduceat(permuted, starts, axis=1).T

    def _markers(self, units: Sequence[Unit], original_of: dict[int, Unit], model: str) -> dict[int, str]:
        """One marker per run of consecutive duplicates in a message, where it is cheaper than the run."""
        runs: list[list[Unit]] = []
        for unit in units:
            if unit.index not in original_of:
                continue
            if runs and runs[-1][-1].index == unit.index - 1 and runs[-1][-1].message == unit.message:
                runs[-1].append(unit)
            else:
                runs.append([unit])
        texts = [self.marker.replace("{message}", str(original_of[run[0].index].message + 1)) for run in runs]
        costs = count_text_tokens(texts, model)
        return {
            run[0].index: text
            for run, text, cost in zip(runs, texts, costs, strict=True)
            if cost < sum(u.tokens for u in run)
        }


def _jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / len(a | b)


def _bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """LSH bands and rows per band whose S-curve turns at ``threshold``: (1/bands) ** (1/rows)."""
    options = [(b, num_perm // b) for b in range(1, num_perm + 1) if num_perm % b == 0]
    return min(options, key=lambda br: abs((1 / br[0]) ** (1 / br[1]) - threshold))
