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
2. **Outputs before state.** A state change that caused triggers reaches the
   changelog only after those triggers are delivered: the agent hands them to
   the producer, then `write()`s the state to the write-back cache, and the
   flush before each commit waits for every output sent so far to be
   acknowledged before it sends the cached states (app.py). Otherwise a crash
   could leave the changelog saying "fired" with the trigger never sent, and
   the redelivered event, now a duplicate, would never send it again.
3. **Frozen snapshots.** Faust serializes a changelog record when its producer
   buffer drains, not when the table is written. The core mutates states in
   place, so no state the store holds is ever handed out: readers get a copy,
   and a state is encoded when it is written to the table, so the codec sends
   the bytes of that moment.
4. **Flushed before commit.** Live, finished states wait in a write-back cache
   and go to the table and changelog in one batch, right before an offset
   commit (app.py): one record per customer per commit interval instead of one
   per event. The batch is sealed (taken from the cache into the table) when
   the flush starts, and its records are sent only after every output sent
   until then is acknowledged; states finished meanwhile wait for the next
   flush, so the changelog never runs ahead of the outputs. A crash loses the
   cache, never a committed offset's state: the messages after the last commit
   are delivered again and redone, and a trigger they fired is sent again with
   the same id (at-least-once).

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

    With `write_back` (the live worker), `write()` only moves the message's states
    to a write-back cache, and `seal()` writes the cache to the table and returns
    one record per customer for the changelog: a customer with many events between
    two offset commits costs one record, not one per event. The worker seals and
    logs before every offset commit, so a committed offset is always covered by the
    changelog. Without it (replay-like tests with a dict as the table), `write()`
    writes through.
    """

    def __init__(self, table: MutableMapping[str, Stored], n_topics: int, write_back: bool = False) -> None:
        self.table = table
        # A Faust table keeps its values in `.data`: reading and writing that skips the
        # table's per-key changelog send (the worker sends sealed states itself) and its sensors.
        self.data: MutableMapping[str, Stored] = getattr(table, "data", table) if write_back else table
        self.n_topics = n_topics
        self.write_back = write_back
        self._working: dict[str, CustomerState] = {}
        self._offsets: dict[str, list[int]] = {}
        self._dirty: set[str] = set()
        # Written by finished messages, not flushed yet: (state, offsets) per customer.
        self._finished: dict[str, tuple[CustomerState, list[int]]] = {}

    # -- the mapping the core uses -----------------------------------------
    def __getitem__(self, key: str) -> CustomerState:
        st = self._working.get(key)
        if st is not None:
            return st
        done = self._finished.get(key)
        if done is not None:
            st, offsets = done
        else:
            stored = self.data.get(key)
            if stored is None:
                raise KeyError(key)
            st, offsets = stored.state, stored.offsets
        # Neither the cache nor a stored value is ever handed out: the core changes
        # states in place, and an unfinished message's changes must be droppable.
        st = self._working[key] = st.copy()
        self._offsets[key] = offsets[:]
        return st

    # ignore[override] below: Faust types the table as a MutableMapping[Any, Any]; this store holds states only
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

    # ignore[override] below: an iterator of (key, state), where a Mapping promises an ItemsView
    def items(self) -> Iterator[tuple[str, CustomerState]]:  # type: ignore[override]
        """Latest finished states (read only), standby keys included: callers filter by partition."""
        finished = self._finished
        for key, stored in self.data.items():
            done = finished.get(key)
            yield key, stored.state if done is None else done[0]
        for key in finished.keys() - self.data.keys():
            yield key, finished[key][0]

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

    @property
    def unflushed(self) -> int:
        return len(self._finished)

    def write(self) -> None:
        """The message is finished: keep its states (write-back) or write them to the table."""
        for key in self._dirty:
            offsets = self._offsets.get(key)
            if offsets is None:
                offsets = [-1] * self.n_topics
            if self.write_back:
                self._finished[key] = (self._working[key], offsets)
            else:
                self.table[key] = Stored(self._working[key], offsets)
        self._dirty.clear()
        self._working.clear()
        self._offsets.clear()

    def seal(self) -> list[tuple[int, str, Stored]]:
        """Write the finished states to the table; return them for the changelog.

        The table (what reads fall back to) is up to date at once; the caller sends the
        changelog records once the outputs of those messages are acknowledged (rule 2).
        """
        finished, self._finished = self._finished, {}
        data, sealed = self.data, []
        for key, (state, offsets) in finished.items():
            stored = data[key] = Stored(state, offsets)  # encoded now: later changes are on copies
            sealed.append((state.partition, key, stored))
        return sealed

    def forget(self) -> None:
        """Drop finished states not sealed yet: their messages are not committed, so they come again."""
        self._finished.clear()

    def discard(self) -> None:
        """Forget staged changes (the table keeps what was last written)."""
        self._dirty.clear()
        self._working.clear()
        self._offsets.clear()
