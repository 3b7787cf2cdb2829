"""The customer table as the core sees it: staged writes, frozen snapshots, source offsets.

The live worker is at-least-once: after a crash, every input message after the
last committed offset is delivered again, while the changelog may already hold
the state those messages produced. Three rules keep a crash from applying an
event twice, losing one, or losing a trigger (docs/reliability.md):

1. **Source offsets.** Each stored state carries, per input topic, the offset
   of the last message applied to it. A message at or below that offset on the
   customer's partition was applied before the crash: it is a duplicate, whatever
   the number of events since the last commit. (The core's ring of the last 8
   event ids only covers redeliveries of the customer's last 8 events; a busy
   customer can have more than that between two commits.) Offsets are a Kafka
   notion, so they live here in the shell, beside the core's state, and replay
   never sees them.
2. **Outputs before state.** A state change that caused triggers is written to
   the table (and so to its changelog) only after those triggers are delivered
   (`write()` is called by the agent once the sends are acknowledged). Otherwise
   a crash could leave the changelog saying "fired" with the trigger never
   sent, and the redelivered event, now a duplicate, would never send it again.
3. **Frozen snapshots.** Faust serializes a changelog record when its producer
   buffer drains, not when the table is written. The core mutates states in
   place, so the table must never hand out the object it holds: readers get a
   fresh copy decoded from the bytes written, and the codec sends those bytes.

Must never: make decisions (that is the core), read the clock.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import orjson

from detectors import CustomerState


class Stored:
    """One table value: the state as written, its encoding and its source offsets."""

    __slots__ = ("offsets", "raw", "state")

    def __init__(self, state: CustomerState, offsets: list[int], raw: bytes | None = None) -> None:
        self.state = state              # never mutated after it is stored
        self.offsets = offsets          # per input topic: offset of the last message applied (-1: none)
        self.raw = raw if raw is not None else encode_stored(state, offsets)

    def thaw(self) -> CustomerState:
        """A private, mutable copy of the state."""
        return _split(self.raw)[1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stored) and self.raw == other.raw

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable parts

    def __repr__(self) -> str:
        return f"Stored(offsets={self.offsets!r}, state={self.state!r})"


def encode_stored(state: CustomerState, offsets: list[int]) -> bytes:
    """The offsets as JSON, a NUL byte, then the state's own (packed, binary) encoding."""
    return orjson.dumps(offsets) + b"\x00" + state.encode()


def _split(raw: bytes) -> tuple[list[int], CustomerState]:
    if raw[:1] == b"{":  # {"o": offsets, "s": state list}: written before states were packed
        v = orjson.loads(raw)
        return list(v["o"]), CustomerState.from_list(v["s"])
    cut = raw.index(b"\x00")  # JSON never holds a raw NUL byte
    return list(orjson.loads(raw[:cut])), CustomerState.decode(raw[cut + 1:])


def decode_stored(raw: bytes) -> Stored:
    offsets, state = _split(raw)
    return Stored(state, offsets, raw)


class StagedStore(MutableMapping[str, CustomerState]):
    """A mapping of customer id to CustomerState over a table of `Stored` values.

    Reads return private copies; writes are staged until `write()`. One message's
    work happens between two `write()` calls.
    """

    def __init__(self, table: MutableMapping[str, Stored], n_topics: int) -> None:
        self.table = table
        self.n_topics = n_topics
        self._working: dict[str, CustomerState] = {}
        self._offsets: dict[str, list[int]] = {}
        self._dirty: set[str] = set()

    # -- the mapping the core uses -----------------------------------------
    def __getitem__(self, key: str) -> CustomerState:
        st = self._working.get(key)
        if st is not None:
            return st
        stored = self.table.get(key)
        if stored is None:
            raise KeyError(key)
        st = self._working[key] = stored.thaw()
        self._offsets[key] = list(stored.offsets)
        return st

    def get(self, key: str, default: CustomerState | None = None) -> CustomerState | None:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: CustomerState) -> None:
        self._working[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        raise TypeError("customer state is never deleted by the live worker")

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def items(self) -> Iterator[tuple[str, CustomerState]]:  # type: ignore[override]
        """Stored states (read only), standby keys included: callers filter by partition."""
        for key, stored in self.table.items():
            yield key, stored.state

    # -- offsets -------------------------------------------------------------
    def applied(self, key: str, partition: int, topic_index: int, offset: int) -> bool:
        """True when this message was already applied to the customer's stored state."""
        st = self.get(key)
        if st is None or st.partition != partition:
            # unknown customer, or a keyless message on another partition: offsets do not compare
            return False
        return offset <= self._offsets[key][topic_index]

    def record(self, key: str, topic_index: int, offset: int) -> None:
        """Remember the offset of the message just applied to `key` (staged like the state)."""
        offsets = self._offsets.get(key)
        if offsets is None:
            offsets = self._offsets[key] = [-1] * self.n_topics
        offsets[topic_index] = max(offsets[topic_index], offset)
        self._dirty.add(key)

    # -- staging ---------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._dirty)

    def write(self) -> None:
        """Write the staged states to the table (and so to its changelog), then forget them."""
        for key in self._dirty:
            offsets = self._offsets.get(key)
            if offsets is None:
                offsets = [-1] * self.n_topics
            self.table[key] = Stored(self._working[key], offsets)
        self._dirty.clear()
        self._working.clear()
        self._offsets.clear()

    def discard(self) -> None:
        """Forget staged changes (the table keeps what was last written)."""
        self._dirty.clear()
        self._working.clear()
        self._offsets.clear()
