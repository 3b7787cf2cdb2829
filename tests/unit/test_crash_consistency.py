"""A crash between a state write and the offset commit neither applies an event twice nor loses one.

The worker is simulated without Faust: a dict plays the table, a copy decoded
from its bytes plays the changelog read back on recovery, and "redelivery" is
calling the runtime again with the messages after the committed offset.
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors import DetectorConfig, Engine, PartitionCore
from detectors.envelope import iso_ms
from streams.connection import KafkaConnection
from streams.live.metrics import Metrics
from streams.live.runtime import Outgoing, Runtime
from streams.live.state_store import Stored, decode_stored
from streams.settings import Settings

T0 = 1_760_000_000_000
NOW = T0 + 3_600_000


def _settings() -> Settings:
    return Settings(kafka=KafkaConnection("127.0.0.1:9092"))


def _runtime(table: dict[str, Stored]) -> Runtime:
    return Runtime(_settings(), table, Metrics(), lambda: NOW)


def _events(customer: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    """n events of one busy customer: orders and ratings, some negative (they trigger)."""
    topics = _settings().topics
    out = []
    for i in range(n):
        ts = T0 + i * 1000
        if i % 3 == 0:
            ev = {"event_id": f"{customer}-{i}", "type": "order", "customer_id": customer, "occurred_at": iso_ms(ts),
                  "order_id": f"o-{i}", "category": "grocery", "amount": 10.0 + i}
            out.append((topics.orders, ev))
        else:
            ev = {"event_id": f"{customer}-{i}", "type": "courier_rating", "customer_id": customer,
                  "occurred_at": iso_ms(ts), "order_id": f"o-{i - i % 3}", "rating": 1 if i % 7 == 0 else 5}
            out.append((topics.courier_ratings, ev))
    return out


def _feed(rt: Runtime, events: list[tuple[str, dict[str, Any]]], offsets: dict[str, int],
          start: int = 0) -> list[Outgoing]:
    """Deliver events[start:] on partition 0; each topic's offsets count from 0."""
    counters: dict[str, int] = {}
    sent: list[Outgoing] = []
    for i, (topic, ev) in enumerate(events):
        offset = counters.get(topic, 0)
        counters[topic] = offset + 1
        if i < start:
            continue
        offsets[ev["event_id"]] = offset
        records = rt.on_input(topic, 0, offset, ev["customer_id"].encode(), orjson.dumps(ev))
        sent.extend(records)
        rt.write_state()  # the agent writes once the records are delivered
    return sent


def _recovered(table: dict[str, Stored]) -> dict[str, Stored]:
    """What a restarted worker reads back from the changelog: the bytes written, decoded."""
    return {k: decode_stored(v.raw) for k, v in table.items()}


def _ids(records: list[Outgoing]) -> list[str]:
    return [orjson.loads(r.value)["id"] for r in records if r.value is not None]


def test_redelivery_after_a_crash_applies_nothing_twice_even_beyond_the_seen_ring():
    events = _events("busy", 30)       # far more than the 8 event ids the core remembers
    table: dict[str, Stored] = {}
    _feed(_runtime(table), events, {})
    before = table["busy"].state.to_list()

    # Crash: the last commit covered only the first 4 messages; the changelog has all 30.
    table = _recovered(table)
    rt = _runtime(table)
    again = _feed(rt, events, {}, start=4)
    assert again == []  # no trigger repeats from state that already has them
    assert table["busy"].state.to_list() == before
    sample = rt.metrics.registry.get_sample_value
    topics = _settings().topics
    assert sample("churn_events_total", {"topic": topics.orders, "outcome": "duplicate"}) == 8
    assert sample("churn_events_total", {"topic": topics.courier_ratings, "outcome": "duplicate"}) == 18
    assert not sample("churn_events_total", {"topic": topics.orders, "outcome": "accepted"})


def test_the_seen_ring_alone_would_apply_old_redelivered_orders_twice():
    """Why the shell keeps offsets: the core's dedup covers the last 8 events per customer only."""
    from schemas import EventDecoder

    decoder = EventDecoder()
    evs = [decoder.decode(orjson.dumps(e), now_ms=NOW) for _, e in _events("busy", 30)]
    store: dict[str, Any] = {}
    core = PartitionCore(Engine(DetectorConfig()), store, 0)
    for ev in evs:
        core.apply(ev)
    orders = store["busy"].n_orders
    for ev in evs[4:]:
        core.apply(ev)
    assert store["busy"].n_orders > orders


def test_a_crash_before_the_triggers_are_delivered_repeats_them_instead_of_losing_them():
    rating = {"event_id": "r-1", "type": "courier_rating", "customer_id": "angry", "occurred_at": iso_ms(T0),
              "order_id": "o-1", "rating": 1}
    topic = _settings().topics.courier_ratings
    table: dict[str, Stored] = {}
    rt = _runtime(table)
    first = rt.on_input(topic, 0, 0, b"angry", orjson.dumps(rating))
    assert [orjson.loads(r.value or b"null")["data"]["kind"] for r in first] == ["negative_rating"]
    # Not delivered yet, so not written: the changelog cannot say "fired" before the trigger exists.
    assert "angry" not in table
    # Crash here, then the message is redelivered to a fresh worker.
    rt2 = _runtime(_recovered(table))
    second = rt2.on_input(topic, 0, 0, b"angry", orjson.dumps(rating))
    assert _ids(second) == _ids(first)  # the same trigger again, same id: a duplicate, not a loss
    rt2.write_state()
    assert table == {}
    assert "angry" in rt2.store.table


def test_a_written_state_is_a_frozen_snapshot_later_events_do_not_change():
    table: dict[str, Stored] = {}
    rt = _runtime(table)
    events = _events("c", 6)
    _feed(rt, events[:3], {})
    stored = table["c"]
    raw, as_list = stored.raw, stored.state.to_list()
    counters: dict[str, int] = {}
    for topic, _ in events[:3]:
        counters[topic] = counters.get(topic, 0) + 1
    for topic, e in events[3:]:
        offset = counters.get(topic, 0)
        counters[topic] = offset + 1
        rt.on_input(topic, 0, offset, b"c", orjson.dumps(e))
        rt.write_state()
    # The object a pending changelog record refers to still encodes the state written then.
    assert stored.raw == raw
    assert stored.state.to_list() == as_list
    assert table["c"].raw != raw
    assert decode_stored(table["c"].raw) == table["c"]


def test_offsets_of_another_partition_never_hide_a_message():
    """A keyless message on another partition is applied: offsets compare only on the customer's partition."""
    topics = _settings().topics
    table: dict[str, Stored] = {}
    rt = _runtime(table)
    e1 = {"event_id": "a", "type": "order", "customer_id": "k", "occurred_at": iso_ms(T0),
          "order_id": "o-a", "category": "home", "amount": 5.0}
    e2 = {**e1, "event_id": "b", "order_id": "o-b", "occurred_at": iso_ms(T0 + 1000)}
    rt.on_input(topics.orders, 0, 50, b"k", orjson.dumps(e1))
    rt.on_input(topics.orders, 1, 3, None, orjson.dumps(e2))
    assert table["k"].state.n_orders == 2
