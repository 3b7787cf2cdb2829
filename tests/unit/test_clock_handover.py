"""Clock ticks left in the clock topic by a partition's previous owner cannot fire silence early.

A tick vouches that the input before `now` was processed, by the worker that
sent it. The new owner of a partition applies a tick only up to what its own
watermark vouches for.
"""

from __future__ import annotations

import orjson

from detectors.envelope import iso_ms
from streams.live.metrics import Metrics
from streams.live.runtime import Runtime
from streams.settings import Settings, Topics

T0 = 1_760_000_000_000
DAY = 86_400_000


class Wall:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _order(cid: str, eid: str, ts: int) -> bytes:
    return orjson.dumps({"event_id": eid, "type": "order", "customer_id": cid, "occurred_at": iso_ms(ts),
                         "order_id": f"o-{eid}", "category": "grocery", "amount": 20.0})


def _kinds(records) -> list[str]:
    """Kinds decided, emitted or suppressed (a holdout customer's go to the audit topic)."""
    return [orjson.loads(r.value)["data"]["kind"] for r in records]


def test_a_tick_from_the_previous_owner_is_held_to_this_workers_watermark():
    wall = Wall(T0 + 30 * DAY)
    rt = Runtime(Settings(), {}, Metrics(), wall)
    orders = Topics().orders
    # This worker has read one order; 500 more messages of partition 0 are still unread.
    rt.on_input(orders, 0, 0, b"c", _order("c", "e0", T0))
    ends = {(orders, 0): 501}
    times = rt.tick_times([0], lambda tp: ends.get(tp, 0), lambda tp: 0)
    assert times == {0: T0}  # lagging: event time, not the wall clock
    # The previous owner's tick says "30 days later": applying it would call the customer lost.
    stale = b'{"now": %d}' % wall.now
    assert _kinds(rt.on_tick(0, stale)) == []
    assert rt.core(0).clock == T0


def test_ticks_are_ignored_until_this_worker_has_vouched_and_again_after_a_revocation():
    wall = Wall(T0)
    rt = Runtime(Settings(), {}, Metrics(), wall)
    orders = Topics().orders
    rt.on_input(orders, 0, 0, b"c", _order("c", "e0", T0))
    late = b'{"now": %d}' % (T0 + 30 * DAY)
    assert _kinds(rt.on_tick(0, late)) == []  # nothing vouched yet
    wall.now = T0 + 30 * DAY
    rt.tick_times([0], lambda tp: 1 if tp == (orders, 0) else 0, lambda tp: 0)  # caught up: wall clock
    assert "silence" in _kinds(rt.on_tick(0, late))
    rt.revoke_all()
    assert rt.vouched == {}
