"""Paired statistics against the original prompt: bootstrap intervals, exact McNemar, detectable differences.

Every comparison is paired: the compressed and the original prompt are scored on the same examples, so the
interval is on the per-example difference, which is much narrower than two independent intervals. Seeds make
every interval reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: two-sided 5% test, 80% power: the smallest detectable difference is (1.96 + 0.84) x sd / sqrt(n)
Z_ALPHA, Z_POWER = 1.959964, 0.841621


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval (NaN when there is nothing to estimate from)."""

    value: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan)


def wilson(k: int, n: int, z: float = Z_ALPHA) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: sound near 0 and 1, where most retention figures sit."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: Sequence[float], *, samples: int = 2000, seed: int = 0) -> Interval:
    """Mean with a 95% percentile bootstrap interval."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return NAN_INTERVAL
    picks = np.random.default_rng(seed).integers(0, len(v), size=(samples, len(v)))
    low, high = np.percentile(v[picks].mean(axis=1), [2.5, 97.5])
    return Interval(float(v.mean()), float(low), float(high))


def bootstrap_ratio_of_sums(
    numerators: Sequence[float], denominators: Sequence[float], *, samples: int = 2000, seed: int = 0
) -> Interval:
    """sum(numerators) / sum(denominators) over paired examples, resampling examples (95% percentile)."""
    a, b = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if not len(a) or b.sum() == 0:
        return NAN_INTERVAL
    picks = np.random.default_rng(seed).integers(0, len(a), size=(samples, len(a)))
    sums = b[picks].sum(axis=1)
    ratios = np.where(sums != 0, a[picks].sum(axis=1) / np.where(sums != 0, sums, 1.0), np.nan)
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return Interval(float(a.sum() / b.sum()), float(low), float(high))


def paired_difference(
    compressed: Sequence[float], original: Sequence[float], *, samples: int = 2000, seed: int = 0
) -> Interval:
    """mean(compressed - original) over the same examples, with a 95% paired bootstrap interval."""
    c, o = np.asarray(compressed, dtype=float), np.asarray(original, dtype=float)
    if len(c) != len(o):
        raise ValueError(f"paired samples differ in length: {len(c)} and {len(o)}")
    return bootstrap_mean(c - o, samples=samples, seed=seed)


def mcnemar_exact(compressed: Sequence[float], original: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value for right/wrong scores (1/0) on the same examples.

    Only the discordant pairs count: b = right with the original only, c = right with the compressed only;
    under the null each discordant pair goes either way with probability 1/2 (a binomial test on b of b + c).
    """
    c, o = np.asarray(compressed, dtype=float), np.asarray(original, dtype=float)
    if not set(np.unique(np.concatenate([c, o]))) <= {0.0, 1.0}:
        raise ValueError("McNemar's test needs right/wrong scores (0 or 1)")
    b, d = int(((o == 1) & (c == 0)).sum()), int(((o == 0) & (c == 1)).sum())
    n = b + d
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, d) + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def detectable_difference(
    compressed: Sequence[float], original: Sequence[float], *, binary: bool = False
) -> float:
    """The smallest mean difference this sample could detect (two-sided 5% test, 80% power).

    Uses the observed standard deviation of the paired differences. For right/wrong scores a sample with
    no discordant pair would claim perfect precision, so the discordant rate is taken as at least 3/n (the
    "rule of three" upper bound for an event not yet seen).
    """
    c, o = np.asarray(compressed, dtype=float), np.asarray(original, dtype=float)
    n = len(c)
    if n < 2:
        return math.inf
    diff = c - o
    if binary:
        discordant = max(float((diff != 0).mean()), min(1.0, 3 / n))
        sd = math.sqrt(max(discordant - float(diff.mean()) ** 2, 1e-12))
    else:
        sd = float(diff.std(ddof=1))
    return (Z_ALPHA + Z_POWER) * sd / math.sqrt(n)


def sample_size_for(margin: float, sd: float = 0.5) -> int:
    """Examples needed to detect a difference of ``margin`` when paired differences have deviation ``sd``
    (0.5 is the worst case for right/wrong scores with half the pairs discordant)."""
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    return math.ceil(((Z_ALPHA + Z_POWER) * sd / margin) ** 2)


def verdict(difference: Interval, detectable: float, n: int, p_value: float | None = None) -> str:
    """How the compressed prompt compares with the original, in words."""
    if n == 0 or math.isnan(difference.value):
        return "not read"
    if p_value is not None:  # right/wrong scores: the exact test decides, the interval sizes the effect
        significant, tested = p_value < 0.05, f"McNemar p = {p_value:.2g}"
    else:
        significant, tested = difference.high < 0 or difference.low > 0, "95% CI excludes 0"
    if significant and difference.value < 0:
        return f"worse by {-difference.value:.3f} [{-difference.high:.3f}, {-difference.low:.3f}] ({tested})"
    if significant and difference.value > 0:
        return f"better by {difference.value:.3f} ({tested})"
    return f"not distinguishable from the original at n = {n} (could detect >= {detectable:.2f})"
