"""A replay's per-event loop, compiled with the core: events (or raw lines) in, counted triggers out.

`streams/offline/replay.py` runs replays; this is their inner loop, kept in the core so
that it compiles with it (make core). Interpreted, the loop, the line reader
and the trigger counting were ~15% of a replay. Per event it does what the live
worker does: apply the event to the partition core, then sweep the clock to
the highest event time applied; every decision is counted and, inside the
`from` window, built into its trigger and passed to the sink. What happens to
a bad line is its caller's business (`on_reject`), as is progress.

With a lateness (replay's `--lateness`, by default the detector's
`allowed_lateness`) events go through a reorder buffer first: an event is held
until the highest event time seen (`high`) is `lateness` past it, and held
events are released in event-time order (arrival order among equal times).
The clock follows that watermark, `high - lateness`, after every buffered
event, so a sparse log does not keep it days behind; an event older than the
watermark is applied at once, as late, exactly as the live worker applies it.
The buffer was interpreted (streams/offline/replay.py) until the 15-minute default
made every replay take it; moving it here made the whole replay x1.16 faster
(docs/data-engineering.md).

Must never: read the clock, open files, import faust/asyncio/aiokafka/prometheus_client.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any, Final

from detectors.decision import Decision
from detectors.engine import ACCEPTED, CONFLICT, conflict_error
from detectors.envelope import to_cloudevent
from detectors.partition import LATE, PartitionCore
from schemas import Event, EventDecoder
from schemas.decode import UTF8_BOM
from schemas.errors import InvalidEvent

#: How many late events a fold keeps for the report (all are counted).
KEEP: Final = 1000
#: Progress is reported every this many events (a power of two, minus one).
PROGRESS_MASK: Final = 4095

Sink = Callable[[dict[str, Any], Decision], None]
#: Watches the fold (explain): (event or None for a sweep, outcome or "deadline", decisions, core).
Observer = Callable[[Event | None, str, list[Decision], PartitionCore], None]
#: An event found to re-use an applied id with other content: (event, its line number or arrival count, raw line).
Conflict = Callable[[Event, int, bytes], None]
#: An event held in order: (event, arrival number, raw line or b"").
Queued = tuple[Event, int, bytes]
#: An event held out of order: (event time, arrival number, event, raw line or b""); in a heap.
Held = tuple[int, int, Event, bytes]
#: Released queue entries are dropped once there are this many and they are most of the queue.
COMPACT: Final = 64

#: Bound once: a compiled module reads `module.function` from the module's dict on every call.
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


class ReadFailed(Exception):
    """Reading the next line failed (I/O error, broken gzip); `cause` is the reader's error.

    Distinct from errors raised while handling a line (a failing sink, say), so the
    caller can say which file could not be read.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Fold:
    """One replay's loop and its counts; `until_ms` and `from_ms` bound what is applied and written.

    `lateness_ms` > 0 puts a reorder buffer before the core (see the module docstring);
    `observer` hears of every applied event and every sweep that fired something.
    """

    def __init__(
        self,
        core: PartitionCore,
        version: str,
        *,
        from_ms: int | None = None,
        until_ms: int | None = None,
        sink: Sink | None = None,
        lateness_ms: int = 0,
        observer: Observer | None = None,
    ) -> None:
        self.core = core
        self.version = version
        self.from_ms = from_ms
        self.until_ms = until_ms
        self.sink = sink
        # counts by type (events) and by kind (decisions), one dict per outcome: a (type, outcome)
        # key was a tuple built, hashed and compared per event (by_type and triggers build those)
        self.outcomes: dict[str, dict[str, int]] = {ACCEPTED: {}}
        self.emitted: dict[str, int] = {}
        self.suppressed: dict[str, int] = {}
        self.written = 0          # decisions passed on (inside the window)
        self.before_from = 0      # decisions with event time before `from`
        self.after_until = 0      # events after `until`, not applied
        self.late: list[tuple[str, str, int, int]] = []  # (event id, customer, ts, ms behind), the first KEEP
        self.late_count = 0
        self.conflicts = 0        # events whose id was applied before with other content: rejected
        self.observer = observer
        # the reorder buffer
        self.lateness = lateness_ms
        self.high = 0             # highest event time admitted: the watermark is `high - lateness`
        self.queue: list[Queued] = []  # events that arrived in order, from `head` on
        self.head = 0
        self.held: list[Held] = []  # a heap of those that did not
        self.reordered = 0        # events read after a later one, within the lateness: put back in order

    @property
    def by_type(self) -> dict[tuple[str, str], int]:
        """Events by (type, outcome)."""
        return {(t, outcome): n for outcome, counts in self.outcomes.items() for t, n in counts.items()}

    @property
    def triggers(self) -> dict[tuple[str, str], int]:
        """Decisions by (kind, emit | suppressed)."""
        return {**{(k, "emit"): n for k, n in self.emitted.items()},
                **{(k, "suppressed"): n for k, n in self.suppressed.items()}}

    def emit(self, decisions: list[Decision]) -> None:
        """Count decisions and pass those inside the window on to the sink as triggers."""
        from_ms, sink, version = self.from_ms, self.sink, self.version
        for d in decisions:
            counts = self.emitted if d.suppressed is None else self.suppressed
            counts[d.kind] = counts.get(d.kind, 0) + 1
            if from_ms is not None and d.time_ms < from_ms:
                self.before_from += 1
                continue
            self.written += 1
            if sink is not None:
                sink(to_cloudevent(d, version), d)

    def apply(self, ev: Event) -> tuple[list[Decision], str, list[Decision]]:
        """One event, then the sweep: (the event's decisions, its outcome, the deadlines that fired).

        A CONFLICT is not applied and not counted among the events: the caller rejects it.
        """
        core = self.core
        decisions, outcome = core.apply(ev)
        if outcome == CONFLICT:
            self.conflicts += 1
            return decisions, outcome, []
        counts = self.outcomes.get(outcome)
        if counts is None:
            counts = self.outcomes[outcome] = {}
        counts[ev.type] = counts.get(ev.type, 0) + 1
        if outcome == LATE:
            self.late_count += 1
            if len(self.late) < KEEP:
                self.late.append((ev.event_id, ev.customer_id, ev.ts, core.clock - ev.ts))
        if decisions:
            self.emit(decisions)
        fired = core.advance(core.max_event)
        if fired:
            self.emit(fired)
        observer = self.observer
        if observer is not None:
            observer(ev, outcome, decisions, core)
            if fired:
                observer(None, "deadline", fired, core)
        return decisions, outcome, fired

    def advance(self, now: int) -> None:
        """Move the clock to `now` and pass on what fires (the watermark; `until` at the end)."""
        fired = self.core.advance(now)
        if fired:
            self.emit(fired)
            if self.observer is not None:
                self.observer(None, "deadline", fired, self.core)

    def take(self, ev: Event, number: int, raw: bytes, on_conflict: Conflict) -> None:
        """One admitted event: applied at once (no buffer, or later than the watermark) or held.

        Held events the watermark has passed are released in event-time order; then the
        clock moves to the watermark. `number` and `raw` go to `on_conflict` with an event
        whose id was applied before with other content.
        """
        lateness = self.lateness
        ts = ev.ts
        high = self.high
        if lateness <= 0 or ts < high - lateness:
            self._put(ev, number, raw, on_conflict)  # no buffer, or too late for it: late if behind the clock
            return
        if ts >= high:
            # In order, nearly every event of a sorted log: appended to the queue, which
            # stays sorted by (time, arrival), and leaves it from the front; a heap cost
            # a push and a pop of O(log n) tuple compares per event.
            high = self.high = ts
            self.queue.append((ev, number, raw))
        else:
            self.reordered += 1
            _heappush(self.held, (ts, number, ev, raw))
        limit = high - lateness
        self._release(limit, on_conflict)
        # The clock follows the watermark, not only the events released: every event up to
        # it is applied, and what the buffer still holds lies more than the lateness after
        # any deadline this can fire, so it could not have cancelled one. A sparse log
        # (one event a day) would otherwise keep the clock days behind, and an order read
        # days late would be put back in order instead of being late, as live it is.
        self.advance(limit)

    def flush(self, on_conflict: Conflict) -> None:
        """The input ended: apply every held event, in event-time order."""
        self._release(self.high, on_conflict)

    def _release(self, limit: int, on_conflict: Conflict) -> None:
        """Apply the held events at or before `limit`, in (event time, arrival) order.

        They are in two places: the queue (in order on arrival) and the heap (out of
        order). A queued event and a heap event at the same time arrived in that order:
        once `high` is past a time, every later event at that time goes to the heap.
        """
        queue, held = self.queue, self.held
        head = self.head
        while True:
            if head < len(queue):
                ev, number, raw = queue[head]
                ts = ev.ts
                if ts <= limit and (not held or ts <= held[0][0]):
                    head += 1
                    self.head = head
                    self._put(ev, number, raw, on_conflict)
                    continue
            if held and held[0][0] <= limit:
                _, number, ev, raw = _heappop(held)
                self._put(ev, number, raw, on_conflict)
                continue
            break
        if head > COMPACT and head * 2 > len(queue):  # drop the released front now and then
            del queue[:head]
            self.head = 0

    def _put(self, ev: Event, number: int, raw: bytes, on_conflict: Conflict) -> None:
        if self.apply(ev)[1] == CONFLICT:
            on_conflict(ev, number, raw)

    def admit(self, ts: int) -> bool:
        """Whether an event at `ts` is inside `until`; one after it is counted and not applied."""
        until = self.until_ms
        if until is not None and ts > until:
            self.after_until += 1
            return False
        return True

    def events(self, items: Iterable[object], on_other: Callable[[object], None],
               progress: Callable[[int], None] | None = None,
               on_conflict: Callable[[Event], None] | None = None) -> int:
        """Apply every Event of `items` (through the reorder buffer); anything else goes to `on_other`.

        Returns the events applied. An event whose id was applied before with other
        content goes to `on_conflict`, when it is applied.
        """

        def conflict(ev: Event, _number: int, _raw: bytes) -> None:
            if on_conflict is not None:
                on_conflict(ev)

        conflicts = self.conflicts
        n = 0
        for item in items:
            if not isinstance(item, Event):
                on_other(item)
                continue
            if not self.admit(item.ts):
                continue
            n += 1
            if progress is not None and not n & PROGRESS_MASK:
                progress(n)
            self.take(item, n, b"", conflict)
        self.flush(conflict)
        return n - (self.conflicts - conflicts)

    def lines(self, lines: Iterable[bytes], decoder: EventDecoder,
              on_reject: Callable[[int, bytes, InvalidEvent, int], None],
              progress: Callable[[int], None] | None = None, now_ms: int | None = None) -> int:
        """Decode and apply every non-blank line of a JSON Lines stream. Returns events applied.

        `on_reject(line number, stripped line, error, latest event time before it)` gets
        each line that is not a valid event, and, when it is applied, each event whose id
        was applied before with other content (event_id_conflict, not applied; the event's own
        time as the latest). `now_ms` bounds event times as live (the decoder's max_future_skew
        past it is `future_time`); None leaves them unbounded. Events go through the reorder
        buffer. A failure to read the next line raises ReadFailed; anything else propagates as it is.
        """

        def conflict(ev: Event, number: int, raw: bytes) -> None:
            on_reject(number, raw.strip(), conflict_error(ev), ev.ts)

        read = iter(lines).__next__  # bound once: next(it) looked the builtin up on every line
        conflicts = self.conflicts
        n = 0
        number = 0
        last = 0
        # A line is decoded as read, newline and all (JSON allows the whitespace around a
        # value): stripping first copied every line. Only a line that fails, or is within two
        # bytes of the size limit, is stripped and decoded again, so blank lines, errors and
        # the limit are judged on the stripped line exactly as before. A byte-order mark
        # at the start of the stream is skipped on that same path, costing the others nothing.
        near_limit = decoder.max_message_bytes - 2
        while True:
            try:
                raw = read()
            except StopIteration:
                self.flush(conflict)
                return n - (self.conflicts - conflicts)
            except (OSError, EOFError) as exc:
                raise ReadFailed(exc) from exc
            number += 1
            try:
                ev = decoder.decode(raw if len(raw) < near_limit else raw.strip(), now_ms)
            except InvalidEvent:
                line = raw.strip()
                if number == 1 and line[:3] == UTF8_BOM:
                    line = line[3:].strip()
                if not line:
                    continue
                try:
                    ev = decoder.decode(line, now_ms)
                except InvalidEvent as exc:
                    on_reject(number, line, exc, last)
                    continue
            last = ev.ts
            if not self.admit(last):
                continue
            n += 1
            if progress is not None and not n & PROGRESS_MASK:
                progress(n)
            self.take(ev, number, raw, conflict)
