"""Silence: no order for longer than the customer's own cadence or their category allows.

Stages at_risk / dormant / lost fire once each per silence episode; the episode
starts at the latest order, so a new order closes it. Each stage's deadline is

    max(category floor, moment the customer's P(alive) falls below the stage threshold)

The category floors are the playbooks' "silence windows" (grocery 7/14 d,
fashion 30/60 d, home 60/120 d, other 30/90 d, lost at 180 d). The personal
part is the BG/NBD closed form (cadence.py), active when fitted parameters are
configured and the customer has ordered on at least two days; a customer who
reliably orders every 3 months is not "at risk" after 30 days ("don't spend the
offer on people who would return anyway"). Time-driven: the trigger's time is
the deadline itself, so live and replay produce the same payload whatever the
tick granularity. Silence is "longer than" the window: the engine fires a
stage only once the clock is past its deadline (and the allowed lateness), so
an order at the deadline itself ends the episode instead.

Each stage also says why the customer may have gone quiet (cause.py): the
service failures from `silence_cause_lookback` before the last order up to the
stage's deadline, as `suspected_cause` "service" with reason codes naming them
(`after_delivery_failed`, ...), or "none". The playbooks' classic mistake is a
discount for a customer who left over the service: that one needs an apology.

Must never: read the clock.
"""

from __future__ import annotations

import math
from typing import Any, Final

from detectors import cadence, cause
from detectors.config import DAY_MS, DetectorConfig
from detectors.deadlines import NEVER
from detectors.decision import Decision
from detectors.kinds import SILENCE, SILENCE_STAGES
from detectors.state import CustomerState
from schemas import Event

CADENCE_RULE: Final = "personal_cadence"
FLOOR_RULE: Final = "category_floor"


def uses_cadence(cfg: DetectorConfig, st: CustomerState) -> bool:
    return cfg.cadence is not None and st.order_days >= 2


def stage_plan(cfg: DetectorConfig, st: CustomerState) -> list[tuple[int, int, str]]:
    """(deadline, category floor, rule that set it) per stage; depends only on the order history."""
    risk, dormant = cfg.windows_for(st.favourite)
    last = st.last_order
    floors = (last + risk, last + dormant, last + cfg.silence_lost_ms)
    p = cfg.cadence
    if p is None or st.order_days < 2:
        return [(f, f, FLOOR_RULE) for f in floors]
    unit = p.unit_ms
    x, t_x = st.order_days - 1, (last - st.first_order) / unit
    plan: list[tuple[int, int, str]] = []
    previous = last
    for floor, threshold in zip(floors, cfg.p_alive_thresholds, strict=True):
        t = cadence.crossing_time(p, x, t_x, threshold)
        model = st.first_order + math.ceil((t if t is not None else 0.0) * unit)
        deadline = max(floor, model, previous)
        plan.append((deadline, floor, CADENCE_RULE if model > floor else FLOOR_RULE))
        previous = deadline
    return plan


def next_deadline(cfg: DetectorConfig, st: CustomerState) -> int | None:
    d = deadline_ms(cfg, st)
    return None if d == NEVER else d


def deadline_ms(cfg: DetectorConfig, st: CustomerState) -> int:
    """next_deadline as a plain int, NEVER for none (the engine's hot path)."""
    stage = st.silence_stage
    if st.n_orders == 0 or stage >= 3:  # len(SILENCE_STAGES)
        return NEVER
    if cfg.cadence is None or st.order_days < 2:  # category floor only: stage_plan's deadline, without the plan
        return st.last_order + (cfg.silence_lost_ms if stage == 2 else cfg.windows_for(st.favourite)[stage])
    return stage_plan(cfg, st)[stage][0]


def cadence_evidence(cfg: DetectorConfig, st: CustomerState, at: int) -> dict[str, Any]:
    """P(alive) at `at` and the expected gap between orders, when the model applies."""
    p = cfg.cadence
    if p is None or not uses_cadence(cfg, st):
        return {}
    unit = p.unit_ms
    x, t_x = st.order_days - 1, (st.last_order - st.first_order) / unit
    return {
        "p_alive": round(cadence.p_alive(p, x, t_x, (at - st.first_order) / unit), 4),
        "expected_gap_days": round(cadence.expected_gap(p, x, t_x) * unit / DAY_MS, 2),
        "repeat_order_days": x,
    }


def on_deadline(cfg: DetectorConfig, st: CustomerState, customer_id: str, now: int) -> list[Decision]:
    """Fire every stage whose deadline is at or before `now`, oldest first."""
    out: list[Decision] = []
    if st.n_orders == 0:
        return out
    plan = stage_plan(cfg, st)
    fav = st.favourite
    while st.silence_stage < len(SILENCE_STAGES) and plan[st.silence_stage][0] <= now:
        at, floor, rule = plan[st.silence_stage]
        stage = SILENCE_STAGES[st.silence_stage]
        rule_code = "personal_cadence" if rule == CADENCE_RULE else f"category_window_{fav or 'other'}"
        suspected, cause_codes, failures = cause.of_silence(cfg, st, at)
        out.append(
            Decision(
                customer_id=customer_id,
                kind=SILENCE.name,
                stage=stage,
                severity=SILENCE.severities[stage],
                family=SILENCE.family,
                time_ms=at,
                episode=str(st.last_order),
                reason_codes=(f"silence_{stage}", rule_code, *cause_codes),
                evidence={
                    "days_silent": round((at - st.last_order) / DAY_MS, 3),
                    "window_days": round((at - st.last_order) / DAY_MS, 3),
                    "category_floor_days": round((floor - st.last_order) / DAY_MS, 3),
                    "rule": rule,
                    "orders": st.n_orders,
                    "last_order_ms": st.last_order,
                    **cadence_evidence(cfg, st, at),
                },
                favourite_category=fav,
                suspected_cause=suspected,
                service_failures=failures,
            )
        )
        st.silence_stage += 1
    return out


def on_order(cfg: DetectorConfig, st: CustomerState, ev: Event) -> None:
    """An order newer than the last one starts a new episode (before the engine counts it: `last_order`
    is still the one before)."""
    if ev.ts > st.last_order:
        st.silence_stage = 0
        st.contacted = 0
