"""Small, exact statistics the stages report: pass@k, Wilson intervals, GRPO signal.

>>> round(pass_at_k(n=8, c=2, k=1), 4)
0.25
>>> round(pass_at_k(n=8, c=2, k=4), 4)
0.7857
>>> lo, hi = wilson(20, 100)
>>> round(lo, 3), round(hi, 3)
(0.133, 0.289)
>>> round(no_signal_probability(0.2, 8), 3)
0.168
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples with c correct."""
    if k > n:
        raise ValueError(f"k={k} exceeds n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def ks_for(n: int) -> list[int]:
    """k in {1, 2, 4, ..., n} (n itself always included)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return ks


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean over prompts of pass@k; ``counts`` holds (n, c) per prompt."""
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) if counts else 0.0


def wilson(successes: float, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default)."""
    if total <= 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def no_signal_probability(p: float, group: int) -> float:
    """Chance that a GRPO group of ``group`` samples is all right or all wrong: p^G + (1-p)^G."""
    return p**group + (1 - p) ** group


def paired_difference(before: Sequence[float], after: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """Mean per-prompt difference (after - before) with a normal-approximation 95% interval."""
    if len(before) != len(after) or not before:
        raise ValueError("paired_difference needs two equal, non-empty sequences")
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """Mean of ``values`` with a normal-approximation 95% interval (e.g. a win rate over prompts).

    >>> mean_interval([1.0, 0.5, 1.0, 0.0])[0]
    0.625
    """
    if not values:
        raise ValueError("mean_interval needs at least one value")
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half


def histogram(rates: Sequence[float], bins: int = 10) -> list[int]:
    """Counts of per-prompt pass rates in ``bins`` equal bins over [0, 1] (1.0 goes in the last)."""
    counts = [0] * bins
    for r in rates:
        counts[min(int(r * bins), bins - 1)] += 1
    return counts
