"""The spread of a ratio measured in interleaved pairs: median, an interval, and a verdict.

Three runs of the same CPU bench gave trainer / mlx-lm 1.03, 1.19 and 0.95: one figure is
noise. The interval is the distribution-free one for a median (order statistics of the
pairs, binomial coverage), so it assumes nothing about how the timings are distributed.
"""

from __future__ import annotations

import math
import statistics

CONFIDENCE = 0.95


def _below(count: int, n: int) -> float:
    """P(Binomial(n, 1/2) < count)."""
    return sum(math.comb(n, i) for i in range(count)) / 2**n


def median_interval(values: list[float]) -> tuple[float, float, float]:
    """(low, high, coverage): the widest-needed order statistics covering the median."""
    ordered = sorted(values)
    n = len(ordered)
    rank = 1  # 1-based rank of the lower bound; min..max unless more pairs allow tighter
    while rank + 1 <= n // 2 and 1 - 2 * _below(rank + 1, n) >= CONFIDENCE:
        rank += 1
    coverage = 1 - 2 * _below(rank, n)
    return ordered[rank - 1], ordered[n - rank], coverage


def summarise(ratios: list[float], neutral: float | None = 1.0) -> dict:
    """Median, interval and whether the interval covers `neutral` ("within noise")."""
    low, high, coverage = median_interval(ratios)
    if neutral is None:
        verdict = "spread only (no neutral value for this ratio)"
    elif len(ratios) < 2:
        verdict = "one pair: no interval, run more --pairs"
    elif low <= neutral <= high:
        verdict = "within noise"
    else:
        verdict = "above 1" if low > neutral else "below 1"
    return {
        "median": statistics.median(ratios),
        "interval": [low, high],
        "interval_coverage": round(coverage, 4),
        "pairs": len(ratios),
        "verdict": verdict,
    }
