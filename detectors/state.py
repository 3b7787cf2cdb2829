"""Per-customer state: a small flat record with an explicit compact encoding.

Budget (DESIGN.md section 4): a few hundred bytes per customer, so tens of
millions of customers fit a handful of workers. Only numbers and short strings;
bounded lists (the last `RECENT` order times, the last `SEEN` event-id hashes,
at most `MAX_CATEGORIES` categories).

The encoding is lossless: a state decoded from the changelog behaves exactly
like the one that was written, which is what keeps recovery deterministic.

Must never: hold configuration (thresholds live in DetectorConfig), read the clock.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

#: Order times kept for the recent-rate window (frequency drop).
RECENT = 8
#: Event-id hashes kept to make redelivered events idempotent.
SEEN = 8
#: Categories tracked per customer (least ordered dropped first).
MAX_CATEGORIES = 6
ENCODING_VERSION = 1


def event_hash(event_id: str) -> int:
    """48-bit stable hash of an event id (process-independent, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=6).digest(), "big")


class CustomerState:
    """Mutable per-customer record. The engine updates it in place and returns it."""

    __slots__ = (
        "amount_total",
        "cats",
        "first_order",
        "freq_fired",
        "last_event",
        "last_order",
        "n_orders",
        "partition",
        "recent",
        "seen",
        "silence_stage",
    )

    def __init__(self) -> None:
        self.partition = -1          # input partition the customer lives on (-1: replay)
        self.first_order = 0         # epoch ms of the first order (0: none yet)
        self.last_order = 0          # epoch ms of the latest order; starts the silence episode
        self.n_orders = 0
        self.amount_total = 0.0
        self.recent: list[int] = []  # last RECENT order times, ascending
        self.cats: dict[str, list[int]] = {}  # category -> [orders, last order ms]
        self.silence_stage = 0       # stages fired in the current episode: 0 none, 1 at_risk, 2 dormant, 3 lost
        self.freq_fired = 0          # epoch ms the current frequency-drop episode fired (0: none)
        self.seen: list[int] = []    # hashes of the last SEEN event ids, oldest first
        self.last_event = 0          # highest event time applied

    def favourite_category(self) -> str | None:
        """Category with most orders; ties go to the most recently ordered one."""
        best: str | None = None
        best_key = (-1, -1)
        for cat, (count, last) in self.cats.items():
            if (count, last) > best_key:
                best, best_key = cat, (count, last)
        return best

    def to_list(self) -> list[Any]:
        cats = [[c, n, t] for c, (n, t) in sorted(self.cats.items())]
        return [
            ENCODING_VERSION, self.partition, self.first_order, self.last_order, self.n_orders,
            self.amount_total, self.recent, cats, self.silence_stage, self.freq_fired,
            self.seen, self.last_event,
        ]

    def encode(self) -> bytes:
        return orjson.dumps(self.to_list())

    @classmethod
    def from_list(cls, v: list[Any]) -> CustomerState:
        if not v or v[0] != ENCODING_VERSION:
            raise ValueError(f"unsupported customer state encoding {v[:1]!r}")
        st = cls()
        (_, st.partition, st.first_order, st.last_order, st.n_orders, st.amount_total,
         st.recent, cats, st.silence_stage, st.freq_fired, st.seen, st.last_event) = v
        st.amount_total = float(st.amount_total)
        st.cats = {c: [n, t] for c, n, t in cats}
        return st

    @classmethod
    def decode(cls, raw: bytes) -> CustomerState:
        return cls.from_list(orjson.loads(raw))

    def copy(self) -> CustomerState:
        return CustomerState.from_list(orjson.loads(self.encode()))

    __hash__ = None  # type: ignore[assignment]  # mutable record: equal by value, not hashable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CustomerState) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"CustomerState({self.to_list()!r})"
