"""Frequency drop: the recent order rate fell below a fraction of the customer's baseline.

Baseline rate = (orders - 1) / span between first and latest order, trusted
only with `frequency_min_orders` orders over `frequency_min_span`. Recent rate =
orders in the trailing `frequency_window` / window. The playbooks call this the
"falling frequency" early signal: the customer still orders, but less.

It is time-driven: with the last order times kept in state, the moment the
recent count drops below the threshold is known in closed form, so a sweep
fires it exactly at that moment (no polling). At most `RECENT` order times are
kept, so for customers ordering more than RECENT times per window the
threshold is capped at RECENT orders (documented limit).

Must never: read the clock.
"""

from __future__ import annotations

import math

from detectors.config import DAY_MS, DetectorConfig
from detectors.deadlines import NEVER
from detectors.decision import Decision
from detectors.kinds import FREQUENCY_DROP, NOW
from detectors.state import RECENT, CustomerState
from schemas import Event


def _threshold(cfg: DetectorConfig, st: CustomerState) -> tuple[float, float] | None:
    """(baseline orders/day, recent-order count below which the rate has dropped)."""
    span = st.last_order - st.first_order
    if st.n_orders < cfg.frequency_min_orders or span < cfg.frequency_min_span_ms:
        return None
    baseline = (st.n_orders - 1) / (span / DAY_MS)
    k = cfg.frequency_drop_ratio * baseline * (cfg.frequency_window_ms / DAY_MS)
    return baseline, min(k, float(RECENT))


def next_deadline(cfg: DetectorConfig, st: CustomerState) -> int | None:
    d = deadline_ms(cfg, st)
    return None if d == NEVER else d


def deadline_ms(cfg: DetectorConfig, st: CustomerState) -> int:
    """next_deadline as a plain int, NEVER for none (the engine's hot path: no tuple, no boxing)."""
    if st.frequency_fired or st.silence_stage > 0:
        return NEVER  # already firing, or superseded by a silence trigger in this episode
    span = st.last_order - st.first_order
    if st.n_orders < cfg.frequency_min_orders or span < cfg.frequency_min_span_ms:
        return NEVER
    # _threshold's count, computed the same way (same float operations, same order)
    baseline = (st.n_orders - 1) / (span / DAY_MS)
    k = min(cfg.frequency_drop_ratio * baseline * (cfg.frequency_window_ms / DAY_MS), float(RECENT))
    # count(t) = #{r in recent : r > t - W}; it is < k once count <= ceil(k) - 1 = j.
    j = math.ceil(k) - 1
    recent = st.recent_orders
    m = len(recent)
    if j >= m:
        return st.last_order  # already below: fire at once
    return max(recent[m - j - 1] + cfg.frequency_window_ms, st.last_order)


def on_deadline(cfg: DetectorConfig, st: CustomerState, customer_id: str, now: int) -> list[Decision]:
    at = next_deadline(cfg, st)
    th = _threshold(cfg, st)
    if at is None or th is None or at > now:
        return []
    window = cfg.frequency_window_ms
    recent_count = sum(1 for r in st.recent_orders if r > at - window)
    st.frequency_fired = at
    return [
        Decision(
            customer_id=customer_id,
            kind=FREQUENCY_DROP.name,
            stage=NOW,
            severity=FREQUENCY_DROP.severity,
            family=FREQUENCY_DROP.family,
            time_ms=at,
            episode=str(at),
            reason_codes=("frequency_below_baseline",),
            evidence={
                "baseline_orders_per_30d": round(th[0] * 30, 3),
                "recent_orders": recent_count,
                "recent_window_days": round(window / DAY_MS, 3),
                "drop_ratio": cfg.frequency_drop_ratio,
                "orders": st.n_orders,
            },
            favourite_category=st.favourite,
        )
    ]


def on_order_counted(cfg: DetectorConfig, st: CustomerState, ev: Event) -> None:
    """Recovery: once the recent count is back at the threshold, a new drop may fire.

    Only an order after the drop's time shows a recovery. One dated before it (read late)
    or at the same instant says the rate was fine up to the drop, not that it came back:
    re-armed by it, the detector could fire the same drop again at the same deadline, its
    episode. So a new drop's deadline always lies after the previous one's.
    """
    ts = ev.ts
    if not st.frequency_fired or ts <= st.frequency_fired:
        return
    th = _threshold(cfg, st)
    recent_count = sum(1 for r in st.recent_orders if r > ts - cfg.frequency_window_ms)
    if th is None or recent_count >= th[1]:
        st.frequency_fired = 0
