"""The Pareto/NBD model's closed forms, per customer, O(1): the ranking behind the snapshot `risk`.

Pareto/NBD (Schmittlein, Morrison & Colombo 1987): while alive, a customer buys
as a Poisson process with rate lambda ~ Gamma(r, alpha); their lifetime is
exponential with rate mu ~ Gamma(s, beta), so they may leave at any moment,
also before a second order. That is what BG/NBD (cadence.py) cannot say: there
a customer drops out only right after a repeat purchase, so every one-day buyer
has P(alive) = 1 and the 60% of CDNOW customers who bought once cannot be told
apart. The same summary (x, t_x, T; the day grid of detectors/snapshot.py) feeds
both models.

Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions", eqs. (18), (19) and (22):

    P(alive | x, t_x, T) = 1 / (1 + s/(r+s+x) * (alpha+T)^(r+x) * (beta+T)^s * A0)

    E[Y(t) | x, t_x, T] = (r+x)(beta+T) / ((alpha+T)(s-1)) * (1 - ((beta+T)/(beta+T+t))^(s-1)) * P(alive)

with, for alpha >= beta (w = r+s+x),

    A0 = 2F1(w, s+1; w+1; (alpha-beta)/(alpha+t_x)) / (alpha+t_x)^w
       - 2F1(w, s+1; w+1; (alpha-beta)/(alpha+T)) / (alpha+T)^w

and for alpha < beta the same with (beta-alpha)/(beta+.) as argument, r+x in
place of s+1 and beta in place of alpha. That split is the note's Euler
transformation: it keeps the argument z in [0, 1), where the Gauss series has
positive terms and converges, and z is largest at t = 0, so the number of
terms is bounded by the population parameters (|alpha-beta|/max(alpha,beta)),
never by the customer's history (ParetoParams keeps it below 0.999). On the
CDNOW fit z < 0.1: about twenty terms.

Pure Python on purpose (no scipy): this module is compiled with the core and
runs per customer in the snapshot; tests check `log_hyp2f1_next` against scipy.

Must never: read the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from schemas.errors import ConfigError

#: alpha and beta may be at most this many times apart: z <= 1 - 1/MAX_SCALE_RATIO, so the
#: series below needs at most about 46,000 terms (a fit this lopsided is degenerate anyway).
MAX_SCALE_RATIO: Final = 1000.0
#: Series terms, at most (a bound the parameter check above keeps the series inside).
MAX_TERMS: Final = 100_000
#: log-odds beyond which exp overflows; P(alive) is 0 to double precision there.
_LOG_ODDS_MAX: Final = 700.0


@dataclass(frozen=True)
class ParetoParams:
    """Population parameters of Pareto/NBD; alpha and beta are in `time_unit` (that of the BG/NBD fit)."""

    r: float
    alpha: float
    s: float
    beta: float
    time_unit: str = "weeks"

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "s", "beta"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"pareto_nbd parameter {name} must be a positive number, got {v!r}")
        if max(self.alpha, self.beta) > MAX_SCALE_RATIO * min(self.alpha, self.beta):
            raise ConfigError(f"pareto_nbd: alpha ({self.alpha:g}) and beta ({self.beta:g}) are more than "
                              f"{MAX_SCALE_RATIO:g} times apart; refit on more data")

    @classmethod
    def from_mapping(cls, v: Any, time_unit: str) -> ParetoParams:
        """From the `pareto_nbd` object of a `churn-signals fit` output."""
        if not isinstance(v, dict):
            raise ConfigError("pareto_nbd: expected an object with r, alpha, s, beta")
        missing = [k for k in ("r", "alpha", "s", "beta") if k not in v]
        if missing:
            raise ConfigError(f"pareto_nbd: missing {', '.join(missing)}")
        try:
            return cls(float(v["r"]), float(v["alpha"]), float(v["s"]), float(v["beta"]), time_unit)
        except (TypeError, ValueError):
            raise ConfigError("pareto_nbd: r, alpha, s and beta must be numbers") from None


def log_hyp2f1_next(a: float, b: float, z: float) -> float:
    """log 2F1(a, b; a+1; z), the only case the model needs, for a > 0, 0 < b < a+1, 0 <= z < 1.

    Euler's transformation 2F1(a, b; c; z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z)
    with c = a+1 turns it into (1-z)^(1-b) 2F1(1, a+1-b; a+1; z), whose terms
    are positive and fall by a ratio (a+1-b+n)/(a+1+n) * z < z: the sum never
    cancels, its tail after a term is at most term * z/(1-z), and the value
    stays bounded by 1/(1-z) however large b is (the untransformed series
    grows like (1-z)^(-b) and overflows for customers with many orders).
    """
    if not (a > 0 and 0 < b < a + 1 and 0.0 <= z < 1.0):
        raise ValueError(f"2F1(a, b; a+1; z) needs a > 0, 0 < b < a+1 and 0 <= z < 1, got {a}, {b}, {z}")
    total = 1.0
    term = 1.0
    n = 0
    bound = z / (1.0 - z)
    while n < MAX_TERMS and term * bound > 1e-17 * total:
        term *= (a + 1 - b + n) / (a + 1 + n) * z
        total += term
        n += 1
    return (1.0 - b) * math.log1p(-z) + math.log(total)


def _log_a0_terms(p: ParetoParams, x: int, t_x: float, t: float) -> tuple[float, float]:
    """log of s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s times each of A0's two terms (at t_x, at T)."""
    r, alpha, s, beta = p.r, p.alpha, p.s, p.beta
    w = r + s + x
    lead = math.log(s / w) + (r + x) * math.log(alpha + t) + s * math.log(beta + t)
    if alpha >= beta:
        first = log_hyp2f1_next(w, s + 1, (alpha - beta) / (alpha + t_x)) - w * math.log(alpha + t_x)
        second = log_hyp2f1_next(w, s + 1, (alpha - beta) / (alpha + t)) - w * math.log(alpha + t)
    else:
        first = log_hyp2f1_next(w, r + x, (beta - alpha) / (beta + t_x)) - w * math.log(beta + t_x)
        second = log_hyp2f1_next(w, r + x, (beta - alpha) / (beta + t)) - w * math.log(beta + t)
    return lead + first, lead + second


def p_alive(p: ParetoParams, x: int, t_x: float, t: float) -> float:
    """Probability the customer is still alive at T = t (units since the first order); t_x <= t."""
    first, second = _log_a0_terms(p, x, t_x, max(t, t_x))
    if first > _LOG_ODDS_MAX:
        return 0.0
    # odds = e^first - e^second >= 0 (A0's first term is the larger: its factor falls in t)
    odds = math.exp(first) * -math.expm1(min(0.0, second - first))
    return 1.0 / (1.0 + odds)


def expected_orders(p: ParetoParams, x: int, t_x: float, t: float, horizon: float) -> float:
    """Expected orders in (t, t + horizon] given the history (the note's eq. 22)."""
    r, alpha, s, beta = p.r, p.alpha, p.s, p.beta
    big_t = max(t, t_x)
    log_q = math.log((beta + big_t) / (beta + big_t + horizon))
    # (1 - q^(s-1)) / (s-1), and its limit -log q at s = 1, without cancellation
    tail = -log_q if abs(s - 1.0) < 1e-12 else -math.expm1((s - 1.0) * log_q) / (s - 1.0)
    return (r + x) * (beta + big_t) / (alpha + big_t) * tail * p_alive(p, x, t_x, big_t)
