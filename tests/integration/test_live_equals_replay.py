"""A live worker with a fitted cadence model and the suppression rules emits what replay emits.

Same log, same configuration (CHURN_DETECTOR_PARAMS, holdout, cooldowns, return
exclusion), two paths: the real worker on the embedded broker (triggers and
audit topics read by a plain client) and the offline replay core. Each
customer's events live on one topic, so no decision depends on how the worker
interleaves topics (cross-topic order is not defined live; consent, which
always crosses topics, is covered by the scenario suite and the properties),
except the marketing consent alice and erin grant a day before their first
order (win-backs need one): days before any decision reads it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from detectors.config import DAY_MS, HOUR_MS
from detectors.envelope import encode, iso_ms
from streams.offline.replay import Replayer
from streams.settings import load_settings
from tests.conftest import consume, produce_events

PARAMS = {"model": "bgnbd", "time_unit": "weeks", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def _log(base: int) -> list[dict[str, Any]]:
    n = iter(range(1, 10_000))

    def order(cid: str, day: float, cat: str = "grocery", amount: float = 30.0) -> dict[str, Any]:
        i = next(n)
        return {"event_id": f"{cid}-{i}", "type": "order", "customer_id": cid, "occurred_at": iso_ms(
            base + int(day * DAY_MS)), "order_id": f"{cid}-o{i}", "category": cat, "amount": amount}

    def rating(cid: str, day: float, value: int) -> dict[str, Any]:
        i = next(n)
        return {"event_id": f"{cid}-{i}", "type": "courier_rating", "customer_id": cid,
                "occurred_at": iso_ms(base + int(day * DAY_MS)), "order_id": f"{cid}-o{i}", "rating": value}

    def delivery(cid: str, day: float, status: str, late_minutes: int | None = None) -> dict[str, Any]:
        i = next(n)
        at = base + int(day * DAY_MS)
        e = {"event_id": f"{cid}-{i}", "type": "delivery", "customer_id": cid, "occurred_at": iso_ms(at),
             "order_id": f"{cid}-o{i}", "status": status}
        if late_minutes is not None:
            e.update(promised_at=iso_ms(at - HOUR_MS), delivered_at=iso_ms(at - HOUR_MS + late_minutes * 60_000))
        return e

    def grant(cid: str, day: float) -> dict[str, Any]:
        i = next(n)
        return {"event_id": f"{cid}-{i}", "type": "consent", "customer_id": cid,
                "occurred_at": iso_ms(base + int(day * DAY_MS)), "channel": "all", "granted": True}

    events = [
        grant("alice", -1), grant("erin", -1), grant("grace", -1),  # marketing consent: their win-backs go out
                                                                   # (or would, for grace in the holdout)
        order("alice", 0), order("alice", 9),                      # return, then return_exclusion
        order("grace", 0), order("grace", 20),                     # holdout: suppressed, return measured
                                                                   # (a return only where treatment had sent one)
        order("erin", 0, "other", 40), order("erin", 10, "other", 40), order("erin", 20, "other", 40),
        rating("olivia", 1, 1),                                    # now + follow-up
        rating("cara", 0, 1), rating("cara", 2, 2), rating("cara", 8, 1),   # cooldown
        rating("judy", 1, 1),                                      # holdout
        delivery("peggy", 1, "failed"), delivery("peggy", 3, "returned"), delivery("peggy", 3.25, "failed"),
        delivery("rupert", 1, "delivered", 45), delivery("rupert", 5, "delivered", 120),
    ]
    events.sort(key=lambda e: e["occurred_at"])
    return events


def test_live_worker_with_params_and_suppression_equals_replay(broker, topics, start_worker, tmp_path: Path):
    params = tmp_path / "params.json"
    params.write_bytes(orjson.dumps(PARAMS))
    env = {"CHURN_DETECTOR_PARAMS": str(params)}
    base = (time.time_ns() // 1_000_000 // DAY_MS - 100) * DAY_MS   # 100 days ago, midnight UTC
    events = _log(base)

    cfg = load_settings(env=env).detector
    expected: list[bytes] = []
    replayer = Replayer(cfg, until_ms=time.time_ns() // 1_000_000,
                        on_trigger=lambda ce, _d: expected.append(encode(ce)))
    from schemas import EventDecoder

    decoder = EventDecoder()
    replayer.run(decoder.validate(e) for e in events)
    kinds = {orjson.loads(b)["data"]["kind"] for b in expected}
    decisions = {orjson.loads(b)["data"]["suppression_reason"] for b in expected}
    assert kinds >= {"silence", "customer_returned", "negative_rating", "delivery_failed", "delivery_late",
                     "delivery_late_repeated"}
    assert decisions >= {None, "holdout", "cooldown", "return_exclusion"}

    # The whole log is in the topics before the worker starts. With caught_up_lag 0 its clock follows event
    # time until everything is read, so no deadline fires before a customer's later orders are read (a small
    # backlog would otherwise count as caught up and run on the wall clock).
    produce_events(broker.bootstrap, topics, events)
    worker = start_worker({**env, "CHURN_CAUGHT_UP_LAG": "0"})
    n_emit = sum(1 for b in expected if orjson.loads(b)["data"]["decision"] == "emit")
    emitted = consume(broker.bootstrap, topics.triggers, until=lambda m: len(m) >= n_emit, timeout=90)
    audited = consume(broker.bootstrap, topics.audit, until=lambda m: len(m) >= len(expected) - n_emit, timeout=60)
    live = sorted(m.value for m in [*emitted, *audited])
    def brief(values: list[bytes]) -> set[tuple[str, str, str, str, str]]:
        return {(d["customer_id"], d["kind"], d["stage"], d["event_time"], d["decision"])
                for d in (orjson.loads(v)["data"] for v in values)}

    assert brief(live) == brief(expected), (sorted(brief(live) - brief(expected)),
                                            sorted(brief(expected) - brief(live)), worker.log()[-3000:])
    assert live == sorted(expected)
    assert all(orjson.loads(m.value)["data"]["decision"] == "suppressed" for m in audited)
    assert worker.metric("churn_returns_total", group="holdout") == 1
