"""Quality on real data: does the streaming risk score rank churners like a batch model does?

CDNOW (Fader & Hardie; bench/data/README.md): 23,570 customers, purchases
January 1997 to June 1998. Calibration to 1997-09-30, then the question each
score answers is "no purchase in the following 39 weeks" (to 1998-06-30, the
end of the data). In one run:

1. fit BG/NBD and Pareto/NBD on the calibration orders (detectors/fitting.py,
   as `fit` does);
2. replay the whole log through the same core as the live worker, clock
   stopped at the calibration end, and take the snapshot `risk`
   (exp(-expected orders within the horizon), horizon = 39 weeks; see
   detectors/snapshot.py) twice from that one replay: with both fits (the
   default: risk ranks by Pareto/NBD) and with BG/NBD only (the risk before
   Pareto/NBD was added);
3. score the same customers with batch models on the batch summary (scipy's
   2F1): Pareto/NBD and BG/NBD expected orders, BG/NBD P(no order), a fixed
   90-day silence rule and plain recency (days since the last order);
4. print ROC AUC for each (Mann-Whitney, ties averaged), all from this run.
   Exit 1 if the streaming risk does not beat REFERENCE_AUC (0.767: the
   `lifetimes` package's BG/NBD expected purchases on this task, the batch
   peer), if it is worse than its batch model by more than 0.005, or if the
   streaming state disagrees with the batch summary.

    python -m bench.quality [--data bench/data/CDNOW_master.txt.gz] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy.special import hyp2f1
from scipy.stats import rankdata

from detectors import DetectorConfig
from detectors.cadence import TIME_UNITS, CadenceParams
from detectors.fitting import Summary, fit_bgnbd, fit_pareto_nbd, summarize
from detectors.pareto import ParetoParams
from schemas import EventDecoder
from schemas.decode import to_epoch_ms
from streams.offline.cdnow import to_events
from streams.offline.replay import Replayer, snapshots

DATA = Path(__file__).resolve().parent / "data" / "CDNOW_master.txt.gz"
CALIBRATION_END = "1997-09-30T00:00:00Z"
HORIZON_WEEKS = 39
#: The batch peer to beat: the `lifetimes` package's BG/NBD expected purchases reach this AUC on this task.
REFERENCE_AUC = 0.767


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    ranks = rankdata(score)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def batch_scores(p: CadenceParams, s: Summary, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Batch BG/NBD: P(no order within horizon) and expected orders within it (eq. 10 of the paper)."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    x, t_x, T = s.x, s.t_x, s.T
    odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    alive = 1.0 / (1.0 + odds)
    p_none = 1.0 - alive * (1.0 - ((alpha + T) / (alpha + T + horizon)) ** (r + x))
    z = horizon / (alpha + T + horizon)
    expected = ((a + b + x - 1) / (a - 1)) * (
        1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    ) * alive
    return p_none, expected


def batch_pareto_expected(q: ParetoParams, s: Summary, horizon: float) -> np.ndarray:
    """Batch Pareto/NBD expected orders within the horizon (Fader & Hardie's note, eqs. 18 and 22), scipy's 2F1."""
    r, alpha, s_, beta = q.r, q.alpha, q.s, q.beta
    x, t_x, T = s.x, s.t_x, s.T
    w = r + s_ + x
    big, b2 = (alpha, np.full_like(x, s_ + 1)) if alpha >= beta else (beta, r + x)
    gap = abs(alpha - beta)
    a0 = (hyp2f1(w, b2, w + 1, gap / (big + t_x)) / (big + t_x) ** w
          - hyp2f1(w, b2, w + 1, gap / (big + T)) / (big + T) ** w)
    alive = 1.0 / (1.0 + s_ / w * (alpha + T) ** (r + x) * (beta + T) ** s_ * a0)
    return ((r + x) * (beta + T) / ((alpha + T) * (s_ - 1))
            * (1 - ((beta + T) / (beta + T + horizon)) ** (s_ - 1)) * alive)


def run(data: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    cal_end = to_epoch_ms(CALIBRATION_END)
    unit = TIME_UNITS["weeks"]
    horizon_end = cal_end + HORIZON_WEEKS * unit
    events = sorted(to_events(data), key=lambda e: (e["occurred_at"], e["customer_id"], e["event_id"]))
    decoder = EventDecoder()
    parsed = [decoder.validate(e) for e in events]
    orders = [(e.customer_id, e.ts, float(e.data["amount"])) for e in parsed]

    summary = summarize(orders, cal_end, unit)
    fit = fit_bgnbd(summary, "weeks")
    pnbd = fit_pareto_nbd(summary, "weeks")
    if not (fit.fit.converged and pnbd.params is not None):
        raise SystemExit(f"the fits did not converge: BG/NBD {fit.fit.problem!r}, Pareto/NBD {pnbd.fit.problem!r}")
    t_fit = time.perf_counter()

    bg_cfg = replace(DetectorConfig(risk_horizon_ms=HORIZON_WEEKS * unit), cadence=fit.params)
    cfg = replace(bg_cfg, pareto=pnbd.params)
    replayer = Replayer(cfg, until_ms=cal_end)
    result = replayer.run(iter(parsed))
    rows = {r["customer_id"]: r for r in snapshots(cfg, result, cal_end)}
    bg_rows = {r["customer_id"]: r for r in snapshots(bg_cfg, result, cal_end)}
    t_replay = time.perf_counter()

    bought = {cid for cid, ts, _ in orders if cal_end < ts <= horizon_end}
    customers = summary.customers
    churned = np.array([c not in bought for c in customers])
    stream_risk = np.array([rows[c]["risk"] for c in customers])
    stream_bg_risk = np.array([bg_rows[c]["risk"] for c in customers])
    recency = summary.recency_days
    rule_90 = (recency > 90).astype(np.float64)
    p_none, expected = batch_scores(fit.params, summary, float(HORIZON_WEEKS))
    pnbd_expected = batch_pareto_expected(pnbd.params, summary, float(HORIZON_WEEKS))
    table = [
        ("streaming risk, Pareto/NBD (snapshot, default)", roc_auc(stream_risk, churned)),
        ("streaming risk, BG/NBD only (snapshot, before)", roc_auc(stream_bg_risk, churned)),
        ("batch Pareto/NBD expected orders (negated)", roc_auc(-pnbd_expected, churned)),
        ("batch BG/NBD expected orders (negated)", roc_auc(-expected, churned)),
        ("batch BG/NBD P(no order in 39 w)", roc_auc(p_none, churned)),
        ("fixed rule: silent > 90 days", roc_auc(rule_90, churned)),
        ("plain recency (days since last order)", roc_auc(recency, churned)),
    ]
    streaming_state_matches = all(
        rows[c]["order_days"] - 1 == int(x) for c, x in zip(customers, summary.x, strict=True)
    )
    return {
        "data": str(data),
        "customers": len(customers),
        "orders": len(orders),
        "calibration_end": CALIBRATION_END,
        "horizon_weeks": HORIZON_WEEKS,
        "churn_rate": round(float(churned.mean()), 4),
        "params": {"r": fit.params.r, "alpha": fit.params.alpha, "a": fit.params.a, "b": fit.params.b,
                   "time_unit": "weeks", "log_likelihood": fit.fit.log_likelihood},
        "pareto_nbd": {"r": pnbd.params.r, "alpha": pnbd.params.alpha, "s": pnbd.params.s,
                       "beta": pnbd.params.beta, "log_likelihood": pnbd.fit.log_likelihood},
        "auc": {name: round(v, 4) for name, v in table},
        # the snapshot risk ranks like the batch expected orders: same model, same quantity
        "streaming_minus_batch": round(table[0][1] - table[2][1], 4),
        "streaming_minus_reference": round(table[0][1] - REFERENCE_AUC, 4),
        "streaming_state_matches_batch_summary": streaming_state_matches,
        "replay_events": result.events,
        "replay_triggers": sum(result.triggers.values()),
        "seconds": {"fit": round(t_fit - t0, 2), "replay": round(t_replay - t_fit, 2)},
    }


def print_report(rep: dict[str, Any]) -> None:
    p = rep["params"]
    print(f"CDNOW quality benchmark: {rep['customers']} customers, {rep['orders']} orders; calibration to "
          f"{rep['calibration_end']}, target = no purchase in the next {rep['horizon_weeks']} weeks "
          f"(base rate {rep['churn_rate']:.1%})")
    q = rep["pareto_nbd"]
    print(f"fitted on calibration (weeks): BG/NBD r={p['r']:.4f} alpha={p['alpha']:.4f} a={p['a']:.4f} "
          f"b={p['b']:.4f} LL={p['log_likelihood']:.1f}; Pareto/NBD r={q['r']:.4f} alpha={q['alpha']:.4f} "
          f"s={q['s']:.4f} beta={q['beta']:.4f} LL={q['log_likelihood']:.1f}")
    print(f"replay: {rep['replay_events']} events, {rep['replay_triggers']} trigger decisions; "
          f"fit {rep['seconds']['fit']}s, replay {rep['seconds']['replay']}s")
    print()
    width = max(len(k) for k in rep["auc"])
    print(f"  {'score'.ljust(width)}  ROC AUC")
    print(f"  {'-' * width}  -------")
    for name, auc in rep["auc"].items():
        print(f"  {name.ljust(width)}  {auc:.4f}")
    print()
    print(f"streaming risk minus its batch model (Pareto/NBD): {rep['streaming_minus_batch']:+.4f}; "
          f"minus the batch peer ({REFERENCE_AUC}, lifetimes' BG/NBD): {rep['streaming_minus_reference']:+.4f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="CDNOW master file (.gz accepted)")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = ap.parse_args(argv)
    rep = run(args.data)
    print_report(rep)
    if args.json:
        args.json.write_bytes(orjson.dumps(rep, option=orjson.OPT_INDENT_2) + b"\n")
    if rep["streaming_minus_reference"] <= 0:
        print(f"FAIL: the streaming risk does not beat the batch peer's {REFERENCE_AUC}", file=sys.stderr)
        return 1
    if rep["streaming_minus_batch"] < -0.005 or not rep["streaming_state_matches_batch_summary"]:
        print("FAIL: the streaming score is worse than the batch model", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
