"""The per-customer state machine: one fold over events and deadlines.

    apply(state, event)        -> (state, decisions, outcome)
    fire_due(state, now)       -> decisions      (deadlines at or before now)
    next_deadline(state)       -> epoch ms | None

Before an order is applied, the customer's own deadlines up to the order's
time fire first: whether a silence trigger exists then depends only on the
customer's own orders and the final clock, never on how events of other
customers or topics were interleaved. This is what makes the live worker and
`replay` agree.

The engine mutates the state it is given and returns it (for speed); callers
that need the old value keep a copy.

Must never: read the clock, import faust/asyncio/aiokafka/prometheus_client.
"""

from __future__ import annotations

import bisect

from detectors import delivery, frequency, rating, silence
from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.state import MAX_CATEGORIES, RECENT, SEEN, CustomerState, event_hash
from schemas import Event

ACCEPTED = "accepted"
DUPLICATE = "duplicate"


class Engine:
    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()

    def next_deadline(self, st: CustomerState) -> int | None:
        """When this customer next needs the clock, lateness allowance included."""
        a = silence.next_deadline(self.cfg, st)
        b = frequency.next_deadline(self.cfg, st)
        d = a if b is None else b if a is None else min(a, b)
        return None if d is None else d + self.cfg.allowed_lateness_ms

    def fire_due(self, st: CustomerState, customer_id: str, now: int) -> list[Decision]:
        """Fire every deadline due at `now`, in deadline order (silence first on ties)."""
        cfg = self.cfg
        effective = now - cfg.allowed_lateness_ms
        out: list[Decision] = []
        while True:
            a = silence.next_deadline(cfg, st)
            b = frequency.next_deadline(cfg, st)
            if a is not None and a <= effective and (b is None or a <= b):
                out.extend(silence.on_deadline(cfg, st, customer_id, a))
            elif b is not None and b <= effective:
                out.extend(frequency.on_deadline(cfg, st, customer_id, b))
            else:
                return out

    def apply(self, st: CustomerState | None, ev: Event) -> tuple[CustomerState, list[Decision], str]:
        if st is None:
            st = CustomerState()
        h = event_hash(ev.event_id)
        if h in st.seen:
            return st, [], DUPLICATE
        t = ev.type
        decisions: list[Decision] = []
        if t == "order":
            # Orders of one customer arrive in order (one topic, one partition), so
            # every deadline before this order has certainly passed without one.
            # Other event types come from other topics that may run ahead of the
            # orders topic: they never advance the customer's clock.
            decisions = self.fire_due(st, ev.customer_id, ev.ts)
            self._apply_order(st, ev)
        elif t == "delivery":
            decisions.extend(delivery.on_delivery(self.cfg, st, ev))
        elif t == "courier_rating":
            decisions.extend(rating.on_rating(self.cfg, st, ev))
        # consent events are recorded by the suppression rules (see DESIGN.md section 6)
        st.seen.append(h)
        if len(st.seen) > SEEN:
            del st.seen[0]
        if ev.ts > st.last_event:
            st.last_event = ev.ts
        return st, decisions, ACCEPTED

    def _apply_order(self, st: CustomerState, ev: Event) -> None:
        ts = ev.ts
        d = ev.data
        st.first_order = ts if st.n_orders == 0 else min(st.first_order, ts)
        st.n_orders += 1
        st.amount_total += float(d["amount"])
        bisect.insort(st.recent, ts)
        if len(st.recent) > RECENT:
            del st.recent[0]
        cat = d["category"]
        entry = st.cats.get(cat)
        if entry is not None:
            entry[0] += 1
            entry[1] = max(entry[1], ts)
        else:
            if len(st.cats) >= MAX_CATEGORIES:
                weakest = min(st.cats, key=lambda c: (st.cats[c][0], st.cats[c][1], c))
                del st.cats[weakest]
            st.cats[cat] = [1, ts]
        silence.on_order(st, ts)
        if ts > st.last_order:
            st.last_order = ts
        frequency.on_order(self.cfg, st, ts)
