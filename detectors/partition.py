"""One partition's worth of the core: customer states, deadline index and clock.

The live worker keeps one PartitionCore per assigned input partition, backed by
the Faust table; `replay` keeps a single one backed by a dict. Both call the
same two methods, so both make the same decisions:

    apply(event)   the customer's due deadlines, then the event
    advance(now)   the clock moved: fire every deadline due at `now` (O(due))

`now` is always passed in: event time in replay, the hybrid watermark live.

Must never: read the clock, import faust/asyncio/aiokafka/prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Final, cast

from detectors.deadlines import NEVER, DeadlineIndex
from detectors.decision import Decision
from detectors.engine import CONFLICT, DUPLICATE, UNKNOWN, Engine
from detectors.state import CustomerState
from schemas import Event

LATE: Final = "late"
#: Event types that can move a customer's next deadline (Engine.next_deadline).
DEADLINE_TYPES: Final = frozenset({"order", "courier_rating"})


class PartitionCore:
    def __init__(
        self,
        engine: Engine,
        store: MutableMapping[str, CustomerState],
        partition: int = -1,
    ) -> None:
        self.engine = engine
        self.store = store
        self.partition = partition
        self.index = DeadlineIndex()
        self.clock = 0       # highest `now` this partition has been advanced to
        self.max_event = 0   # highest event time applied

    def apply(self, ev: Event) -> tuple[list[Decision], str]:
        """Apply one validated event; the outcome is accepted, duplicate, late or conflict (not applied)."""
        customer_id, ts = ev.customer_id, ev.ts
        store = self.store
        # A plain dict (replay) is narrowed so the compiled core uses its C look-up; any other
        # mapping (the live table) takes the generic method call.
        plain = type(store) is dict
        before = cast(dict[str, CustomerState], store).get(customer_id) if plain else store.get(customer_id)
        moved = before is None or before.partition != self.partition
        next_at = UNKNOWN
        if not moved and ev.type == "order":  # the index holds this customer's next deadline
            at = self.index.get(customer_id)
            next_at = NEVER if at is None else at
        st, decisions, outcome = self.engine.apply(before, ev, next_at)
        if outcome in (DUPLICATE, CONFLICT):
            return decisions, outcome
        if ts < self.clock:
            outcome = LATE  # applied all the same; counted so lateness is visible
        st.partition = self.partition
        if before is not st or not plain:  # the engine updates in place; a live table must hear of it
            store[customer_id] = st
        if moved or ev.type in DEADLINE_TYPES:
            # Deliveries and consent change nothing a deadline depends on (order history,
            # silence stage, frequency episode, pending follow-ups), so the index entry of a
            # customer it already holds stays right; recomputing it was ~5% of a replay.
            self.index.set(customer_id, self.engine.next_deadline(st))
        self.max_event = max(self.max_event, ts)
        return decisions, outcome

    def advance(self, now: int) -> list[Decision]:
        """Move the clock to `now` (never backwards) and fire what is due.

        `now` equal to the clock still sweeps: an event applied since the last
        sweep can have made a deadline the clock has already reached (a late
        order starting a silence, an order that shows a frequency drop at
        once). Firing it at the next sweep rather than inside `apply` leaves a
        live worker one tick for the customer's next orders to arrive; replay
        sweeps right after each event, so nothing stays overdue there either.
        """
        if now < self.clock:
            return []
        self.clock = now
        index = self.index
        if not index.any_due(now):
            return []  # nothing due: the common case after an event
        out: list[Decision] = []
        engine, store = self.engine, self.store
        for customer_id in index.pop_due(now):
            st = store.get(customer_id)
            if st is None:
                continue
            out.extend(engine.fire_due(st, customer_id, now))
            store[customer_id] = st
            index.set(customer_id, engine.next_deadline(st))
        return out

    def rebuild(self, items: Iterable[tuple[str, CustomerState]]) -> int:
        """Rebuild the deadline index from stored states of this partition."""
        self.index = DeadlineIndex()
        n = 0
        for customer_id, st in items:
            if st.partition == self.partition:
                self.index.set(customer_id, self.engine.next_deadline(st))
                self.max_event = max(self.max_event, st.last_event)
                n += 1
        return n
