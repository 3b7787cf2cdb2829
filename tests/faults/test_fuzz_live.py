"""Bad input at scale through a live worker: every message accounted for, the worker up, memory bounded.

Hypothesis makes the messages (random bytes, malformed and deeply nested JSON,
huge values, wrong types, NaN and infinities, far-future and ancient times,
unknown fields, valid events and repeats of them); they are produced to the four
input topics of a real worker. Then, from /metrics and the DLQ topic:

    produced == accepted + duplicate + late + invalid      (churn_events_total)
    messages in the DLQ topic == invalid
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.envelope import iso_ms
from tests.conftest import produce, wait_for
from tests.faults.harness import read_all

pytestmark = pytest.mark.faults

NOW = time.time_ns() // 1_000_000
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=30,
)
CUSTOMERS = st.sampled_from([f"fz{i}" for i in range(25)])


@st.composite
def valid_event(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(("order", "delivery", "courier_rating")))
    base = {"event_id": f"fz-{draw(st.integers(0, 400))}", "customer_id": draw(CUSTOMERS),
            "occurred_at": iso_ms(NOW - draw(st.integers(0, 3 * 86_400_000)))}
    if kind == "order":
        return {**base, "type": "order", "order_id": "o", "category": draw(st.sampled_from(("grocery", "home"))),
                "amount": draw(st.floats(0, 500, allow_nan=False))}
    if kind == "delivery":
        return {**base, "type": "delivery", "order_id": "o", "status": draw(st.sampled_from(("delivered", "failed")))}
    return {**base, "type": "courier_rating", "order_id": "o", "rating": draw(st.integers(1, 5))}


@st.composite
def broken_event(draw: Any) -> bytes:
    ev = draw(valid_event())
    how = draw(st.sampled_from(("wrong_type", "nan", "future", "ancient", "unknown_field", "missing", "huge",
                                "nested", "bad_time")))
    if how == "wrong_type":
        ev[draw(st.sampled_from(sorted(ev)))] = draw(JSON)
    elif how == "nan":
        key = "amount" if ev["type"] == "order" else "rating" if ev["type"] == "courier_rating" else "status"
        return orjson.dumps(ev).replace(orjson.dumps(ev[key]), draw(st.sampled_from((b"NaN", b"Infinity", b"-1e999"))))
    elif how == "future":
        ev["occurred_at"] = iso_ms(NOW + draw(st.integers(3_600_000, 10**13)))
    elif how == "ancient":
        ev["occurred_at"] = draw(st.sampled_from(("1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
                                                  "1899-12-31T23:59:59+01:00")))
    elif how == "unknown_field":
        ev[draw(TEXT.filter(lambda k: k not in ev))] = draw(JSON)
    elif how == "missing":
        del ev[draw(st.sampled_from(sorted(ev)))]
    elif how == "huge":
        ev["note"] = "x" * draw(st.integers(100_000, 600_000))
    elif how == "nested":
        depth = draw(st.integers(200, 5000))
        return b'{"event_id":"n","type":"order","x":' + b"[" * depth + b"]" * depth + b"}"
    else:
        ev["occurred_at"] = draw(st.sampled_from(("yesterday", "2026-13-45T25:61:00Z", "2026-01-01", "", "NaN")))
    return orjson.dumps(ev)


MESSAGES = st.one_of(
    st.binary(max_size=300),
    JSON.map(orjson.dumps),
    valid_event().map(orjson.dumps),
    broken_event(),
)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _collect(n: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much, HealthCheck.large_base_example])
    @given(MESSAGES)
    def gather(m: bytes) -> None:
        out.append(m)

    gather()
    return out


def test_fuzzed_input_is_all_accounted_for_and_the_worker_stays_up_with_bounded_memory(
        broker, topics, start_worker):
    worker = start_worker()
    messages = [*_collect(1500), b"", b"null", b"{}", b"[" * 100000, b'{"a":' * 50000]
    rng = random.Random(5)
    warm = messages[:300]
    records = [(rng.choice(topics.inputs), rng.choice([None, b"fz1", b"\xff\xfe"]) if rng.random() < 0.3
                else None, m) for m in messages]
    # key = customer id for decodable events half the time, so state is really written
    records = [(t, _key(m) if k is None and rng.random() < 0.5 else k, m) for t, k, m in records]

    produce(broker.bootstrap, records[:len(warm)])
    wait_for(lambda: _counted(worker) == len(warm), timeout=120, what="the warm-up batch accounted for")
    rss_before = _rss_kib(worker.proc.pid)
    produce(broker.bootstrap, records[len(warm):])
    wait_for(lambda: _counted(worker) == len(records), timeout=180, what="every message accounted for")
    rss_after = _rss_kib(worker.proc.pid)

    assert worker.proc.poll() is None
    worker.wait_ready(timeout=30)
    invalid = worker.metric("churn_events_total", outcome="invalid")
    dlq = read_all(broker.bootstrap, topics.dlq)
    assert len(dlq) == invalid
    # Raw bytes unchanged: every dead letter is one of the produced values, byte for byte,
    # with where it came from and why.
    assert not Counter(m.value for m in dlq) - Counter(m for _, _, m in records)
    assert all({"dlq.source.topic", "dlq.source.offset", "dlq.error.class", "dlq.stage"} <= dict(m.headers).keys()
               for m in dlq)
    assert worker.metric("churn_dlq_messages_total") == invalid
    # Valid events were applied (as late ones when the clock had passed them: they are days old).
    assert _events(worker, "accepted", "late") > 0
    # Bounded: the messages themselves are ~100 MB in total; keeping any of them would show.
    assert rss_after - rss_before < 64 * 1024, f"RSS grew from {rss_before} KiB to {rss_after} KiB"
    print(f"fuzz: {len(records)} messages, {int(invalid)} dead-lettered, RSS {rss_before} -> {rss_after} KiB")


def _key(m: bytes) -> bytes | None:
    try:
        doc = orjson.loads(m)
    except orjson.JSONDecodeError:
        return None
    cid = doc.get("customer_id") if isinstance(doc, dict) else None
    return cid.encode() if isinstance(cid, str) else None


def _events(worker: Any, *outcomes: str) -> float:
    return sum(worker.metric("churn_events_total", outcome=o) for o in outcomes)


def _counted(worker: Any) -> float:
    return _events(worker, "accepted", "duplicate", "late", "invalid")
