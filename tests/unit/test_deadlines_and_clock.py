"""The deadline index and the hybrid watermark, with explicit times (no clock reads)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.deadlines import BUCKET_BITS, DeadlineIndex
from streams.live.clock import Watermarks


def test_index_pops_only_due_customers_in_deadline_then_id_order():
    idx = DeadlineIndex()
    for cid, d in [("c", 30), ("a", 10), ("b", 10), ("d", 99)]:
        idx.set(cid, d)
    assert list(idx.pop_due(30)) == ["a", "b", "c"]
    assert len(idx) == 1
    assert idx.peek() == 99


def test_index_moves_and_removes_deadlines_lazily():
    idx = DeadlineIndex()
    idx.set("a", 10)
    idx.set("a", 50)          # moved later: the old heap entry is stale
    idx.set("b", 20)
    idx.set("b", None)        # removed
    assert list(idx.pop_due(40)) == []
    assert list(idx.pop_due(50)) == ["a"]
    assert idx.peek() is None


def test_index_compacts_stale_entries():
    idx = DeadlineIndex()
    for i in range(5000):
        idx.set("same", i)
    assert idx._entries < 3000
    assert list(idx.pop_due(10**9)) == ["same"]


def test_sweep_cost_is_proportional_to_due_not_to_size():
    idx = DeadlineIndex()
    for i in range(100_000):
        idx.set(f"c{i}", 1_000 + i)
    popped = list(idx.pop_due(1_009))
    assert popped == [f"c{i}" for i in range(10)]
    # the untouched remainder is still a heap of 99,990 live entries
    assert len(idx) == 99_990


_BUCKET = 1 << BUCKET_BITS
# Deadlines over a few buckets, with ties and values on bucket edges.
_times = st.one_of(st.integers(0, 6 * _BUCKET), st.sampled_from([_BUCKET - 1, _BUCKET, 2 * _BUCKET, 2 * _BUCKET + 1]))
_ops = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcdefgh"), st.one_of(st.none(), _times)),
    st.tuples(st.just("pop"), st.just(""), _times),
    st.tuples(st.just("peek"), st.just(""), st.just(0)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_index_agrees_with_a_sorted_model(ops):
    """Near heap, far buckets, horizon and compaction give what a plain sorted dict gives."""
    idx, model = DeadlineIndex(), dict[str, int]()
    clock = 0
    for op, cid, value in ops:
        if op == "set":
            idx.set(cid, value)
            if value is None:
                model.pop(cid, None)
            else:
                model[cid] = value
        elif op == "pop":
            clock = max(clock, value)  # sweeps never go back in time
            due = sorted((d, c) for c, d in model.items() if d <= clock)
            assert idx.pop_due(clock) == [c for _, c in due]
            for _, c in due:
                del model[c]
        else:
            assert idx.peek() == min(model.values(), default=None)
        assert len(idx) == len(model)
        assert idx.any_due(clock) or not any(d <= clock for d in model.values())


def test_index_compacts_far_buckets_too():
    idx = DeadlineIndex()
    for i in range(5000):
        idx.set("same", 10 * _BUCKET + i * _BUCKET)  # every move lands in a new far bucket
    assert idx._entries < 3000
    assert len(idx._far) < 3000
    assert idx.pop_due(10**12) == ["same"]


TOPICS = ("orders", "deliveries")


def _wm(lag: int = 10) -> Watermarks:
    return Watermarks(TOPICS, lag)


def test_caught_up_partition_runs_on_wall_clock_even_without_traffic():
    wm = _wm()
    hw = {("orders", 0): 0, ("deliveries", 0): 0}
    assert wm.now_for(0, 5_000, hw.get, lambda tp: None) == 5_000


def test_unknown_end_offsets_do_not_advance_the_clock():
    wm = _wm()
    assert wm.now_for(0, 5_000, lambda tp: None, lambda tp: None) is None


def test_lagging_partition_uses_event_time_of_the_slowest_lagging_topic():
    wm = _wm(lag=10)
    wm.observe("orders", 0, 99, 1_000)        # orders far behind (hw 500)
    wm.observe("deliveries", 0, 99, 9_000)    # deliveries far behind too, but ahead in event time
    hw = {("orders", 0): 500, ("deliveries", 0): 500}
    assert wm.now_for(0, 50_000, hw.get, lambda tp: None) == 1_000
    wm.observe("deliveries", 0, 499, 9_500)   # deliveries caught up: no longer holds the clock
    assert wm.now_for(0, 50_000, hw.get, lambda tp: None) == 1_000
    wm.observe("orders", 0, 495, 8_000)       # orders within the lag threshold: wall clock
    assert wm.now_for(0, 50_000, hw.get, lambda tp: None) == 50_000


@pytest.mark.parametrize(("committed", "expected"), [(None, None), (400, None), (495, 50_000)])
def test_restarted_worker_with_backlog_does_not_jump_to_wall_clock(committed, expected):
    # Nothing processed since the restart: lag is measured from the committed offset.
    wm = _wm(lag=10)
    hw = {("orders", 0): 500, ("deliveries", 0): 0}
    assert wm.now_for(0, 50_000, hw.get, lambda tp: committed if tp == ("orders", 0) else None) == expected


def test_caught_up_partition_vouches_for_its_last_fetch_not_for_the_wall_clock():
    # An order appended after the last fetch response is unread although the partition
    # looked caught up: the clock must not pass the moment that response was made.
    wm = Watermarks(TOPICS, 0)
    hw = {("orders", 0): 7, ("deliveries", 0): 0}
    committed = {("orders", 0): 7, ("deliveries", 0): 0}
    fetched = {("orders", 0): 4_200, ("deliveries", 0): 4_900}
    assert wm.now_for(0, 5_000, hw.get, committed.get, fetched.get) == 4_200
    assert wm.now_for(0, 5_000, hw.get, committed.get, lambda tp: None) == 5_000  # not known: wall
    assert wm.now_for(0, 5_000, hw.get, committed.get, lambda tp: 9_000) == 5_000  # never ahead of the wall


def test_producer_delay_keeps_the_caught_up_clock_behind_events_on_their_way():
    wm = Watermarks(TOPICS, 0, delay_ms=2_000)
    hw = {("orders", 0): 0, ("deliveries", 0): 0}
    assert wm.now_for(0, 5_000, hw.get, lambda tp: None, lambda tp: 4_500) == 2_500
    wm.observe("orders", 0, 3, 4_000)  # a lagging partition follows event time: no allowance there
    assert wm.now_for(0, 5_000, {("orders", 0): 9, ("deliveries", 0): 0}.get, lambda tp: None) == 4_000
