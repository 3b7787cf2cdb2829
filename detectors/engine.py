"""The per-customer state machine: one fold over events and deadlines.

    apply(state, event)        -> (state, decisions, outcome)   accepted | duplicate | conflict
    fire_due(state, now)       -> decisions      (deadlines due at now, see below)
    next_deadline(state)       -> epoch ms | None  (the first `now` at which one is due)

A deadline ends a period ("inactive for longer than the window"), so an event
at the deadline itself is inside it: the deadline is due once the clock is
*past* it by more than `allowed_lateness` (now > deadline + lateness). An order
exactly at a silence window's end is no silence, and one that occurred before
the deadline but was read up to `allowed_lateness` after it still cancels the
trigger instead of retracting it. The trigger keeps the deadline as its time.

Before an order is applied, the customer's own deadlines up to the order's
time fire first: whether a silence trigger exists then depends only on the
customer's own orders and the final clock, never on how events of other
customers or topics were interleaved. This is what makes the live worker and
`replay` agree.

The signals are modules called through one contract (detectors/detector.py:
on_order, on_order_counted, on_event, deadline_ms, on_deadline, each taking the
configuration, the state, then the input); apply below calls them in order.
Every decision then gets its RFM segment and passes suppression (in time
order, since suppression keeps cooldown and cap bookkeeping in the state).

The engine mutates the state it is given and returns it (for speed); callers
that need the old value keep a copy.

Must never: read the clock, import faust/asyncio/aiokafka/prometheus_client.
"""

from __future__ import annotations

import bisect
from typing import Final

from detectors import basket, cause, delivery, favourite, frequency, rating, returns, rfm, silence, suppression
from detectors.config import DAY_MS, DetectorConfig
from detectors.deadlines import NEVER
from detectors.decision import Decision
from detectors.detector import OnDeadline
from detectors.kinds import MEASUREMENT, SEVERITIES, SILENCE
from detectors.state import (
    DIGEST,
    ENTRY,
    MAX_CATEGORIES,
    RECENT,
    SEEN,
    UNKNOWN_CONTENT,
    CustomerState,
    cat_entry,
    cat_last,
    cat_orders,
    content_digest,
    event_digest,
    intern_category,
    seen_find,
)
from schemas import Event
from schemas.errors import InvalidEvent

ACCEPTED: Final = "accepted"
DUPLICATE: Final = "duplicate"
#: The event's id was applied before with other content: not applied, and not a duplicate
#: either. The shell turns it into a dead letter or a reject (conflict_error).
CONFLICT: Final = "conflict"
#: `next_at` not known to the caller: the engine works it out from the state.
UNKNOWN: Final = -1

#: Severities of contacts, lowest first (`info` is for measurement events only).
_SEVERITIES: Final = SEVERITIES[1:]
#: Bound once: a compiled module reads `module.function` from the module's dict on every call.
_insort: Final = bisect.insort


