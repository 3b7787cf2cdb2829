"""A replay's per-event loop, compiled with the core: events (or raw lines) in, counted triggers out.

`streams/replay.py` runs replays; this is their inner loop, kept in the core so
that it compiles with it (make core). Interpreted, the loop, the line reader
and the trigger counting were ~15% of a replay. Per event it does what the live
worker does: apply the event to the partition core, then sweep the clock to
the highest event time applied; every decision is counted and, inside the
`from` window, built into its trigger and passed to the sink. What happens to
a bad line is its caller's business (`on_reject`), as is progress.

Must never: read the clock, open files, import faust/asyncio/aiokafka/prometheus_client.
"""

from __future__ import annotations

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


class ReadFailed(Exception):
    """Reading the next line failed (I/O error, broken gzip); `cause` is the reader's error.

    Distinct from errors raised while handling a line (a failing sink, say), so the
    caller can say which file could not be read.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Fold:
    """One replay's loop and its counts; `until_ms` and `from_ms` bound what is applied and written."""

    def __init__(
        self,
        core: PartitionCore,
        version: str,
        *,
        from_ms: int | None = None,
        until_ms: int | None = None,
        sink: Sink | None = None,
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
        return decisions, outcome, fired

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
        """Apply every Event of `items` in order; anything else goes to `on_other`. Returns events applied.

        An event whose id was applied before with other content goes to `on_conflict`.
        """
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
            if self.apply(item)[1] == CONFLICT:
                n -= 1
                if on_conflict is not None:
                    on_conflict(item)
        return n

    def lines(self, lines: Iterable[bytes], decoder: EventDecoder,
              on_reject: Callable[[int, bytes, InvalidEvent, int], None],
              progress: Callable[[int], None] | None = None, now_ms: int | None = None) -> int:
        """Decode and apply every non-blank line of a JSON Lines stream. Returns events applied.

        `on_reject(line number, stripped line, error, latest event time before it)` gets
        each line that is not a valid event, and each event whose id was applied before
        with other content (event_id_conflict, not applied). `now_ms` bounds event times as live (the
        decoder's max_future_skew past it is `future_time`); None leaves them unbounded.
        A failure to read the next line raises ReadFailed; anything else propagates as it is.
        """
        read = iter(lines).__next__  # bound once: next(it) looked the builtin up on every line
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
                return n
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
            if self.apply(ev)[1] == CONFLICT:
                n -= 1
                on_reject(number, raw.strip(), conflict_error(ev), last)
