"""/healthz, /readyz and JSON logs of a real worker process on a real broker."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import orjson
import pytest

from detectors.envelope import iso_ms
from streams.broker import EmbeddedBroker
from tests.conftest import produce, wait_for


@pytest.fixture
def own_broker(tmp_path) -> Iterator[EmbeddedBroker]:
    """A broker only this test uses, so pausing it disturbs no other test."""
    b = EmbeddedBroker(log_path=tmp_path / "own-broker.log").start()
    yield b
    if b.proc is not None and b.proc.poll() is None:
        os.killpg(b.proc.pid, signal.SIGCONT)
    b.stop()


def _ready(worker) -> tuple[int, dict]:
    status, body = worker.get("/readyz")
    return status, json.loads(body)


def test_readyz_turns_unready_while_the_broker_does_not_answer_and_recovers(own_broker, start_worker):
    worker = start_worker({"KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap})
    status, body = _ready(worker)
    assert status == 200
    assert body["broker_reachable"] is True
    assert body["recovered"] is True
    assert body["partitions"] == [0, 1]
    assert worker.metric("churn_worker_ready") == 1

    assert own_broker.proc is not None
    os.killpg(own_broker.proc.pid, signal.SIGSTOP)  # connections still open, nothing answers
    try:
        wait_for(lambda: _ready(worker) == (503, {**body, "ready": False, "broker_reachable": False}),
                 timeout=30, what="/readyz to report the broker unreachable")
        assert worker.get("/healthz")[0] == 200  # alive all the same: no restart wanted
    finally:
        os.killpg(own_broker.proc.pid, signal.SIGCONT)
    wait_for(lambda: _ready(worker)[0] == 200, timeout=90, what="/readyz to recover after the broker resumes")
    assert worker.proc.poll() is None


def test_json_logs_parse_line_by_line_and_keep_customer_ids_out(broker, topics, start_worker):
    worker = start_worker({"CHURN_LOG_FORMAT": "json", "CHURN_LOG_LEVEL": "info"})
    secret = "cust-3f9a-private"
    now = time.time_ns() // 1_000_000
    produce(broker.bootstrap, [
        (topics.courier_ratings, secret.encode(), orjson.dumps(
            {"event_id": "j1", "type": "courier_rating", "customer_id": secret, "occurred_at": iso_ms(now),
             "order_id": "o-1", "rating": 1})),
        (topics.orders, secret.encode(), b"{not json"),
    ])
    wait_for(lambda: worker.metric("churn_triggers_total", kind="negative_rating") == 1
             and worker.metric("churn_dlq_messages_total", reason="malformed_json") == 1,
             what="the trigger and the dead letter")
    worker.stop()
    lines = [ln for ln in worker.log().splitlines() if ln.strip()]
    assert len(lines) > 5
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    assert {r["level"] for r in records} <= {"debug", "info", "warning", "error", "critical"}
    assert not [ln for ln in lines if secret in ln]
