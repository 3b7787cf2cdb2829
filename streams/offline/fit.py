"""`churn-signals fit`: estimate the cadence model and RFM cut points from an order log.

Reads order events (JSON Lines, .gz accepted) up to `--until`, summarises each
customer on the day grid (x, t_x, T), fits BG/NBD (r, alpha, a, b) and
Pareto/NBD (r, alpha, s, beta, under `pareto_nbd`) by maximum likelihood
(detectors/fitting.py) and writes one JSON file that `worker` and `replay`
take with `--params`. The file says its time unit; alpha and beta are in it.

It says when it is unsure rather than writing doubtful numbers: too few
customers or a BG/NBD fit that did not converge is an error (nothing
written); a Pareto/NBD fit that did not converge, or a small data set, is a
warning (the file goes without `pareto_nbd`, or with rough estimates).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from detectors.cadence import TIME_UNITS
from detectors.envelope import iso_ms
from schemas import EventDecoder, InvalidEvent
from schemas.errors import CommandError
from streams.offline.jsonl import read_lines
from streams.params import load_params
from streams.settings import Settings


def read_orders(path: str) -> tuple[list[tuple[str, int, float]], int]:
    """(customer, epoch ms, amount) of every valid order, and how many lines were skipped."""
    decoder = EventDecoder()
    orders: list[tuple[str, int, float]] = []
    skipped = 0
    for _, raw in read_lines(path):
        try:
            ev = decoder.decode(raw)
        except InvalidEvent:
            skipped += 1
            continue
        if ev.type == "order":
            orders.append((ev.customer_id, ev.ts, float(ev.data["amount"])))
    return orders, skipped


#: Fewer customers than this and `fit` refuses (`--min-customers` lowers it, knowingly): on
#: random 100-customer subsets of the CDNOW sample a quarter of the BG/NBD fits ran off to
#: a = 0 or b = infinity, and at 300 `a` still spread from 0.53 to 1.77 (10th to 90th
#: percentile) around the 0.79 of all 2,357 customers.
MIN_CUSTOMERS = 300
#: Fewer than this and `fit` writes the file but warns that the estimates are rough
#: (at 1,000 the same spread of `a` is 0.60 to 1.14).
ROUGH_BELOW = 1000


def fit_file(path: str, until_ms: int, time_unit: str = "weeks",
             min_customers: int = MIN_CUSTOMERS) -> tuple[dict[str, Any], list[str]]:
    """The parameter file's content and the warnings to show; CommandError when it cannot be trusted."""
    from importlib.metadata import PackageNotFoundError, version

    from detectors.fitting import fit_bgnbd, fit_pareto_nbd, rfm_cuts, summarize

    orders, skipped = read_orders(path)
    summary = summarize(orders, until_ms, TIME_UNITS[time_unit])
    customers, repeaters = len(summary.customers), int((summary.x > 0).sum())
    if customers < min_customers or repeaters == 0:
        raise CommandError(
            f"cannot fit {path}: {customers} customers ({repeaters} with a repeat order) up to "
            f"{iso_ms(until_ms)}; the model needs at least {min_customers} customers, some of them with "
            f"orders on two days or more (--min-customers lowers the bar, at the cost of unreliable estimates)")
    warnings: list[str] = []
    if customers < ROUGH_BELOW:
        warnings.append(f"only {customers} customers: the estimates are rough (they settle from about "
                        f"{ROUGH_BELOW} on)")
    try:
        bg = fit_bgnbd(summary, time_unit)
        if not bg.fit.converged:
            raise CommandError(f"cannot fit {path}: BG/NBD did not converge on {customers} customers "
                               f"({bg.fit.problem}); no parameters written")
        pnbd = fit_pareto_nbd(summary, time_unit)
    except ValueError as exc:
        raise CommandError(f"cannot fit {path}: {exc}") from None
    cuts = rfm_cuts(summary)
    try:
        built_by = f"churn-signals {version('churn-signals')}"
    except PackageNotFoundError:  # running from a source tree without install
        built_by = "churn-signals"
    p = bg.params
    result: dict[str, Any] = {
        "model": "bgnbd",
        "time_unit": time_unit,
        "r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b,
        "log_likelihood": bg.fit.log_likelihood,
        "converged": True,
        "customers": customers,
        "customers_with_repeat_orders": repeaters,
        "repeat_transactions": int(summary.x.sum()),
        "calibration_end": iso_ms(until_ms),
        "orders_used": sum(1 for o in orders if o[1] <= until_ms),
        "lines_skipped": skipped,
        "rfm": {"recency_days": list(cuts.recency_days), "frequency": list(cuts.frequency),
                "monetary": list(cuts.monetary)},
        "fitted_by": built_by,
    }
    if pnbd.params is not None:
        q = pnbd.params
        result["pareto_nbd"] = {"r": q.r, "alpha": q.alpha, "s": q.s, "beta": q.beta,
                                "log_likelihood": pnbd.fit.log_likelihood, "converged": True}
    else:
        warnings.append(f"Pareto/NBD did not converge ({pnbd.fit.problem}): written without 'pareto_nbd', "
                        f"so the snapshot risk ranks by BG/NBD")
    return result, warnings


def run_fit(path: str, until_ms: int, out: str, time_unit: str, min_customers: int = MIN_CUSTOMERS) -> int:
    import sys

    out_path = Path(out)
    if not out_path.parent.exists():
        raise CommandError(f"output folder {out_path.parent} does not exist")
    result, warnings = fit_file(path, until_ms, time_unit, min_customers)
    out_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"fitted on {result['customers']} customers ({result['customers_with_repeat_orders']} with repeat "
          f"orders, {result['repeat_transactions']} repeat transactions) up to {result['calibration_end']}, "
          f"time in {time_unit}:", file=sys.stderr)
    print(f"  BG/NBD      r={result['r']:.4f} alpha={result['alpha']:.4f} a={result['a']:.4f} "
          f"b={result['b']:.4f} log-likelihood={result['log_likelihood']:.2f} converged", file=sys.stderr)
    q = result.get("pareto_nbd")
    if q is not None:
        print(f"  Pareto/NBD  r={q['r']:.4f} alpha={q['alpha']:.4f} s={q['s']:.4f} beta={q['beta']:.4f} "
              f"log-likelihood={q['log_likelihood']:.2f} converged", file=sys.stderr)
    for w in warnings:
        print(f"churn-signals fit: warning: {w}", file=sys.stderr)
    print(f"-> {out}", file=sys.stderr)
    return 0


def with_params(settings: Settings, path: str | None) -> Settings:
    """Settings whose detector uses the fitted model of `path` (unchanged when None)."""
    if not path:
        return settings
    return replace(settings, detector=settings.detector.with_params(load_params(path)))
