"""Batch fit of the BG/NBD and Pareto/NBD population parameters and the RFM cut points (`churn-signals fit`).

Maximum likelihood as in Fader, Hardie & Lee (2005), "Counting Your Customers
the Easy Way", eq. (6): for a customer with x repeat transactions, last one at
t_x, observed for T (all since the first order, in the model's time unit),

    L = Gamma(r+x) alpha^r / (Gamma(r) (alpha+T)^(r+x)) * B(a, b+x) / B(a, b)
        + [x > 0] Gamma(r+x) alpha^r / (Gamma(r) (alpha+t_x)^(r+x)) * B(a+1, b+x-1) / B(a, b)

summed in log space (log-sum-exp) over customers, optimised over the log of
the four parameters (they must stay positive). Pareto/NBD (Fader & Hardie
2005, "A Note on Deriving the Pareto/NBD Model and Related Expressions",
eq. 11) is fitted the same way on the same summary; its likelihood needs the
Gauss hypergeometric function (scipy's here; detectors/pareto.py has the
scipy-free case the snapshot uses per customer).

The summary is on the day grid: orders on one UTC calendar day are one
transaction, as in the paper, and first order, last order and calibration end
are taken to their UTC day before differencing, so t_x and T are whole days
whatever the time of day orders are stamped at or whether `--until` is the
start or the end of the last day (the paper's convention: a customer who
first bought on 1997-01-01 has T = 272 days = 38.86 weeks at 1997-09-30). The
snapshot (detectors/snapshot.py, `day_grid`) summarises the streaming state
the same way, so fitted parameters mean the same thing live.

A fit says whether it can be trusted (`Fit.converged`, `Fit.problem`): the
optimizer stopped at a point where the likelihood is flat (small gradient),
with every parameter inside a sane range (a parameter running off to 0 or
infinity means the data cannot identify the model).

Pure and deterministic (numpy, scipy), no I/O: the shell reads the events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from detectors.cadence import TIME_UNITS, CadenceParams
from detectors.config import DAY_MS
from detectors.pareto import MAX_SCALE_RATIO, ParetoParams
from detectors.rfm import RfmCuts

Array = NDArray[np.float64]

#: A fitted parameter outside [1/LIMIT, LIMIT] ran off: the data does not identify it.
PARAM_LIMIT = 1e6
#: Largest |d log-likelihood / d log parameter| at a converged optimum. The likelihood sums
#: thousands of customers; 0.1 nats per unit of log parameter is a flat top.
GRADIENT_TOL = 0.1


@dataclass
class Summary:
    """Per-customer calibration summary (arrays aligned with `customers`)."""

    customers: list[str]
    x: Array          # repeat transactions (distinct order days - 1)
    t_x: Array        # last order since first, in units
    T: Array          # calibration end since first, in units
    recency_days: Array
    avg_value: Array


def summarize(orders: Iterable[tuple[str, int, float]], until_ms: int, unit_ms: int) -> Summary:
    """(customer, epoch ms, amount) orders -> per-customer x, t_x, T; orders after `until_ms` ignored."""
    acc: dict[str, list[Any]] = {}   # customer -> [first, last, days set, n, total]
    until_day = until_ms // DAY_MS
    for cid, ts, amount in orders:
        if ts > until_ms:
            continue
        a = acc.get(cid)
        if a is None:
            acc[cid] = [ts, ts, {ts // DAY_MS}, 1, amount]
        else:
            a[0] = min(a[0], ts)
            a[1] = max(a[1], ts)
            a[2].add(ts // DAY_MS)
            a[3] += 1
            a[4] += amount
    customers = sorted(acc)
    rows = [acc[c] for c in customers]
    # day grid: whole UTC days between first order, last order and calibration end
    first = np.array([r[0] // DAY_MS for r in rows], dtype=np.float64)
    last = np.array([r[1] // DAY_MS for r in rows], dtype=np.float64)
    day = DAY_MS / unit_ms
    return Summary(
        customers=customers,
        x=np.array([len(r[2]) - 1 for r in rows], dtype=np.float64),
        t_x=(last - first) * day,
        T=(until_day - first) * day,
        recency_days=until_day - last,
        avg_value=np.array([r[4] / r[3] for r in rows], dtype=np.float64),
    )


def log_likelihood(r: float, alpha: float, a: float, b: float, x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer BG/NBD log-likelihood."""
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    beta = gammaln(a + b) - gammaln(a) - gammaln(b)
    alive = gammaln(a) + gammaln(b + x) - gammaln(a + b + x) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        dead = np.where(
            x > 0,
            gammaln(a + 1) + gammaln(b + x - 1) - gammaln(a + b + x) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    result: Array = common + beta + np.logaddexp(alive, dead)
    return result


def _log_hyp2f1_next(a: Array, b: Array, z: Array) -> Array:
    """log 2F1(a, b; a+1; z) through Euler's transformation, as detectors/pareto.py computes it.

    (1-z)^(1-b) 2F1(1, a+1-b; a+1; z): the transformed series stays below
    1/(1-z), where the plain one grows like (1-z)^(-b) and overflows for
    customers with many orders.
    """
    result: Array = (1 - b) * np.log1p(-z) + np.log(hyp2f1(1.0, a + 1 - b, a + 1, z))
    return result


def pareto_log_likelihood(r: float, alpha: float, s: float, beta: float, x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer Pareto/NBD log-likelihood (the note's eq. 11, A0 by its alpha >= beta / alpha < beta split)."""
    w = r + s + x
    if alpha >= beta:
        big, other_b = alpha, np.full_like(x, s + 1)
    else:
        big, other_b = beta, r + x
    gap = abs(alpha - beta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        at_tx = _log_hyp2f1_next(w, other_b, gap / (big + t_x)) - w * np.log(big + t_x)
        at_T = _log_hyp2f1_next(w, other_b, gap / (big + T)) - w * np.log(big + T)
        # A0 = e^at_tx - e^at_T >= 0; -inf when t_x = T (bought on the calibration's last day)
        log_a0 = at_tx + np.log(-np.expm1(np.minimum(at_T - at_tx, 0.0)))
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        result: Array = (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
                         + np.logaddexp(alive, np.log(s / w) + log_a0))
    return result


@dataclass(frozen=True)
class Fit:
    """An optimum and whether to trust it: `problem` says why not (empty when converged)."""

    params: tuple[float, ...]
    log_likelihood: float
    customers: int
    converged: bool
    problem: str
    evaluations: int


@dataclass(frozen=True)
class BgNbdFit:
    fit: Fit
    params: CadenceParams


@dataclass(frozen=True)
class ParetoFit:
    fit: Fit
    params: ParetoParams | None  # None when the fit did not converge


def _check_data(s: Summary) -> None:
    if len(s.customers) < 2 or not np.any(s.x > 0):
        raise ValueError("fitting needs at least two customers and some repeat orders")


def _maximise(loglik: Callable[..., Array], names: tuple[str, ...], customers: int,
              check: Callable[..., str] | None = None) -> Fit:
    """Maximum likelihood over the log of positive parameters, and whether it converged."""

    def nll(theta: Array) -> float:
        value = -float(np.sum(loglik(*np.exp(theta))))
        return value if np.isfinite(value) else 1e300

    start = np.zeros(len(names))
    # Nelder-Mead finds the basin robustly from a neutral start; a gradient
    # polish then pins the optimum to well below the 0.5% the tests demand.
    coarse = minimize(nll, start, method="Nelder-Mead",
                      options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 20_000, "maxfev": 40_000})
    fine = minimize(nll, coarse.x, method="L-BFGS-B")
    best = fine if fine.fun <= coarse.fun else coarse
    theta = np.asarray(best.x, dtype=np.float64)
    values = tuple(float(v) for v in np.exp(theta))
    problem = ""
    if not np.isfinite(best.fun) or best.fun >= 1e300:
        problem = "the likelihood is not finite at the optimum"
    else:
        off = [n for n, v in zip(names, values, strict=True) if not 1 / PARAM_LIMIT <= v <= PARAM_LIMIT]
        if off:
            problem = f"{', '.join(off)} ran off to {'0' if values[names.index(off[0])] < 1 else 'infinity'}"
        elif check is not None and (reason := check(*values)):
            problem = reason
        else:
            grad = _gradient(nll, theta)
            if not np.all(np.isfinite(grad)):
                problem = "the likelihood is not finite next to the optimum"
            elif float(np.max(np.abs(grad))) > GRADIENT_TOL:
                problem = (f"the optimizer stopped on a slope (largest gradient {float(np.max(np.abs(grad))):.3g} "
                           f"after {int(coarse.nfev) + int(fine.nfev)} evaluations)")
    if problem:
        problem += " at " + " ".join(f"{n}={v:.4g}" for n, v in zip(names, values, strict=True))
    return Fit(values, -float(best.fun), customers, problem == "", problem, int(coarse.nfev) + int(fine.nfev))


def _gradient(f: Callable[[Array], float], theta: Array, h: float = 1e-5) -> Array:
    """Central differences of f at theta."""
    out = np.empty_like(theta)
    for i in range(len(theta)):
        step = np.zeros_like(theta)
        step[i] = h
        hi, lo = f(theta + step), f(theta - step)
        out[i] = (hi - lo) / (2 * h) if max(hi, lo) < 1e300 else np.inf
    return out


def fit_bgnbd(s: Summary, time_unit: str = "weeks") -> BgNbdFit:
    """Maximum-likelihood r, alpha, a, b (alpha in `time_unit`, the unit of `s`)."""
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {sorted(TIME_UNITS)}")
    _check_data(s)
    x, t_x, T = s.x, s.t_x, s.T
    fit = _maximise(lambda r, alpha, a, b: log_likelihood(r, alpha, a, b, x, t_x, T),
                    ("r", "alpha", "a", "b"), len(s.customers))
    r, alpha, a, b = fit.params
    return BgNbdFit(fit, CadenceParams(r, alpha, a, b, time_unit))


def fit_pareto_nbd(s: Summary, time_unit: str = "weeks") -> ParetoFit:
    """Maximum-likelihood r, alpha, s, beta of Pareto/NBD (alpha, beta in `time_unit`, the unit of `s`)."""
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {sorted(TIME_UNITS)}")
    _check_data(s)
    x, t_x, T = s.x, s.t_x, s.T

    def lopsided(r: float, alpha: float, s_: float, beta: float) -> str:
        # detectors/pareto.py refuses such parameters: its series would need too many terms
        far = max(alpha, beta) > MAX_SCALE_RATIO * min(alpha, beta)
        return f"alpha and beta are more than {MAX_SCALE_RATIO:g} times apart" if far else ""

    fit = _maximise(lambda r, alpha, s_, beta: pareto_log_likelihood(r, alpha, s_, beta, x, t_x, T),
                    ("r", "alpha", "s", "beta"), len(s.customers), lopsided)
    r, alpha, s_, beta = fit.params
    return ParetoFit(fit, ParetoParams(r, alpha, s_, beta, time_unit) if fit.converged else None)


def rfm_cuts(s: Summary) -> RfmCuts:
    """Tercile cut points of recency (days), repeat orders and average order value."""
    def cuts(v: Array) -> tuple[float, float]:
        lo, hi = np.quantile(v, [1 / 3, 2 / 3])
        return round(float(lo), 2), round(float(hi), 2)

    return RfmCuts(recency_days=cuts(s.recency_days), frequency=cuts(s.x), monetary=cuts(s.avg_value))
