"""Favourite category abandoned: the category with most of the orders lapsed while others continue.

A customer whose favourite (>= `favourite_min_orders` orders and at least
`favourite_min_share` of all orders) has not been bought for longer than that
category's at-risk window, and who just ordered something else, is moving that
part of their spend to a competitor ("abandonment of favourite category"). It
fires on the order in the other category, once per lapse: the episode is the
last favourite order, so buying the favourite again re-arms it.

Must never: read the clock.
"""

from __future__ import annotations

from detectors.config import DAY_MS, DetectorConfig
from detectors.decision import Decision
from detectors.kinds import FAVOURITE_CATEGORY_ABANDONED, NOW
from detectors.state import CustomerState, cat_last, cat_orders
from schemas import Event


def on_order(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    """The order, before the engine counts it: shares are over the orders before it."""
    fav = st.favourite
    category = ev.data["category"]
    if fav is None or category == fav:
        return []
    entry = st.categories[fav]
    count, last = cat_orders(entry), cat_last(entry)
    if count < cfg.favourite_min_orders or count < cfg.favourite_min_share * st.n_orders:
        return []
    window = cfg.windows_for(fav)[0]
    if ev.ts - last <= window or st.favourite_fired == last:
        return []
    st.favourite_fired = last
    return [Decision(
        customer_id=ev.customer_id, kind=FAVOURITE_CATEGORY_ABANDONED.name, stage=NOW,
        severity=FAVOURITE_CATEGORY_ABANDONED.severity, family=FAVOURITE_CATEGORY_ABANDONED.family,
        time_ms=ev.ts, episode=str(last),
        reason_codes=("favourite_category_lapsed", f"category_window_{fav}"),
        evidence={
            "abandoned_category": fav,
            "favourite_orders": count,
            "favourite_share": round(count / st.n_orders, 3),
            "days_since_favourite_order": round((ev.ts - last) / DAY_MS, 3),
            "window_days": round(window / DAY_MS, 3),
            "ordered_category": str(category),
        },
        caused_by=ev.event_id, favourite_category=fav,
    )]
