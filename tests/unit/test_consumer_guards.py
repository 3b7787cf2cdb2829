"""The guards the worker puts on Faust's consumer (streams/live/faust_patches.py, streams/live/app.py).

A stand-in consumer records what Faust's recovery would cause: which partitions
are resumed, and when, relative to the seek to the committed offsets. The
broker-level proof is in the fault tests: a restarted worker whose consumer saw
an offset jump fails them (tests/faults/harness.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest

from streams.live.consumer_view import STALL_S, watch_input
from streams.live.faust_patches import count_offset_gaps, resume_inputs_after_seek
from streams.live.metrics import Metrics


class TP(NamedTuple):
    topic: str
    partition: int


ORDERS, CHANGELOG = TP("orders", 0), TP("app-customers-changelog", 0)


class Consumer:
    def __init__(self, fail_seek: bool = False) -> None:
        self.assigned = {ORDERS, CHANGELOG}
        self.active: set[TP] = set()
        self._paused_partitions: set[TP] = set()
        self.active_during_seek: set[TP] | None = None
        self.fail_seek = fail_seek
        self.gaps: list[tuple[TP, int, int]] = []

    def resume_partitions(self, tps: Any) -> None:
        self.active |= set(tps)

    async def perform_seek(self) -> None:
        self.active_during_seek = set(self.active)
        await asyncio.sleep(0)  # the fetcher runs while the seek waits for the broker
        if self.fail_seek:
            raise RuntimeError("seek failed")

    def assignment(self) -> set[TP]:
        return self.assigned

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))


def _guarded(**kwargs: Any) -> Any:  # a Consumer with .unstick set on it
    c = Consumer(**kwargs)
    c.unstick = resume_inputs_after_seek(c, lambda tp: tp.topic.endswith("-changelog"))  # type: ignore[attr-defined]
    return c


def test_input_partitions_resume_only_once_the_seek_is_done() -> None:
    c = _guarded()
    c.resume_partitions({ORDERS, CHANGELOG})  # what recovery does right before the seek
    assert c.active == {CHANGELOG}, "changelogs must go on being read: recovery needs them"
    asyncio.run(c.perform_seek())
    assert c.active_during_seek == {CHANGELOG}, "input was fetchable while the seek moved its offsets"
    assert c.active == {ORDERS, CHANGELOG}


def test_a_failed_seek_does_not_leave_the_input_paused() -> None:
    c = _guarded(fail_seek=True)
    c.resume_partitions({ORDERS})
    with pytest.raises(RuntimeError):
        asyncio.run(c.perform_seek())
    assert ORDERS in c.active


def test_a_seek_without_a_pending_resume_changes_nothing() -> None:
    c = _guarded()
    asyncio.run(c.perform_seek())
    assert c.active == set()


def test_input_left_paused_after_a_rebalance_is_resumed_at_the_second_check() -> None:
    c = _guarded()
    c.resume_partitions({ORDERS})  # and no seek ever comes
    assert c.unstick(True) == [], "one check cannot tell a stuck partition from a rebalance starting"
    assert c.unstick(True) == [ORDERS]
    assert ORDERS in c.active
    c._paused_partitions = {ORDERS, CHANGELOG}  # paused by Faust itself, never resumed
    c.unstick(True)
    assert c.unstick(True) == [ORDERS], "changelogs are paused once recovered: not stuck"


def test_no_input_is_resumed_while_a_rebalance_is_under_way() -> None:
    c = _guarded()
    c.resume_partitions({ORDERS})
    assert c.unstick(True) == []
    assert c.unstick(False) == []  # a rebalance: what was suspect is forgotten
    assert c.unstick(True) == []
    assert ORDERS not in c.active
    asyncio.run(c.perform_seek())
    assert ORDERS in c.active
    assert c.unstick(True) == []
    assert c.unstick(True) == []


def test_offset_jumps_on_input_topics_are_counted_and_still_recorded() -> None:
    c, metrics = Consumer(), Metrics()
    metrics.initialise(("orders",), "test", "cfg")
    count_offset_gaps(c, metrics, {"orders"})
    asyncio.run(c._add_gap(ORDERS, 70, 88))
    asyncio.run(c._add_gap(CHANGELOG, 3, 5))  # changelogs are compacted: their jumps are normal
    assert c.gaps == [(ORDERS, 70, 88), (CHANGELOG, 3, 5)]
    assert metrics.registry.get_sample_value("churn_consumer_offset_gaps_total", {"topic": "orders"}) == 1


class _Watched(Consumer):
    def __init__(self) -> None:
        super().__init__()
        self.assigned = {ORDERS, CHANGELOG, DELIVERIES, RATINGS}
        self._read_offset: dict[TP, int] = {ORDERS: 41}
        self._committed_offset: dict[TP, int] = {}
        self.flow_active = True
        self.app = type("App", (), {"consumer_generation_id": 3})()

    def _get_active_partitions(self) -> set[TP]:
        return self.active


DELIVERIES, RATINGS = TP("deliveries", 0), TP("ratings", 0)


def test_an_input_partition_the_fetcher_stopped_polling_is_reported_and_made_active(caplog) -> None:
    c = _Watched()
    c._paused_partitions = {RATINGS}  # paused: unstick's business, not this check's
    clock = {"now": 1_000_000}
    polled = {DELIVERIES: 1_000_000}  # ORDERS never polled; the changelog is not input
    check = watch_input(c, {"orders", "deliveries", "ratings"}, polled.get, lambda: clock["now"], lambda tp: None)
    assert check(True) == []
    clock["now"] += int(STALL_S * 1000) - 1
    polled[DELIVERIES] = clock["now"]
    assert check(True) == [], "settled for less than STALL_S: a rebalance may just have ended"
    clock["now"] += 2
    with caplog.at_level("WARNING", logger="churn_signals"):
        assert check(True) == [ORDERS]
    assert ORDERS in c.active
    assert "orders[0] (active False, buffered False, last fetch never, read offset 41)" in caplog.text
    assert check(True) == [], "made active: the fetcher gets another STALL_S"
    clock["now"] += int(STALL_S * 1000) + 1
    polled[DELIVERIES] = polled[ORDERS] = clock["now"]
    assert check(True) == []
    assert check(False) == []
    clock["now"] += int(STALL_S * 1000) * 5
    assert check(True) == [], "the settled time starts again after a rebalance"


def test_records_waiting_on_a_polled_partition_with_no_read_progress_are_reported(caplog) -> None:
    c = _Watched()
    c._committed_offset = {DELIVERIES: 9}
    clock = {"now": 1_000_000}
    ends = {ORDERS: 50, DELIVERIES: 10}  # orders: 8 records past its read offset 41; deliveries: caught up
    check = watch_input(c, {"orders", "deliveries"}, lambda tp: clock["now"], lambda: clock["now"], ends.get)
    with caplog.at_level("WARNING", logger="churn_signals"):
        check(True)
        clock["now"] += int(STALL_S * 1000) - 1
        check(True)
        assert "records waiting" not in caplog.text
        clock["now"] += 1
        check(True)
        assert "orders[0] (read offset 41, end 50, " in caplog.text
        assert "deliveries" not in caplog.text
        caplog.clear()
        clock["now"] += int(STALL_S * 1000)
        check(True)
        assert "records waiting" not in caplog.text, "said once per stall"
        c._read_offset[ORDERS] = 42  # progress: a later stall is a new one
        check(True)
        clock["now"] += int(STALL_S * 1000)
        check(True)
        assert "orders[0] (read offset 42, end 50, " in caplog.text
