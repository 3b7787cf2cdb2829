"""`churn-signals fit`: estimate the cadence model and RFM cut points from an order log.

Reads order events (JSON Lines, .gz accepted) up to `--until`, summarises each
customer as BG/NBD does (x, t_x, T), fits r, alpha, a, b by maximum likelihood
(detectors/fitting.py) and writes one JSON file that `worker` and `replay`
take with `--params`. The file says its time unit; alpha is in that unit.
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
from streams.jsonl import read_lines
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


def fit_file(path: str, until_ms: int, time_unit: str = "weeks") -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from detectors.fitting import fit_bgnbd, rfm_cuts, summarize

    orders, skipped = read_orders(path)
    summary = summarize(orders, until_ms, TIME_UNITS[time_unit])
    try:
        fit = fit_bgnbd(summary, time_unit)
    except ValueError as exc:
        raise CommandError(f"cannot fit {path}: {exc}") from None
    cuts = rfm_cuts(summary)
    try:
        built_by = f"churn-signals {version('churn-signals')}"
    except PackageNotFoundError:  # running from a source tree without install
        built_by = "churn-signals"
    p = fit.params
    return {
        "model": "bgnbd",
        "time_unit": time_unit,
        "r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b,
        "log_likelihood": fit.log_likelihood,
        "converged": fit.converged,
        "customers": fit.customers,
        "repeat_transactions": int(summary.x.sum()),
        "calibration_end": iso_ms(until_ms),
        "orders_used": sum(1 for o in orders if o[1] <= until_ms),
        "lines_skipped": skipped,
        "rfm": {"recency_days": list(cuts.recency_days), "frequency": list(cuts.frequency),
                "monetary": list(cuts.monetary)},
        "fitted_by": built_by,
    }


def run_fit(path: str, until_ms: int, out: str, time_unit: str) -> int:
    import sys

    result = fit_file(path, until_ms, time_unit)
    out_path = Path(out)
    if not out_path.parent.exists():
        raise CommandError(f"output folder {out_path.parent} does not exist")
    out_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"fitted BG/NBD on {result['customers']} customers ({result['repeat_transactions']} repeat "
          f"transactions) up to {result['calibration_end']}: r={result['r']:.4f} alpha={result['alpha']:.4f} "
          f"({time_unit}) a={result['a']:.4f} b={result['b']:.4f} log-likelihood={result['log_likelihood']:.2f}"
          f" -> {out}", file=sys.stderr)
    return 0


def with_params(settings: Settings, path: str | None) -> Settings:
    """Settings whose detector uses the fitted model of `path` (unchanged when None)."""
    if not path:
        return settings
    return replace(settings, detector=settings.detector.with_params(load_params(path)))