class Engine:
    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()

    def _due(self, st: CustomerState) -> tuple[int, OnDeadline] | None:
        """Earliest raw deadline and the detector that owns it (silence first on ties)."""
        cfg = self.cfg
        best = silence.deadline_ms(cfg, st)
        fire: OnDeadline = silence.on_deadline
        d = frequency.deadline_ms(cfg, st)
        if d < best:
            best, fire = d, frequency.on_deadline
        d = rating.deadline_ms(cfg, st)
        if d < best:
            best, fire = d, rating.on_deadline
        return None if best == NEVER else (best, fire)

    def _due_ms(self, st: CustomerState) -> int:
        """The earliest raw deadline of `_due`, NEVER for none, without building the pair."""
        cfg = self.cfg
        # two-argument min: mypyc compiles it to a compare, where min of three is a call to
        # the builtin with every argument boxed
        return min(min(silence.deadline_ms(cfg, st), frequency.deadline_ms(cfg, st)),  # noqa: PLW3301
                   rating.deadline_ms(cfg, st))

    def next_deadline(self, st: CustomerState) -> int | None:
        """The first `now` at which this customer's earliest deadline is due: just past it and the lateness."""
        d = self._due_ms(st)
        return None if d == NEVER else d + self.cfg.allowed_lateness_ms + 1

    def fire_due(self, st: CustomerState, customer_id: str, now: int, next_at: int = UNKNOWN) -> list[Decision]:
        """Fire every deadline due at `now`, in deadline order.

        A deadline is due when `now` is past it by more than the allowed lateness.
        `next_at` is next_deadline(st) (NEVER for none) when the caller already knows it:
        the partition's deadline index holds it for every customer it tracks, and looking
        it up there is cheaper than working it out again.
        """
        effective = now - self.cfg.allowed_lateness_ms  # due: deadline < effective
        out: list[Decision] = []
        if (self._due_ms(st) + self.cfg.allowed_lateness_ms + 1 if next_at == UNKNOWN else next_at) > now:
            return out  # the common case: nothing due
        while (due := self._due(st)) is not None and due[0] < effective:
            out.extend(self._finish(st, due[1](self.cfg, st, customer_id, due[0])))
        return out

    def apply(self, st: CustomerState | None, ev: Event,
              next_at: int = UNKNOWN) -> tuple[CustomerState, list[Decision], str]:
        """Apply one event; `next_at` as in fire_due."""
        if st is None:
            st = CustomerState()
        h = event_digest(ev.event_id)
        c = content_digest(ev.data)
        seen = st.seen
        i = seen_find(seen, h)
        if i >= 0:  # the id again: the same event redelivered, or another one re-using its id
            known = seen[i + DIGEST:i + ENTRY]
            return st, [], DUPLICATE if known in (c, UNKNOWN_CONTENT) else CONFLICT
        t = ev.type
        cfg = self.cfg
        decisions: list[Decision]
        if t == "order":
            # Orders of one customer arrive in order (one topic, one partition), so
            # every deadline before this order has certainly passed without one; those
            # the clock would fire by the order's time (past them and the lateness) fire
            # first, and an order within the lateness of a deadline cancels it.
            # Other event types come from other topics that may run ahead of the
            # orders topic: they never advance the customer's clock.
            decisions = self.fire_due(st, ev.customer_id, ev.ts, next_at)
            # the detectors' on_order: the order against the history before it
            found = returns.on_order(cfg, st, ev)
            found += favourite.on_order(cfg, st, ev)
            silence.on_order(cfg, st, ev)
            self._count_order(st, ev)
            # ... and on_order_counted: once the state holds it
            frequency.on_order_counted(cfg, st, ev)
            rating.on_order_counted(cfg, st, ev)
            cause.on_order_counted(cfg, st, ev)
            found += basket.on_order_counted(cfg, st, ev)
            if found:
                decisions += self._finish(st, found)
        elif t == "delivery":
            decisions = delivery.on_event(cfg, st, ev)
            if decisions:
                self._finish(st, decisions)
        elif t == "courier_rating":
            decisions = self._finish(st, rating.on_event(cfg, st, ev))
        else:
            decisions = []
            if t == "consent":
                suppression.on_consent(st, ev)
        st.seen = (seen if len(seen) < SEEN * ENTRY else seen[ENTRY:]) + h + c
        st.last_event = max(st.last_event, ev.ts)
        return st, decisions, ACCEPTED

    def _finish(self, st: CustomerState, decisions: list[Decision]) -> list[Decision]:
        cfg = self.cfg
        for d in decisions:
            if st.n_orders:
                repeat, value = max(0, st.order_days - 1), st.amount_total / st.n_orders
                d.rfm_segment = rfm.segment(cfg.rfm, max(0, d.time_ms - st.last_order) / DAY_MS, repeat, value)
                if rfm.valuable(cfg.rfm, repeat, value):
                    _valuable(cfg, d)
            suppression.decide(cfg, st, d)
        if decisions and (st.contacts or st.incidents):
            floor = min(d.time_ms for d in decisions)
            suppression.forget(cfg, st, min(floor, self._due_ms(st)))
        return decisions

    def _count_order(self, st: CustomerState, ev: Event) -> None:
        """The order into the customer's history: counts, amounts, order times, categories, last order."""
        ts = ev.ts
        d = ev.data
        _count_day(st, ts)
        st.first_order = ts if st.n_orders == 0 else min(st.first_order, ts)
        st.n_orders += 1
        st.amount_total += float(d["amount"])
        recent = st.recent_orders
        if not recent or ts >= recent[-1]:
            recent.append(ts)  # the common case (orders arrive in order): where insort would put it
        else:
            _insort(recent, ts)
        if len(recent) > RECENT:
            del recent[0]
        cats = st.categories
        cat = intern_category(d["category"])
        entry = cats.get(cat)
        if entry is not None:
            entry = cat_entry(cat_orders(entry) + 1, max(cat_last(entry), ts))
            cats[cat] = entry
            _update_favourite(st, cat, entry)
        elif len(cats) >= MAX_CATEGORIES:
            weakest = min(cats, key=lambda c: (cats[c], c))
            del cats[weakest]
            cats[cat] = cat_entry(1, ts)
            st.favourite = st.favourite_category()  # a category was dropped: the full rule
        else:
            cats[cat] = entry = cat_entry(1, ts)
            _update_favourite(st, cat, entry)
        st.last_order = max(st.last_order, ts)


def _valuable(cfg: DetectorConfig, d: Decision) -> None:
    """A valuable customer's decision (rfm.valuable): a silence is `sleeping_valuable` from at_risk on,
    and a contact rises `value_severity_steps` in severity (up to high), saying why (`high_value_customer`)."""
    if d.kind == SILENCE.name:
        d.rfm_segment = "sleeping_valuable"
    steps = cfg.value_severity_steps
    if steps and d.family != MEASUREMENT:
        # `high` stays `high`, and says why all the same (a CRM may route valuable customers apart)
        d.severity = _SEVERITIES[min(len(_SEVERITIES) - 1, _SEVERITIES.index(d.severity) + steps)]
        d.reason_codes = (*d.reason_codes, "high_value_customer")


def conflict_error(ev: Event) -> InvalidEvent:
    """What a CONFLICT outcome is to the shell: an invalid event (DLQ live, a reject in replay)."""
    return InvalidEvent("event_id_conflict",
                        f"event_id {ev.event_id!r} was applied before with other content; this event is not applied",
                        "semantic")


def _update_favourite(st: CustomerState, cat: str, entry: int) -> None:
    """Keep `st.favourite` equal to favourite_category() after `cat`'s packed (count, last) grew to `entry`.

    Only that category's entry changed, and it only grew, so the favourite is
    either the old one or `cat`; a tie goes back to the full rule (the first of
    equals in dict order wins there).
    """
    fav = st.favourite
    if fav == cat:
        return
    if fav is None:  # the first category
        st.favourite = st.favourite_category()
        return
    other = st.categories[fav]
    if entry > other:
        st.favourite = cat
    elif entry == other:
        st.favourite = st.favourite_category()


def _count_day(st: CustomerState, ts: int) -> None:
    """Distinct UTC order days, O(1): orders on one calendar day are one transaction (BG/NBD).

    Exact for orders arriving in time order (the orders topic keeps a
    customer's orders in order). A late order inside the known history is
    counted as a new day unless it falls on the first or last order's day.
    """
    day = ts // DAY_MS
    if st.n_orders == 0:
        st.order_days = 1
    elif day not in (st.first_order // DAY_MS, st.last_order // DAY_MS):
        st.order_days += 1
