"""Per partition, the input messages in event-time order across the input topics.

Kafka orders messages within a topic-partition only. A customer's orders,
deliveries and ratings come on three topics, and a live worker reading a backlog
gets them topic by topic (all of a partition's waiting ratings, then its
orders...), an order far from the log's. Decisions that depend on the order of
a customer's events (a rating's follow-up, cooldowns, the context a trigger
carries) then differed from replay, which reads the log in event-time order.

As Kafka Streams does (timestamp synchronisation, `max.task.idle.ms`), each
partition's messages are held per topic and handed out lowest event time first,
and the merge waits while a topic with nothing held still has unread messages,
but never longer than `max_wait_ms` since the oldest message held arrived (a
paused or stalled topic must not stop its partition), and never with more than
`max_held` messages held (memory stays bounded).

The caller keeps each held message unacknowledged, so its offset is not
committed before it is processed. Equal event times go out in topic order.

Must never: read the clock (arrival times are passed in), decode or decide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Held(NamedTuple, Generic[T]):
    ts: int        # event time: the merge order
    arrived: int   # wall ms when it was received: the wait bound
    item: T


class Merger(Generic[T]):
    def __init__(self, n_topics: int, max_wait_ms: int, max_held: int) -> None:
        self.n_topics = n_topics
        self.max_wait_ms = max_wait_ms
        self.max_held = max_held
        self.queues: dict[int, list[deque[Held[T]]]] = {}
        self.held = 0
        #: (topic index, partition) -> offset of the last message received (held or handed out).
        self.received: dict[tuple[int, int], int] = {}

    def add(self, partition: int, topic_index: int, offset: int, ts: int, arrived: int, item: T) -> None:
        queues = self.queues.get(partition)
        if queues is None:
            queues = self.queues[partition] = [deque() for _ in range(self.n_topics)]
        queues[topic_index].append(Held(ts, arrived, item))
        self.held += 1
        self.received[(topic_index, partition)] = offset

    def tail_ts(self, partition: int, topic_index: int) -> int | None:
        """Event time of the last message held for this topic-partition (None: nothing held)."""
        queues = self.queues.get(partition)
        if not queues or not queues[topic_index]:
            return None
        return queues[topic_index][-1].ts

    def skip(self, partition: int, topic_index: int, offset: int) -> None:
        """A message received and not held (not an event: dead-lettered at once)."""
        self.received[(topic_index, partition)] = offset

    def partitions(self) -> list[int]:
        """Partitions with messages held."""
        return [p for p, queues in self.queues.items() if any(queues)]

    def release(self, partition: int, now: int, unread: Callable[[int], bool]) -> Iterator[T]:
        """Hand out what can go now, lowest event time first.

        `unread(topic_index)` says whether that topic still has messages of this
        partition not received yet (or cannot tell); a topic with nothing held
        for which it is true holds the partition back, within the bounds.
        """
        queues = self.queues.get(partition)
        if not queues:
            return
        # Asked at most once per topic per call: nothing is received while this runs, so
        # only the end offsets the consumer learns meanwhile could change the answer, and
        # those are as stale as ever a moment later (it was one lookup per topic per item).
        answers: dict[int, bool] = {}
        while True:
            best: deque[Held[T]] | None = None
            oldest = now
            waiting = False
            for i, q in enumerate(queues):
                if q:
                    head = q[0]
                    if best is None or head.ts < best[0].ts:
                        best = q
                    oldest = min(oldest, head.arrived)
                elif not waiting:
                    behind = answers.get(i)
                    if behind is None:
                        behind = answers[i] = unread(i)
                    waiting = behind
            if best is None:
                return
            if waiting and now - oldest < self.max_wait_ms and self.held <= self.max_held:
                return
            self.held -= 1
            yield best.popleft().item

    def drain(self) -> Iterator[T]:
        """Everything held, each partition in event-time order, without waiting for anything."""
        for partition in list(self.queues):
            yield from self.release(partition, 0, lambda _: False)

    def position(self, topic_index: int, partition: int) -> int | None:
        """Offset of the next message of this topic-partition not received yet (None: none received)."""
        last = self.received.get((topic_index, partition))
        return None if last is None else last + 1

    def clear(self) -> None:
        """Forget everything (partitions revoked: the held messages are redelivered, unacknowledged)."""
        self.queues.clear()
        self.received.clear()
        self.held = 0
