"""Return point: an order after a silence trigger, and corrections of silences proved wrong.

`customer_returned` fires when an order follows an at-risk/dormant/lost
trigger of the current silence episode that went out: a return is a return
from an emitted win-back. An order after a stage suppressed for no consent, an
opt-out, the return exclusion, the episode cap or a cooldown is no return (the
customer was never asked to come back) and starts no exclusion: a weekly
shopper a few hours "late" is not "returned" every week, and when they really
stop, the win-back goes out. Holdout members count as treatment would: after a
stage no rule but the holdout suppressed (suppression.py), or the campaign
gets the credit for organic returns. It carries the latest such stage, the
days since it and, like every decision, the customer's group; it starts the
90-day win-back exclusion.

A late (out-of-order) order can prove a fired silence wrong: its occurred_at
lies at or before a stage's deadline that has already fired. History is not
rewritten; a `silence_retracted` correction names the first wrong stage and the
trigger id it retracts (DESIGN.md section 3). Both kinds are measurement
events: they record what happened and are never suppressed.

Must never: read the clock.
"""

from __future__ import annotations

from detectors import silence
from detectors.config import DAY_MS, DetectorConfig
from detectors.decision import Decision
from detectors.envelope import trigger_id
from detectors.kinds import CUSTOMER_RETURNED, NOW, SILENCE, SILENCE_RETRACTED, SILENCE_STAGES
from detectors.state import CustomerState
from schemas import Event


def on_order(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    """The order, before the engine counts it: the state still describes the episode it ends."""
    ts = ev.ts
    if st.n_orders == 0 or ts <= st.last_order or st.silence_stage == 0:
        return []
    plan = silence.stage_plan(cfg, st)
    fired = range(st.silence_stage)
    # An order at a deadline is inside the window (Engine: due only once the clock is past it).
    right = [s for s in fired if plan[s][0] < ts]
    wrong = [s for s in fired if plan[s][0] >= ts]
    episode = str(st.last_order)
    fav = st.favourite
    out: list[Decision] = []
    if wrong:
        stage = SILENCE_STAGES[wrong[0]]
        out.append(Decision(
            customer_id=ev.customer_id, kind=SILENCE_RETRACTED.name, stage=stage,
            severity=SILENCE_RETRACTED.severities[stage], family=SILENCE_RETRACTED.family, time_ms=ts, episode=episode,
            reason_codes=("late_order_before_deadline",),
            evidence={
                "retracted_stages": ",".join(SILENCE_STAGES[s] for s in wrong),
                "retracted_trigger_id": trigger_id(ev.customer_id, SILENCE.name, episode, stage),
                "deadline_ms": plan[wrong[0]][0],
                "order_id": str(ev.data["order_id"]),
                "days_before_deadline": round((plan[wrong[0]][0] - ts) / DAY_MS, 3),
            },
            caused_by=ev.event_id, favourite_category=fav,
        ))
        if not right and st.winback_episode == st.last_order and st.winback_starts:
            # The whole chain was wrong: it must not count against the yearly cap.
            st.winback_starts.pop()
            st.winback_episode = 0
    contacted = [s for s in right if st.contacted >> s & 1]
    if contacted:
        stage = SILENCE_STAGES[contacted[-1]]
        at = plan[contacted[-1]][0]
        out.append(Decision(
            customer_id=ev.customer_id, kind=CUSTOMER_RETURNED.name, stage=NOW, severity=CUSTOMER_RETURNED.severity,
            family=CUSTOMER_RETURNED.family, time_ms=ts, episode=episode,
            reason_codes=(f"order_after_silence_{stage}",),
            evidence={
                "preceding_kind": SILENCE.name,
                "preceding_stage": stage,
                "preceding_trigger_id": trigger_id(ev.customer_id, SILENCE.name, episode, stage),
                "days_since_trigger": round((ts - at) / DAY_MS, 3),
                "days_silent": round((ts - st.last_order) / DAY_MS, 3),
                "order_id": str(ev.data["order_id"]),
                "amount": float(ev.data["amount"]),
            },
            caused_by=ev.event_id, favourite_category=fav,
        ))
        st.returned_at = ts
    return out
