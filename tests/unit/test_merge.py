"""Per-partition event-time merge of the input topics (streams/live/merge.py) and its use by the runtime."""

from __future__ import annotations

from typing import Any

import orjson

from detectors.envelope import iso_ms
from streams.live.merge import Merger
from streams.live.metrics import Metrics
from streams.live.runtime import Runtime
from streams.settings import Settings, Topics

T0 = 1_760_000_000_000
ORDERS, RATINGS = 0, 1


def _never(_: int) -> bool:
    return False


def test_messages_go_out_lowest_event_time_first_across_topics():
    m: Merger[str] = Merger(n_topics=2, max_wait_ms=1000, max_held=100)
    m.add(0, RATINGS, 0, T0 + 30, 0, "rating@30")
    m.add(0, RATINGS, 1, T0 + 40, 0, "rating@40")
    m.add(0, ORDERS, 0, T0 + 10, 0, "order@10")
    m.add(0, ORDERS, 1, T0 + 35, 0, "order@35")
    assert list(m.release(0, 0, _never)) == ["order@10", "rating@30", "order@35", "rating@40"]
    assert m.held == 0


def test_each_topic_is_asked_for_unread_messages_once_per_release():
    """Nothing is received while a release runs: one answer per topic is enough (it was one per item)."""
    m: Merger[str] = Merger(n_topics=3, max_wait_ms=1000, max_held=100)
    for offset in range(5):
        m.add(0, RATINGS, offset, T0 + offset, 0, f"rating@{offset}")
    asked: list[int] = []

    def unread(i: int) -> bool:
        asked.append(i)
        return False

    assert len(list(m.release(0, 0, unread))) == 5
    assert sorted(asked) == [0, 1, 2]  # each once (the last: ratings, once they ran out)


def test_a_topic_with_unread_messages_holds_the_partition_back_until_they_come_or_the_wait_ends():
    m: Merger[str] = Merger(n_topics=2, max_wait_ms=1000, max_held=100)
    m.add(0, RATINGS, 7, T0 + 30, 5_000, "rating@30")
    orders_unread = {"value": True}
    assert list(m.release(0, 5_100, lambda i: i == ORDERS and orders_unread["value"])) == []
    m.add(0, ORDERS, 3, T0 + 10, 5_200, "order@10")
    # The order came: it is earlier, it goes first; the rating waits again for the next order.
    assert list(m.release(0, 5_200, lambda i: i == ORDERS and orders_unread["value"])) == ["order@10"]
    assert list(m.release(0, 5_999, lambda i: i == ORDERS)) == []
    assert list(m.release(0, 6_000, lambda i: i == ORDERS)) == ["rating@30"]  # waited max_wait_ms
    assert m.position(ORDERS, 0) == 4
    assert m.position(RATINGS, 0) == 8
    assert m.position(RATINGS, 1) is None


def test_nothing_unread_elsewhere_means_no_waiting_and_partitions_are_independent():
    m: Merger[str] = Merger(n_topics=2, max_wait_ms=1000, max_held=100)
    m.add(1, RATINGS, 0, T0, 0, "p1")
    m.add(2, RATINGS, 0, T0, 0, "p2")
    assert list(m.release(2, 0, _never)) == ["p2"]
    assert m.partitions() == [1]


def test_the_held_bound_releases_regardless():
    m: Merger[int] = Merger(n_topics=2, max_wait_ms=60_000, max_held=2)
    for i in range(3):
        m.add(0, RATINGS, i, T0 + i, 0, i)
    assert list(m.release(0, 0, lambda i: True)) == [0]  # over the bound by one: one goes
    assert m.held == 2


def test_drain_hands_out_everything_in_event_time_order():
    m: Merger[str] = Merger(n_topics=2, max_wait_ms=60_000, max_held=100)
    m.add(0, RATINGS, 0, T0 + 2, 0, "b")
    m.add(0, ORDERS, 0, T0 + 1, 0, "a")
    m.add(3, ORDERS, 0, T0, 0, "c")
    assert sorted(m.drain()) == ["a", "b", "c"]
    m.add(0, RATINGS, 1, T0 + 3, 0, "d")
    m.clear()
    assert list(m.drain()) == []
    assert m.position(RATINGS, 0) is None


def _order(cid: str, i: int, ts: int, category: str) -> dict[str, Any]:
    return {"event_id": f"o{i}", "type": "order", "customer_id": cid, "occurred_at": iso_ms(ts),
            "order_id": f"ord-{i}", "category": category, "amount": 20.0}


def test_a_backlog_read_topic_by_topic_is_applied_as_replay_would_apply_it():
    """The bug this fixes: a rating read before the customer's earlier orders carried stale context."""
    topics = Topics()
    rt = Runtime(Settings(), {}, Metrics(), lambda: T0 + 60_000)
    orders = [_order("c", i, T0 + i * 1000, "fashion") for i in range(3)]
    rating = {"event_id": "r1", "type": "courier_rating", "customer_id": "c", "occurred_at": iso_ms(T0 + 5000),
              "order_id": "ord-2", "rating": 1}
    ends = {(topics.orders, 0): 3, (topics.courier_ratings, 0): 1}

    def unread(tp: tuple[str, int], position: int | None) -> bool:
        return (position or 0) < ends.get(tp, 0)

    out: list[tuple[str, list[Any]]] = []
    # The rating topic is read first, as a backlog often is: it must wait for the orders.
    for handle, records in rt.receive(topics.courier_ratings, 0, 0, b"c", orjson.dumps(rating), None, [], "r1",
                                      unread):
        out.append((handle, records))
    assert out == []
    for i, o in enumerate(orders):
        for handle, records in rt.receive(topics.orders, 0, i, b"c", orjson.dumps(o), None, [], o["event_id"],
                                          unread):
            out.append((handle, records))
            rt.write_state()
    assert [h for h, _ in out] == ["o0", "o1", "o2", "r1"]
    fired = [orjson.loads(r.value)["data"] for r in out[-1][1]]
    assert [d["kind"] for d in fired] == ["negative_rating"]
    assert fired[0]["favourite_category"] == "fashion"  # the orders were applied first, as in replay


def test_invalid_input_is_dead_lettered_at_once_and_counts_as_received():
    topics = Topics()
    rt = Runtime(Settings(), {}, Metrics(), lambda: T0)
    got = list(rt.receive(topics.orders, 1, 4, b"k", b"{not json", None, [], "bad", lambda tp, pos: True))
    assert [(h, [r.topic for r in recs]) for h, recs in got] == [("bad", [topics.dlq])]
    assert rt.merger.position(0, 1) == 5


def test_a_dead_letter_behind_a_held_event_waits_its_turn():
    """Faust commits past one unacknowledged message at a partition's head once the next is
    acknowledged: a dead letter acknowledged at once behind a held event would commit the event."""
    topics = Topics()
    rt = Runtime(Settings(), {}, Metrics(), lambda: T0 + 60_000)
    ratings_unread = {"value": True}

    def unread(tp: tuple[str, int], position: int | None) -> bool:
        return tp[0] == topics.courier_ratings and ratings_unread["value"]

    order = orjson.dumps(_order("c", 0, T0, "home"))
    assert list(rt.receive(topics.orders, 0, 0, b"c", order, None, [], "order", unread)) == []
    assert list(rt.receive(topics.orders, 0, 1, b"c", b"{not json", None, [], "bad", unread)) == []
    ratings_unread["value"] = False
    got = [(h, [r.topic for r in recs]) for h, recs in rt.release(0, unread)]
    assert got == [("order", []), ("bad", [topics.dlq])]
