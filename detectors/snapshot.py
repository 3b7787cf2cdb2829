"""Customer snapshot for `replay --snapshot-out`: a state summary and a risk score.

risk (0..1) is the share of the customer's at-risk window already spent in
silence, on a half-life curve: 0 right after an order, 0.5 when the silence
reaches the favourite category's at-risk window, approaching 1 beyond it.
It ranks customers by how overdue they are for their category.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.config import DAY_MS, DetectorConfig
from detectors.decision import SILENCE_STAGES
from detectors.envelope import iso_ms
from detectors.state import CustomerState


def risk(cfg: DetectorConfig, st: CustomerState, now: int) -> float:
    if st.n_orders == 0:
        return 1.0
    window = cfg.windows_for(st.favourite_category())[0]
    silent = max(0, now - st.last_order)
    return round(1.0 - math.pow(0.5, silent / window), 6)


def summary(cfg: DetectorConfig, customer_id: str, st: CustomerState, now: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "orders": st.n_orders,
        "first_order": iso_ms(st.first_order) if st.n_orders else None,
        "last_order": iso_ms(st.last_order) if st.n_orders else None,
        "days_since_last_order": round((now - st.last_order) / DAY_MS, 3) if st.n_orders else None,
        "favourite_category": st.favourite_category(),
        "average_order_value": round(st.amount_total / st.n_orders, 2) if st.n_orders else None,
        "silence_stage": SILENCE_STAGES[st.silence_stage - 1] if st.silence_stage else None,
        "risk": risk(cfg, st, now),
        "as_of": iso_ms(now),
    }
