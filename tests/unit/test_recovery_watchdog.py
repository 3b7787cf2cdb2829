"""The recovery watchdog: a changelog partition its recovery never reads is seeked again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.live.consumer_view import STALL_S, watch_recovery

NEVER_READ, READING, DONE = TP("c-changelog", 1), TP("c-changelog", 0), TP("c-changelog", 2)


class FakeConsumer:
    def __init__(self) -> None:
        self._read_offset: dict[Any, int] = {NEVER_READ: 91, READING: 40}
        self.seeks: list[dict[Any, int]] = []
        self.resumed: list[set[Any]] = []

    async def seek_wait(self, offsets: dict[Any, int]) -> None:
        self.seeks.append(offsets)

    def resume_partitions(self, tps: set[Any]) -> None:
        self.resumed.append(set(tps))


def make(started: float | None = 0.0, in_recovery: bool = True) -> tuple[Any, FakeConsumer, list[float]]:
    recovery = SimpleNamespace(
        in_recovery=in_recovery, _recovery_started_at=started,
        active_tps={NEVER_READ, READING, DONE},
        active_offsets={NEVER_READ: -1, READING: 30, DONE: 9},
        active_highwaters={NEVER_READ: 91, READING: 85, DONE: 10},
        _active_events_received_at={READING: 1.0})
    consumer = FakeConsumer()
    clock = [0.0]
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=consumer)
    return watch_recovery(app, lambda: clock[0]), consumer, clock


def test_a_partition_with_records_and_nothing_received_is_seeked_again_once_the_recovery_is_old() -> None:
    check, consumer, clock = make()
    clock[0] = STALL_S - 1
    assert asyncio.run(check()) == []            # young recovery: Faust's own fetch may still come
    assert consumer.seeks == []
    clock[0] = STALL_S + 1
    assert asyncio.run(check()) == [NEVER_READ]  # READING received records, DONE has none to read
    assert consumer.seeks == [{NEVER_READ: 0}]   # from where the recovery reads (-1: the start)
    assert NEVER_READ not in consumer._read_offset
    assert consumer._read_offset[READING] == 40
    assert consumer.resumed == [{NEVER_READ}]


def test_nothing_is_touched_outside_a_recovery() -> None:
    for started, in_recovery in ((None, True), (0.0, False)):
        check, consumer, clock = make(started, in_recovery)
        clock[0] = 10 * STALL_S
        assert asyncio.run(check()) == []
        assert consumer.seeks == []
        assert consumer.resumed == []
