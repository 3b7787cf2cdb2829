"""Personal cadence: the BG/NBD model's closed forms, per customer, O(1).

BG/NBD (Fader, Hardie & Lee 2005): while alive, a customer buys as a Poisson
process with rate lambda ~ Gamma(r, alpha); after every repeat purchase they
drop out with probability p ~ Beta(a, b). A customer is summarised by
x (repeat transactions: distinct order days minus one), t_x (time of the last
order since the first) and T (time since the first order), all in the
model's time unit. Everything below is closed form, so the silence deadline is
solved, not searched:

    P(alive | x, t_x, T) = 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x))      (x > 0)

P(alive) is 1 for x = 0 in this model (drop-out happens only after a repeat
purchase), which is why one-order customers fall back to category windows.

Must never: read the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from schemas.errors import ConfigError

#: Time units a parameter file may use, in milliseconds.
TIME_UNITS: Final = {"hours": 3_600_000, "days": 86_400_000, "weeks": 604_800_000}


@dataclass(frozen=True)
class CadenceParams:
    """Population parameters of BG/NBD; alpha is in `time_unit`."""

    r: float
    alpha: float
    a: float
    b: float
    time_unit: str = "weeks"

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"cadence parameter {name} must be a positive number, got {v!r}")
        if self.time_unit not in TIME_UNITS:
            raise ConfigError(f"cadence time_unit must be one of {sorted(TIME_UNITS)}, got {self.time_unit!r}")

    @property
    def unit_ms(self) -> int:
        return TIME_UNITS[self.time_unit]

    @classmethod
    def from_mapping(cls, v: dict[str, Any]) -> CadenceParams:
        """From a `churn-signals fit` output (or any mapping with r, alpha, a, b, time_unit)."""
        if v.get("model", "bgnbd") != "bgnbd":
            raise ConfigError(f"parameter file: unsupported model {v.get('model')!r}; expected 'bgnbd'")
        missing = [k for k in ("r", "alpha", "a", "b", "time_unit") if k not in v]
        if missing:
            raise ConfigError(f"parameter file: missing {', '.join(missing)}")
        return cls(float(v["r"]), float(v["alpha"]), float(v["a"]), float(v["b"]), str(v["time_unit"]))


def p_alive(p: CadenceParams, x: int, t_x: float, t: float) -> float:
    """Probability the customer is still alive at T = t (units since the first order)."""
    if x <= 0:
        return 1.0
    log_odds = math.log(p.a / (p.b + x - 1)) + (p.r + x) * math.log((p.alpha + t) / (p.alpha + t_x))
    if log_odds > 700:  # exp overflows; P(alive) is 0 to double precision
        return 0.0
    return 1.0 / (1.0 + math.exp(log_odds))


def crossing_time(p: CadenceParams, x: int, t_x: float, threshold: float) -> float | None:
    """T (units since the first order) at which P(alive) falls to `threshold`; None for x = 0.

    P(alive) falls monotonically in T, so solving the formula for T gives the
    single crossing. When P(alive) is already below the threshold right after
    the last order, the answer is t_x itself (the category floor then decides).
    """
    if x <= 0:
        return None
    k = 1.0 / threshold - 1.0
    ratio = math.exp((math.log(k) + math.log(p.b + x - 1) - math.log(p.a)) / (p.r + x))
    return max(t_x, (p.alpha + t_x) * ratio - p.alpha)


def p_no_order(p: CadenceParams, x: int, t_x: float, t: float, horizon: float) -> float:
    """Probability of no order in (t, t + horizon].

    Dead customers never order; alive ones have lambda ~ Gamma(r + x, alpha + t)
    given their history, and a Poisson process with that rate stays silent for
    `horizon` with probability ((alpha + t) / (alpha + t + horizon))^(r + x).
    """
    alive = p_alive(p, x, t_x, t)
    silent_if_alive = math.exp((p.r + x) * math.log((p.alpha + t) / (p.alpha + t + horizon)))
    return 1.0 - alive * (1.0 - silent_if_alive)


def expected_gap(p: CadenceParams, x: int, t_x: float) -> float:
    """The customer's expected time between orders (units): 1 / posterior mean rate at the last order."""
    return (p.alpha + t_x) / (p.r + x)


def expected_orders(p: CadenceParams, x: int, t_x: float, t: float, horizon: float) -> float:
    """Expected orders in (t, t + horizon] given the history (paper, eq. 10).

    E = (a+b+x-1)/(a-1) * [1 - ((alpha+t)/(alpha+t+h))^(r+x) * 2F1(r+x, b+x; a+b+x-1; h/(alpha+t+h))] * P(alive)
    """
    from scipy.special import hyp2f1  # the only use of scipy at run time; imported when needed

    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    z = horizon / (alpha + t + horizon)
    silent = math.exp((r + x) * math.log((alpha + t) / (alpha + t + horizon)))
    c = a + b + x - 1
    if c <= 0 or a == 1:
        return math.nan  # the closed form is singular for such degenerate parameters
    bracket = 1.0 - silent * float(hyp2f1(r + x, b + x, c, z))
    value = c / (a - 1) * bracket * p_alive(p, x, t_x, t)
    return max(0.0, value) if math.isfinite(value) else math.nan
