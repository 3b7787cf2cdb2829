"""Silence by category: no order for longer than the favourite category's window.

Stages at_risk / dormant / lost fire once each per silence episode; the episode
starts at the latest order, so a new order closes it. Windows are the category
"silence windows" of the playbooks (grocery 7/14 d, fashion 30/60 d, home
60/120 d, other 30/90 d, lost at 180 d). Time-driven: the trigger's time is the
deadline itself, so live and replay produce the same payload whatever the tick
granularity.

Must never: read the clock.
"""

from __future__ import annotations

from detectors.config import DAY_MS, DetectorConfig
from detectors.decision import SILENCE_STAGES, Decision
from detectors.state import CustomerState

_SEVERITY = {"at_risk": "low", "dormant": "medium", "lost": "high"}


def stage_deadlines(cfg: DetectorConfig, st: CustomerState) -> tuple[int, int, int]:
    risk, dormant = cfg.windows_for(st.favourite_category())
    return (st.last_order + risk, st.last_order + dormant, st.last_order + cfg.silence_lost_ms)


def next_deadline(cfg: DetectorConfig, st: CustomerState) -> int | None:
    if st.n_orders == 0 or st.silence_stage >= len(SILENCE_STAGES):
        return None
    return stage_deadlines(cfg, st)[st.silence_stage]


def on_deadline(cfg: DetectorConfig, st: CustomerState, customer_id: str, now: int) -> list[Decision]:
    """Fire every stage whose deadline is at or before `now`, oldest first."""
    out: list[Decision] = []
    if st.n_orders == 0:
        return out
    deadlines = stage_deadlines(cfg, st)
    fav = st.favourite_category()
    risk, dormant = cfg.windows_for(fav)
    while st.silence_stage < len(SILENCE_STAGES) and deadlines[st.silence_stage] <= now:
        stage = SILENCE_STAGES[st.silence_stage]
        at = deadlines[st.silence_stage]
        out.append(
            Decision(
                customer_id=customer_id,
                kind="silence",
                stage=stage,
                severity=_SEVERITY[stage],
                family="win_back",
                time_ms=at,
                episode=str(st.last_order),
                reason_codes=(f"silence_{stage}", f"category_window_{fav or 'other'}"),
                evidence={
                    "days_silent": round((at - st.last_order) / DAY_MS, 3),
                    "window_days": round(
                        (risk if stage == "at_risk" else dormant if stage == "dormant" else cfg.silence_lost_ms)
                        / DAY_MS, 3,
                    ),
                    "orders": st.n_orders,
                    "last_order_ms": st.last_order,
                },
                favourite_category=fav,
            )
        )
        st.silence_stage += 1
    return out


def on_order(st: CustomerState, ts: int) -> None:
    """An order newer than the last one starts a new episode."""
    if ts > st.last_order:
        st.silence_stage = 0
