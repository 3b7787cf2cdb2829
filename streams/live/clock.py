"""The live clock: the hybrid watermark of DESIGN.md section 3.

A partition's `now` is the wall clock only while every input topic-partition
feeding it is caught up (lag at most `caught_up_lag` messages). While some are
behind, `now` is the lowest of the highest event times seen on the lagging
ones: a restarted worker with a backlog never fires silence for customers whose
orders are still unread, and one fast topic cannot run ahead of a slow one.
A partition with no traffic at all is caught up, so it still advances on wall
time: silence is detected even at zero input.

"Caught up" is only known as of the last fetch response of each input
topic-partition, and an event stamped just before that may still be on its way
from its producer. So a caught-up partition's `now` is the oldest of those fetch
times, less `delay_ms` (the producer delay allowance): every event that reaches
the broker within `delay_ms` of its `occurred_at` is read before the clock passes
it, and silence is decided live exactly as in replay. Taking the wall clock
itself had let a tick claim up to two seconds of input nobody had fetched yet.

The wall clock is injected (`wall_ms`); this module never reads time itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

TP = tuple[str, int]


class Watermarks:
    def __init__(self, input_topics: Iterable[str], caught_up_lag: int, delay_ms: int = 0) -> None:
        self.input_topics = tuple(input_topics)
        self.caught_up_lag = caught_up_lag
        self.delay_ms = delay_ms
        self.max_event: dict[TP, int] = {}
        self.last_offset: dict[TP, int] = {}

    def observe(self, topic: str, partition: int, offset: int, event_ms: int | None) -> None:
        tp = (topic, partition)
        self.last_offset[tp] = offset
        if event_ms is not None and event_ms > self.max_event.get(tp, 0):
            self.max_event[tp] = event_ms

    def lag(self, tp: TP, highwater: int | None, committed: int | None) -> int | None:
        """Messages between what was processed and the end; None if unknown yet."""
        if highwater is None:
            return None
        # Nothing processed since assignment: the resume point is the committed offset.
        nxt = self.last_offset[tp] + 1 if tp in self.last_offset else committed or 0
        return max(0, highwater - nxt)

    def now_for(
        self,
        partition: int,
        wall_ms: int,
        highwater: Callable[[TP], int | None],
        committed: Callable[[TP], int | None],
        fetched: Callable[[TP], int | None] | None = None,
    ) -> int | None:
        """The partition's `now`, or None when it cannot advance yet.

        `fetched(tp)`: when the end offset `highwater(tp)` was learned (None: not known;
        without the callable, now). A caught-up partition vouches for that moment, not later.
        """
        lagging_event_times: list[int] = []
        for topic in self.input_topics:
            tp = (topic, partition)
            lag = self.lag(tp, highwater(tp), committed(tp))
            if lag is None:
                return None  # end offset unknown (just assigned): do not guess
            if lag > self.caught_up_lag:
                seen = self.max_event.get(tp)
                if seen is None:
                    return None  # behind, and nothing read yet: no event time to trust
                lagging_event_times.append(seen)
        if lagging_event_times:
            return min(lagging_event_times)
        known = wall_ms
        if fetched is not None:
            for topic in self.input_topics:
                at = fetched((topic, partition))
                if at is not None and at < known:
                    known = at
        return known - self.delay_ms
