"""RFM segment of a customer at the moment a trigger fires.

Recency (days since the last order), frequency (repeat order days, BG/NBD's x)
and monetary value (average order value) are each scored 1..3 against two cut
points; the scores map to a few named segments a CRM can route on:

    new_with_potential  one order, recent, above-median basket
    new                 one order, recent
    loyal               recent and frequent
    promising           recent, not yet frequent
    at_risk             middling recency, was frequent or valuable
    sleeping_valuable   long silent, was frequent and spent much ("win back first")
    needs_attention     middling recency, low value
    hibernating         long silent, low value

A customer is *valuable* when their frequency and monetary scores are both the
top one (`valuable`): the playbooks' "sleeping valuable" (high F and M) come first in a
win-back. A valuable customer's silence is labelled `sleeping_valuable` from its
first stage (at_risk) on, whatever the recency score at that moment (a weekly
shopper silent for a week still scores recent), and every contact about a
valuable customer rises `value_severity_steps` in severity (engine.py).

Cut points come from `churn-signals fit` (terciles of the calibration
customers); the defaults below suit a delivery business with monthly-ish
orders.

Must never: read the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.errors import ConfigError


@dataclass(frozen=True)
class RfmCuts:
    """Two ascending cut points per dimension (score 1 below the first, 3 at or above the second)."""

    recency_days: tuple[float, float] = (30.0, 90.0)   # lower is better
    frequency: tuple[float, float] = (1.0, 4.0)        # repeat order days
    monetary: tuple[float, float] = (25.0, 75.0)       # average order value

    def __post_init__(self) -> None:
        for name in ("recency_days", "frequency", "monetary"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"rfm.{name}: expected two ascending non-negative cut points, got {(lo, hi)}")

    @classmethod
    def from_mapping(cls, v: dict[str, Any]) -> RfmCuts:
        try:
            # ignore[arg-type] below: tuples of any length here; __post_init__ checks there are two cut points
            return cls(*[tuple(float(c) for c in v[k]) for k in ("recency_days", "frequency", "monetary")])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"rfm cut points: expected recency_days, frequency, monetary pairs, got {v!r}") from None


def _score(value: float, cuts: tuple[float, float], higher_is_better: bool = True) -> int:
    s = 1 + (value >= cuts[0]) + (value >= cuts[1])
    return s if higher_is_better else 4 - s


def valuable(cuts: RfmCuts, repeat_orders: int, avg_order_value: float) -> bool:
    """Top frequency and top monetary score: the customers a win-back goes to first.

    Both, as the playbooks define "sleeping valuable" (high F and M, low R): with
    either one alone, every weekly shopper of small baskets would count as
    valuable within a month and the label would lose its meaning.
    """
    return repeat_orders >= cuts.frequency[1] and avg_order_value >= cuts.monetary[1]


def segment(cuts: RfmCuts, recency_days: float, repeat_orders: int, avg_order_value: float) -> str:
    r = _score(recency_days, cuts.recency_days, higher_is_better=False)
    m = _score(avg_order_value, cuts.monetary)
    if repeat_orders == 0:
        if r >= 2:
            return "new_with_potential" if m >= 2 else "new"
        return "sleeping_valuable" if valuable(cuts, repeat_orders, avg_order_value) else "hibernating"
    f = _score(repeat_orders, cuts.frequency)
    if r == 3:
        return "loyal" if f >= 2 else "promising"
    if r == 2:
        return "at_risk" if f >= 2 or m == 3 else "needs_attention"
    return "sleeping_valuable" if valuable(cuts, repeat_orders, avg_order_value) else "hibernating"
