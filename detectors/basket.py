"""Basket value drop: the recent average order value fell well below the customer's own baseline.

Recent = the latest `basket_recent_orders` orders; baseline = the average of
all orders before them (amount total minus the recent ones), trusted after
`basket_min_baseline_orders` orders. The playbooks call it the "evaporating
average check": the customer still orders but moves spend elsewhere. It fires
on the order that shows the drop, once per drop: the episode ends when the
recent average is back above the threshold.

Must never: read the clock.
"""

from __future__ import annotations

from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.kinds import BASKET_VALUE_DROP, NOW
from detectors.state import CustomerState
from schemas import Event


def on_order_counted(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    """The order, once counted in n_orders and amount_total."""
    k = cfg.basket_recent_orders
    st.recent_amounts.append(float(ev.data["amount"]))
    if len(st.recent_amounts) > k:
        del st.recent_amounts[: len(st.recent_amounts) - k]
    n_base = st.n_orders - len(st.recent_amounts)
    if len(st.recent_amounts) < k or n_base < cfg.basket_min_baseline_orders:
        return []
    recent_total = sum(st.recent_amounts)
    recent = recent_total / len(st.recent_amounts)
    baseline = (st.amount_total - recent_total) / n_base
    if baseline <= 0 or recent >= cfg.basket_drop_ratio * baseline:
        st.basket_fired = 0  # recovered (or never dropped): a later drop is a new episode
        return []
    if st.basket_fired:
        return []
    st.basket_fired = ev.ts
    return [Decision(
        customer_id=ev.customer_id, kind=BASKET_VALUE_DROP.name, stage=NOW, severity=BASKET_VALUE_DROP.severity,
        family=BASKET_VALUE_DROP.family, time_ms=ev.ts, episode=str(ev.ts),
        reason_codes=("basket_value_below_baseline",),
        evidence={
            "baseline_order_value": round(baseline, 2),
            "recent_order_value": round(recent, 2),
            "recent_orders": len(st.recent_amounts),
            "baseline_orders": n_base,
            "drop_ratio": cfg.basket_drop_ratio,
            "ratio": round(recent / baseline, 3),
        },
        caused_by=ev.event_id, favourite_category=st.favourite,
    )]
