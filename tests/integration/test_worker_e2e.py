"""A real broker process and a real worker process, driven by a plain aiokafka client."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import orjson

from detectors.envelope import iso_ms
from schemas import load_schema
from tests.conftest import consume, produce, produce_events, wait_for


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _order(cid: str, eid: str, ts: int, category: str = "grocery", amount: float = 30.0) -> dict[str, Any]:
    return {"event_id": eid, "type": "order", "customer_id": cid, "occurred_at": iso_ms(ts),
            "order_id": f"o-{eid}", "category": category, "amount": amount}


def test_triggers_and_dead_letters_from_a_live_worker(broker, topics, start_worker):
    worker = start_worker()
    now = _now_ms()
    good = [
        _order("c-1", "e1", now - 3_600_000),
        {"event_id": "e2", "type": "delivery", "customer_id": "c-1", "occurred_at": iso_ms(now - 1_800_000),
         "order_id": "o-e1", "status": "failed"},
        {"event_id": "e3", "type": "courier_rating", "customer_id": "c-2", "occurred_at": iso_ms(now),
         "order_id": "o-9", "rating": 1},
        {"event_id": "e4", "type": "courier_rating", "customer_id": "c-3", "occurred_at": iso_ms(now),
         "order_id": "o-10", "rating": 5},
    ]
    bad: list[tuple[str, bytes | None, bytes, str]] = [
        (topics.orders, b"c-9", b'{"event_id": "x1", "type": "order", ', "malformed_json"),
        (topics.orders, b"c-9", orjson.dumps({**_order("c-9", "x2", now), "amount": -5}), "schema"),
        (topics.deliveries, b"c-9", orjson.dumps({"event_id": "x3", "type": "parcel", "customer_id": "c-9",
                                                   "occurred_at": iso_ms(now)}), "unknown_type"),
        (topics.courier_ratings, b"c-9", orjson.dumps({"event_id": "x4", "type": "courier_rating",
                                                        "customer_id": "c-9", "occurred_at": iso_ms(now),
                                                        "order_id": "o", "rating": 9}), "schema"),
        (topics.orders, b"c-9", orjson.dumps(_order("c-9", "x5", now + 86_400_000)), "future_time"),
        (topics.orders, b"c-9", b"[1, 2, 3]", "not_an_object"),
    ]
    produce(broker.bootstrap, [(t, k, v) for t, k, v, _ in bad])
    produce_events(broker.bootstrap, topics, good)

    triggers = consume(broker.bootstrap, topics.triggers, until=lambda m: len(m) >= 2, timeout=60)
    kinds = sorted((orjson.loads(m.value)["data"]["kind"], m.key) for m in triggers)
    assert kinds == [("delivery_failed", b"c-1"), ("negative_rating", b"c-2")]
    envelope_schema = load_schema("cloudevent-v1.json")
    payload_schema = load_schema("trigger-v1.json")
    for m in triggers:
        ce = orjson.loads(m.value)
        jsonschema.validate(ce, envelope_schema)
        jsonschema.validate(ce["data"], payload_schema)
        assert dict(m.headers)["content-type"] == b"application/cloudevents+json"

    dead = consume(broker.bootstrap, topics.dlq, until=lambda m: len(m) >= len(bad), timeout=60)
    assert len(dead) == len(bad)
    by_value = {m.value: m for m in dead}
    for topic, key, value, reason in bad:
        m = by_value[value]  # raw bytes unchanged
        h = dict(m.headers)
        assert m.key == key
        assert h["dlq.error.class"] == reason.encode()
        assert h["dlq.source.topic"] == topic.encode()
        assert int(h["dlq.source.offset"]) >= 0
        assert h["dlq.error.message"]
        assert h["dlq.stage"] in (b"decode", b"validate", b"semantic")
    wait_for(lambda: worker.metric("churn_dlq_messages_total") == len(bad), what="DLQ metric")
    assert worker.metric("churn_events_total", outcome="accepted") == len(good)
    assert worker.proc.poll() is None  # bad input never crashes the worker


def test_silence_fires_live_with_no_further_input(broker, topics, start_worker):
    windows = ",".join(f"{c}=3s/6s" for c in ("grocery", "fashion", "home", "other"))
    start_worker({"CHURN_DETECTOR_SILENCE_WINDOWS": windows, "CHURN_DETECTOR_SILENCE_LOST": "9s",
                  "CHURN_DETECTOR_ALLOWED_LATENESS": "1s"})
    last_order = _now_ms()
    grant = {"event_id": "q0", "type": "consent", "customer_id": "quiet-1", "occurred_at": iso_ms(last_order - 1000),
             "channel": "email", "granted": True}  # a win-back needs a grant of marketing consent
    produce_events(broker.bootstrap, topics, [grant, _order("quiet-1", "q1", last_order)])
    # Nothing else is sent: only the clock can make these fire.
    msgs = consume(broker.bootstrap, topics.triggers, until=lambda m: len(m) >= 3, timeout=60)
    data = [orjson.loads(m.value)["data"] for m in msgs]
    assert [(d["kind"], d["stage"]) for d in data] == [("silence", "at_risk"), ("silence", "dormant"),
                                                         ("silence", "lost")]
    assert [d["event_time"] for d in data] == [iso_ms(last_order + s * 1000) for s in (3, 6, 9)]
    assert all(d["customer_id"] == "quiet-1" for d in data)
    assert all(d["channels"] == ["email"] for d in data)


def test_duplicate_events_are_applied_once(broker, topics, start_worker):
    worker = start_worker()
    rating = {"event_id": "dup-1", "type": "courier_rating", "customer_id": "c-d", "occurred_at": iso_ms(_now_ms()),
              "order_id": "o-d", "rating": 2}
    produce_events(broker.bootstrap, topics, [rating, rating, rating])
    wait_for(lambda: worker.metric("churn_events_total", outcome="duplicate") == 2, what="two duplicates counted")
    msgs = consume(broker.bootstrap, topics.triggers, until=lambda m: len(m) >= 1, timeout=30)
    assert len(msgs) == 1
