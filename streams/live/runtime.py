"""What the agent does with one message, without Faust: decode, detect, route.

The Faust agent (app.py) hands each consumed message here and sends back the
records this returns. Keeping this free of Faust makes the whole live path
testable with a dict as the table, and keeps the agent body one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, TypeVar

import orjson

from detectors import Decision, Engine, PartitionCore
from detectors.engine import CONFLICT, DUPLICATE, conflict_error
from detectors.envelope import CONTENT_TYPE, encode, to_cloudevent
from schemas import Event, InvalidEvent
from streams.live.clock import TP, Watermarks
from streams.live.merge import Merger
from streams.live.metrics import RETURN_GROUPS, Metrics
from streams.live.state_store import StagedStore, Stored
from streams.settings import Settings

Headers = list[tuple[str, bytes]]
#: A message as received (key, value, timestamp, headers): what its dead letter carries unchanged.
Raw = tuple["bytes | None", "bytes | None", "float | None", Iterable[tuple[str, bytes]]]
H = TypeVar("H")
#: Whether a topic-partition still has messages not received yet, given the offset of the
#: next one this worker would receive (None: none received since assignment).
Unread = Callable[[TP, "int | None"], bool]


@dataclass(slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    timestamp: float | None = None


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: MutableMapping[str, Stored],
        metrics: Metrics,
        wall_ms: Callable[[], int],
        write_back: bool = False,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.engine = Engine(settings.detector)
        self.config_version = settings.detector.version
        self.decoder = settings.event_decoder()
        # Reads are private copies, writes wait for write_state() and, with write_back
        # (the live worker), for seal_state(): streams/live/state_store.py says why.
        self.store = StagedStore(store, len(self.topics.inputs), write_back)
        self.topic_index = {name: i for i, name in enumerate(self.topics.inputs)}
        self.metrics = metrics
        self.wall_ms = wall_ms
        self.cores: dict[int, PartitionCore] = {}
        self.watermarks = Watermarks(self.topics.inputs, settings.caught_up_lag, settings.producer_delay_ms)
        # Latest `now` this worker's own watermark vouched for, per owned partition (see on_tick).
        self.vouched: dict[int, int] = {}
        # A deadline this far past the wall clock is overdue: ticks come every
        # tick_interval, so anything older means silence is not being fired.
        self.overdue_grace_ms = max(60_000, int(settings.tick_interval_s * 10_000))
        self._event_counters: dict[tuple[str, str], Any] = {}
        # Valid input waits here until it can go in event-time order (streams/live/merge.py); items:
        # (caller's handle, topic, partition, offset, event or dead letter, decode time, the message).
        self.merger: Merger[tuple[Any, str, int, int, Event | Outgoing, float, Raw]] = Merger(
            len(self.topics.inputs), settings.merge_wait_ms, settings.merge_max_held)

    # -- partitions ---------------------------------------------------------
    def core(self, partition: int) -> PartitionCore:
        core = self.cores.get(partition)
        if core is None:
            core = PartitionCore(self.engine, self.store, partition)
            core.rebuild(self.store.items())
            self.cores[partition] = core
        return core

    def revoke_all(self) -> None:
        """Drop derived per-partition indexes (rebuilt from the table on next use) and unsealed state."""
        # The app flushes the write-back cache before this (the next owner reads it in the
        # changelog). Anything finished since belongs to uncommitted messages, which are
        # delivered again: it must not outlive the ownership.
        self.store.forget()
        self.cores.clear()
        self.vouched.clear()
        # Held messages were never acknowledged: the partitions' next owner (maybe this
        # worker again) receives them again. The app drains them before Faust revokes.
        self.merger.clear()
        # Per-partition series of partitions this worker may no longer own must not linger.
        self.metrics.watermark.clear()
        self.metrics.consumer_lag.clear()

    # -- messages -----------------------------------------------------------
    def on_input(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        timestamp: float | None = None, headers: Iterable[tuple[str, bytes]] = (),
    ) -> list[Outgoing]:
        self._forget_unfinished()
        start = perf_counter()
        records = self._on_input(topic, partition, offset, key, value, timestamp, headers)
        self.metrics.detection_seconds.observe(perf_counter() - start)
        return records

    def _on_input(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        timestamp: float | None, headers: Iterable[tuple[str, bytes]],
    ) -> list[Outgoing]:
        ev = self._decode(topic, partition, offset, key, value, timestamp, headers)
        if isinstance(ev, Outgoing):
            return self._dead(topic, partition, offset, ev)
        return self._apply(topic, partition, offset, ev, (key, value, timestamp, headers))

    def _dead(self, topic: str, partition: int, offset: int, letter: Outgoing) -> list[Outgoing]:
        # Counts as read for the watermark only now, when it goes out: while a dead letter
        # waits behind held events, the offsets before it are not processed yet.
        self.watermarks.observe(topic, partition, offset, None)
        return [letter]

    def _decode(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        timestamp: float | None, headers: Iterable[tuple[str, bytes]],
    ) -> Event | Outgoing:
        """The validated event, or the dead letter for a message that is not one."""
        try:
            if value is None:
                raise InvalidEvent("empty", "message has no value (tombstone)", "decode")
            ev = self.decoder.decode(value, now_ms=self.wall_ms())
            if key is not None and key != ev.customer_id.encode():
                raise InvalidEvent(
                    "key_mismatch", "message key must equal customer_id (state is partitioned by customer)",
                    "semantic",
                )
        except InvalidEvent as exc:
            self._count(topic, "invalid")
            self.metrics.dlq.labels(exc.reason).inc()
            return self._dead_letter(exc, topic, partition, offset, key, value, timestamp, headers)
        return ev

    def _apply(self, topic: str, partition: int, offset: int, ev: Event, raw: Raw) -> list[Outgoing]:
        self.watermarks.observe(topic, partition, offset, ev.ts)
        self.metrics.event_lag.observe(max(0, self.wall_ms() - ev.ts) / 1000)
        cid, index = ev.customer_id, self.topic_index[topic]
        if self.store.applied(cid, partition, index, offset):
            # redelivered after a crash or rebalance: the stored state already has it
            self._count(topic, DUPLICATE)
            return self._staged([])
        decisions, outcome = self.core(partition).apply(ev)
        if outcome == CONFLICT:
            # its event_id was applied before with other content: nothing of it is applied,
            # and it is not dropped as a duplicate either
            exc = conflict_error(ev)
            self._count(topic, "invalid")
            self.metrics.dlq.labels(exc.reason).inc()
            return self._staged([self._dead_letter(exc, topic, partition, offset, *raw)])
        if outcome != DUPLICATE:
            self.store.record(cid, index, offset)
        self._count(topic, outcome)
        return self._staged(self._route(decisions))

    # -- messages in event-time order (the live worker) ----------------------
    def receive(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        timestamp: float | None, headers: Iterable[tuple[str, bytes]], handle: H, unread: Unread,
    ) -> Iterator[tuple[H, list[Outgoing]]]:
        """Take one input message; yield each message that can be processed now, with its records.

        A valid event is held until it can go in event-time order with the partition's
        other input topics (streams/live/merge.py); the caller keeps it unacknowledged until it
        comes back here as `handle`. Between two items the caller sends the records and
        calls write_state(), as after on_input. A message that is not a valid event is
        dead-lettered at once, unless messages of its own topic-partition are held: then
        it waits behind them, because Faust commits past one unacknowledged message at the
        head of a partition once the next is acknowledged (an acknowledged dead letter
        right behind a held event would have committed the event before it was applied).
        """
        self._forget_unfinished()
        index = self.topic_index[topic]
        start = perf_counter()
        ev = self._decode(topic, partition, offset, key, value, timestamp, headers)
        took = perf_counter() - start  # decoding; applying is added when the merge releases it
        if isinstance(ev, Outgoing):
            ts = self.merger.tail_ts(partition, index)
            if ts is None:
                self.merger.skip(partition, index, offset)
                self.metrics.detection_seconds.observe(took)
                yield handle, self._dead(topic, partition, offset, ev)
                return
        else:
            ts = ev.ts
        self.merger.add(partition, index, offset, ts, self.wall_ms(),
                        (handle, topic, partition, offset, ev, took, (key, value, timestamp, headers)))
        yield from self.release(partition, unread)

    def release(self, partition: int, unread: Unread) -> Iterator[tuple[Any, list[Outgoing]]]:
        """Process the held messages of `partition` that can go now (also called on each tick)."""
        inputs, position = self.topics.inputs, self.merger.position

        def unread_topic(i: int) -> bool:
            return unread((inputs[i], partition), position(i, partition))

        for item in self.merger.release(partition, self.wall_ms(), unread_topic):
            yield self._released(*item)

    def drain(self) -> Iterator[tuple[Any, list[Outgoing]]]:
        """Process everything held, without waiting (before Faust revokes partitions or stops)."""
        for item in self.merger.drain():
            yield self._released(*item)

    def _released(self, handle: Any, topic: str, partition: int, offset: int, ev: Event | Outgoing,
                  took: float, raw: Raw) -> tuple[Any, list[Outgoing]]:
        """A held message's turn: apply it (or send the dead letter that waited behind held events)."""
        self._forget_unfinished()
        if isinstance(ev, Outgoing):
            self.metrics.detection_seconds.observe(took)
            return handle, self._dead(topic, partition, offset, ev)
        start = perf_counter()
        records = self._apply(topic, partition, offset, ev, raw)
        self.metrics.detection_seconds.observe(took + perf_counter() - start)  # once per message
        return handle, records

    def _count(self, topic: str, outcome: str) -> None:
        # The labelled child, looked up once per (topic, outcome): .labels() per event
        # was a few percent of the per-event path.
        child = self._event_counters.get((topic, outcome))
        if child is None:
            child = self._event_counters[(topic, outcome)] = self.metrics.events.labels(topic, outcome)
        child.inc()

    def on_tick(self, partition: int, value: bytes | None) -> list[Outgoing]:
        self._forget_unfinished()
        try:
            now = int(orjson.loads(value or b"null")["now"])
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            return []  # the clock topic is ours; a foreign message there is ignored
        # A tick promises that the input before `now` was processed, but only by the worker
        # that sent it. After a rebalance the clock topic still holds ticks of the previous
        # owner, including ones it sent while stopping, after its agent had stopped reading:
        # their `now` runs ahead of the input this worker has not read yet, and applying them
        # fired silence for customers whose orders sat unread. Never go past what this
        # worker's own watermark vouches for.
        vouched = self.vouched.get(partition)
        if vouched is None:
            return []
        now = min(now, vouched)
        core = self.core(partition)
        start = perf_counter()
        decisions = core.advance(now)
        self.metrics.sweep_seconds.observe(perf_counter() - start)
        self.metrics.watermark.labels(str(partition)).set(core.clock / 1000)
        return self._staged(self._route(decisions))

    def _staged(self, records: list[Outgoing]) -> list[Outgoing]:
        """Write state now when nothing is to be sent; else the caller writes it after delivery."""
        if not records:
            self.store.write()
        return records

    def _forget_unfinished(self) -> None:
        """Drop state staged by a message that never finished (its agent was cancelled).

        That message was never acknowledged, so it is delivered again and redone.
        """
        if self.store.pending:
            self.store.discard()

    def write_state(self) -> None:
        """Write the state changes of the last message, once the records it returned are delivered."""
        self.store.write()

    def seal_state(self) -> list[tuple[int, str, Stored]]:
        """The states finished since the last flush, now in the table, for the changelog (app.py)."""
        return self.store.seal()

    def tick_times(
        self,
        partitions: Iterable[int],
        highwater: Callable[[TP], int | None],
        committed: Callable[[TP], int | None],
        fetched: Callable[[TP], int | None] | None = None,
    ) -> dict[int, int]:
        """`now` for each actively owned partition that can advance (streams/live/clock.py)."""
        wall = self.wall_ms()
        out: dict[int, int] = {}
        for p in partitions:
            now = self.watermarks.now_for(p, wall, highwater, committed, fetched)
            if now is not None:
                out[p] = self.vouched[p] = now
        return out

    def record_consumer_lag(
        self,
        partitions: Iterable[int],
        highwater: Callable[[TP], int | None],
        committed: Callable[[TP], int | None],
    ) -> None:
        """End offset minus committed offset of each input partition actively owned."""
        values: dict[tuple[str, ...], float] = {}
        for p in partitions:
            for topic in self.topics.inputs:
                end = highwater((topic, p))
                if end is not None:
                    values[(topic, str(p))] = max(0, end - (committed((topic, p)) or 0))
        self.metrics.set_partition_gauge(self.metrics.consumer_lag, values)

    def refresh_gauges(self) -> None:
        self.metrics.deadlines.set(sum(len(c.index) for c in self.cores.values()))
        # peek() is O(1) amortised; the O(n) count runs only when something is overdue.
        limit = self.wall_ms() - self.overdue_grace_ms
        overdue, oldest = 0, None
        for c in self.cores.values():
            first = c.index.peek()
            if first is not None and first <= limit:
                overdue += c.index.overdue(limit)
                oldest = first if oldest is None else min(oldest, first)
        self.metrics.overdue.set(overdue)
        self.metrics.overdue_age.set(0 if oldest is None else (limit + self.overdue_grace_ms - oldest) / 1000)

    def refresh_customers(self) -> None:
        """Count customers of the owned partitions: O(table), so the app runs it rarely."""
        owned = set(self.cores)
        self.metrics.customers.set(sum(1 for _, st in self.store.items() if st.partition in owned))

    # -- output -------------------------------------------------------------
    def _route(self, decisions: list[Decision]) -> list[Outgoing]:
        out = []
        for d in decisions:
            topic = self.topics.triggers if d.emitted else self.topics.audit
            decision = "emitted" if d.emitted else str(d.suppressed)
            self.metrics.triggers.labels(d.kind, decision).inc()
            if d.suspected_cause is not None:  # a silence stage: counted by what it suspects
                self.metrics.silence_causes.labels(d.stage, d.suspected_cause, decision).inc()
            if d.kind == RETURNED:
                self.metrics.returns.labels(return_group(d)).inc()
            out.append(
                Outgoing(
                    topic,
                    d.customer_id.encode(),
                    encode(to_cloudevent(d, self.config_version)),
                    [("content-type", CONTENT_TYPE.encode())],
                )
            )
        return out

    def _dead_letter(
        self, exc: InvalidEvent, topic: str, partition: int, offset: int,
        key: bytes | None, value: bytes | None, timestamp: float | None,
        headers: Iterable[tuple[str, bytes]],
    ) -> Outgoing:
        error_headers: Headers = [
            ("dlq.source.topic", topic.encode()),
            ("dlq.source.partition", str(partition).encode()),
            ("dlq.source.offset", str(offset).encode()),
            ("dlq.error.class", exc.reason.encode()),
            ("dlq.error.message", str(exc)[:1000].encode()),
            ("dlq.stage", exc.stage.encode()),
        ]
        return Outgoing(self.topics.dlq, key, value, [*list(headers), *error_headers], timestamp)


RETURNED = "customer_returned"


def return_group(d: Decision) -> str:
    """Holdout group of a customer_returned decision (Decision.group; evidence["group"] as a fallback)."""
    group = getattr(d, "group", None) or d.evidence.get("group")
    return group if group in RETURN_GROUPS else "unknown"


def headers_list(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> Headers:
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return [(k, v) for k, v in headers.items()]
    return [(k, v) for k, v in headers]
