"""Negative courier rating: service recovery now, and a follow-up check 72 hours later.

Playbook: "negative courier ratings" are an early churn signal; the customer
gets an apology and a service promise, not a coupon. The "control contact after
72 hours" is a second, time-driven trigger (stage `follow_up`) that fires only
if no order came after the rating by then; any order after the rating cancels
it. Ratings arrive on their own topic and may be read after later orders: a
rating older than an order already applied schedules no follow-up. A negative
rating less than 72 hours (by event time) after one that scheduled a follow-up
schedules none: one check per bad experience, and the rule depends on event
times only, never on whether a tick fired the earlier check in between.
A check's id names the rating that scheduled it (by the hash of its event id,
kept with the check), so an order re-rated after its first check gets a second
check, a trigger of its own. A negative rating is also remembered as a
service failure (cause.py), so a silence that follows names it.

Must never: read the clock.
"""

from __future__ import annotations

from typing import Final

from detectors import cause
from detectors.config import DAY_MS, DetectorConfig
from detectors.deadlines import NEVER
from detectors.decision import Decision
from detectors.kinds import FOLLOW_UP, NEGATIVE_RATING, NOW
from detectors.state import FOLLOW_UP_DUE, FOLLOW_UP_ORDER, FOLLOW_UP_RATING, CustomerState, event_hash
from schemas import Event

#: Follow-ups not yet due kept per customer at most (bounded state).
MAX_FOLLOW_UPS: Final = 3
#: A negative rating above 1: one step below the kind's own severity (`high`, for a 1).
MILDER: Final = "medium"


def on_event(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    """A courier rating (the engine passes only those): service recovery now, a check scheduled."""
    rating = int(ev.data["rating"])
    if rating > cfg.negative_rating_max:
        return []
    order_id = str(ev.data["order_id"])
    cause.record(cfg, st, cause.RATING + rating, order_id, ev.ts)
    spaced = not st.follow_up_rated or abs(ev.ts - st.follow_up_rated) >= cfg.rating_follow_up_ms
    if st.last_order < ev.ts and spaced:
        st.follow_up_rated = ev.ts
        fu = st.follow_ups
        fu.append([ev.ts + cfg.rating_follow_up_ms, order_id, event_hash(ev.event_id)])
        fu.sort()
        # At most MAX_FOLLOW_UPS checks not yet due; one already due by this rating's time is
        # never dropped: whether a sweep has fired it depends on when the clock ticked, so
        # dropping it would too (it fires at the next sweep).
        due = 0
        while due < len(fu) and fu[due][FOLLOW_UP_DUE] <= ev.ts:
            due += 1
        excess = len(fu) - due - MAX_FOLLOW_UPS
        if excess > 0:
            del fu[due:due + excess]
    return [
        Decision(
            customer_id=ev.customer_id,
            kind=NEGATIVE_RATING.name,
            stage=NOW,
            severity=NEGATIVE_RATING.severity if rating == 1 else MILDER,
            family=NEGATIVE_RATING.family,
            time_ms=ev.ts,
            episode=order_id,
            reason_codes=(f"courier_rating_{rating}",),
            evidence={"rating": rating, "threshold": cfg.negative_rating_max, "order_id": order_id},
            caused_by=ev.event_id,
            favourite_category=st.favourite,
        )
    ]


def deadline_ms(cfg: DetectorConfig, st: CustomerState) -> int:
    """The first pending check's due time, NEVER for none."""
    return int(st.follow_ups[0][FOLLOW_UP_DUE]) if st.follow_ups else NEVER


def on_deadline(cfg: DetectorConfig, st: CustomerState, customer_id: str, now: int) -> list[Decision]:
    """The first pending check, when it is due at `now`."""
    if not st.follow_ups or st.follow_ups[0][FOLLOW_UP_DUE] > now:
        return []
    entry = st.follow_ups.pop(0)
    at, order_id = int(entry[FOLLOW_UP_DUE]), str(entry[FOLLOW_UP_ORDER])
    rated = at - cfg.rating_follow_up_ms
    # The rating that scheduled the check tells it apart: two ratings of one order at one time,
    # read far apart, schedule two checks with one deadline. A check scheduled before detector
    # 2.1.0 kept no rating: its rating's time stands in.
    origin = f"{int(entry[FOLLOW_UP_RATING]):012x}" if len(entry) > FOLLOW_UP_RATING else str(rated)
    days_since_order = round((at - st.last_order) / DAY_MS, 3) if st.n_orders else None
    return [
        Decision(
            customer_id=customer_id,
            kind=NEGATIVE_RATING.name,
            stage=FOLLOW_UP,
            severity=NEGATIVE_RATING.severities[FOLLOW_UP],
            family=NEGATIVE_RATING.family,
            time_ms=at,
            episode=order_id,
            reason_codes=("no_order_after_negative_rating",),
            evidence={
                "order_id": order_id,
                "hours_since_rating": round((at - rated) / 3_600_000, 2),
                "days_since_last_order": days_since_order,
            },
            favourite_category=st.favourite,
            origin=origin,
        )
    ]


def on_order_counted(cfg: DetectorConfig, st: CustomerState, ev: Event) -> None:
    """Any order after a rating (and before its check) means the customer stayed."""
    if st.follow_ups:
        ts = ev.ts
        st.follow_ups = [f for f in st.follow_ups if ts <= f[FOLLOW_UP_DUE] - cfg.rating_follow_up_ms]
