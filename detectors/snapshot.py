"""Customer snapshot for `replay --snapshot-out`: a state summary and a risk score.

With fitted cadence parameters (`--params`), `risk` is the BG/NBD probability
that the customer places **no order within `risk_horizon`** (default 90 days)
after `now`: 1 - P(alive) * (1 - P(silent for the horizon | alive)). It is a
calibrated probability: among customers with risk 0.8, about 80 % should not
order within the horizon (if the model fits). One-order customers are scored
by the same formula (P(alive) = 1 for them, their rate uncertainty decides).

Without parameters, `risk` is a ranking heuristic only: the share of the
favourite category's at-risk window already spent in silence, on a half-life
curve (0 right after an order, 0.5 at the window, approaching 1 beyond it).
`risk_model` says which one a row carries.
"""

from __future__ import annotations

import math
from typing import Any

from detectors import cadence
from detectors.config import DAY_MS, DetectorConfig
from detectors.decision import SILENCE_STAGES
from detectors.envelope import iso_ms
from detectors.state import CustomerState


def risk(cfg: DetectorConfig, st: CustomerState, now: int) -> float:
    if st.n_orders == 0:
        return 1.0
    p = cfg.cadence
    if p is not None:
        unit = p.unit_ms
        x, t_x = max(0, st.n_days - 1), (st.last_order - st.first_order) / unit
        t = max(now, st.last_order) - st.first_order
        return round(cadence.p_no_order(p, x, t_x, t / unit, cfg.risk_horizon_ms / unit), 6)
    window = cfg.windows_for(st.favourite_category())[0]
    silent = max(0, now - st.last_order)
    return round(1.0 - math.pow(0.5, silent / window), 6)


def p_alive(cfg: DetectorConfig, st: CustomerState, now: int) -> float | None:
    p = cfg.cadence
    if p is None or st.n_orders == 0:
        return None
    unit = p.unit_ms
    x, t_x = max(0, st.n_days - 1), (st.last_order - st.first_order) / unit
    return round(cadence.p_alive(p, x, t_x, (max(now, st.last_order) - st.first_order) / unit), 6)


def summary(cfg: DetectorConfig, customer_id: str, st: CustomerState, now: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "orders": st.n_orders,
        "order_days": st.n_days,
        "first_order": iso_ms(st.first_order) if st.n_orders else None,
        "last_order": iso_ms(st.last_order) if st.n_orders else None,
        "days_since_last_order": round((now - st.last_order) / DAY_MS, 3) if st.n_orders else None,
        "favourite_category": st.favourite_category(),
        "average_order_value": round(st.amount_total / st.n_orders, 2) if st.n_orders else None,
        "silence_stage": SILENCE_STAGES[st.silence_stage - 1] if st.silence_stage else None,
        "p_alive": p_alive(cfg, st, now),
        "risk": risk(cfg, st, now),
        "risk_model": "bgnbd_no_order_within_horizon" if cfg.cadence is not None else "category_window_heuristic",
        "risk_horizon_days": round(cfg.risk_horizon_ms / DAY_MS, 3) if cfg.cadence is not None else None,
        "as_of": iso_ms(now),
    }
