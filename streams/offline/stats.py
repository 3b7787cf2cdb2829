"""Confidence intervals for proportions and their difference (the report's uplift).

The report compares the re-activation rate of contacted customers with the
holdout's. Both are binomial proportions, often small samples (a 10 %
holdout of a few hundred customers), sometimes at 0 % or 100 %: the Wald
interval (p +- z * sqrt(p(1-p)/n)) is too narrow there and collapses to a
point at 0 or n successes. So:

- one proportion: the **Wilson score interval** (Wilson 1927);
- a difference of two independent proportions: **Newcombe's hybrid score
  interval** (Newcombe 1998, "Interval estimation for the difference between
  independent proportions", Statistics in Medicine 17, method 10), built from
  the two Wilson intervals, without continuity correction. Its coverage stays
  close to the nominal level for small samples and near the boundaries, where
  the Wald interval's does not; tests/unit/test_report_stats.py checks it
  against the paper's worked examples and measures its coverage.

Pure functions, no numpy: a report computes a handful of them.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

#: Confidence level of every interval the report prints.
CONFIDENCE = 0.95


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided standard normal quantile (1.959964 for 95 %)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of successes / n; n must be positive."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson: need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = z_value(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # At 0 or n successes the bound is exactly 0 or 1; keep rounding from moving it past.
    return Interval(p, 0.0 if successes == 0 else max(0.0, centre - half),
                    1.0 if successes == n else min(1.0, centre + half))


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> Interval:
    """Newcombe's hybrid score interval (method 10) of p1 - p2 = k1/n1 - k2/n2."""
    a, b = wilson(k1, n1, confidence), wilson(k2, n2, confidence)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(d, max(-1.0, low), min(1.0, high))
