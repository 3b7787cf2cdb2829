"""What the worker counts, on a fresh registry, through the real Runtime with a dict as the table.

The clock is a fake (`Clock.now`), never patched time; values are read with
`get_sample_value`, prometheus_client's own testing pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detectors import Decision
from detectors.envelope import iso_ms
from detectors.kinds import KINDS
from streams.broker import free_port
from streams.health import bootstrap_hosts, broker_reachable
from streams.live.logs import JsonFormatter, logging_config
from streams.live.metrics import DLQ_REASONS, RETURN_GROUPS, SILENCE_CAUSES, TRIGGER_KINDS, Metrics, faust_monitor
from streams.live.runtime import Runtime
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make(now: int = T0) -> tuple[Runtime, Metrics, Clock]:
    settings = Settings()
    metrics = Metrics(CollectorRegistry())
    metrics.initialise(settings.topics.inputs, "test", settings.detector.version)
    clock = Clock(now)
    return Runtime(settings, {}, metrics, clock), metrics, clock


def order(cid: str, eid: str, at: int) -> bytes:
    return orjson.dumps({"event_id": eid, "type": "order", "customer_id": cid, "occurred_at": iso_ms(at),
                         "order_id": f"o-{eid}", "category": "grocery", "amount": 20.0})


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_known_label_values_exist_at_zero_before_anything_happens():
    _, m, _ = make()
    assert sample(m, "churn_events_total", topic="orders", outcome="late") == 0
    for group in RETURN_GROUPS:
        assert sample(m, "churn_returns_total", group=group) == 0
    for reason in DLQ_REASONS:
        assert sample(m, "churn_dlq_messages_total", reason=reason) == 0
    assert sample(m, "churn_triggers_total", kind="silence", decision="emitted") == 0
    for stage in ("at_risk", "dormant", "lost"):
        for cause in SILENCE_CAUSES:
            assert sample(m, "churn_silence_triggers_total", stage=stage, cause=cause, decision="emitted") == 0
    assert sample(m, "churn_worker_info", version="test", config_version=Settings().detector.version) == 1


def test_event_time_lag_and_detection_time_are_observed_per_event():
    rt, m, _ = make(T0 + 90_000)
    rt.on_input("orders", 0, 0, b"c-1", order("c-1", "e1", T0))          # 90 s behind the wall clock
    rt.on_input("orders", 0, 1, b"c-1", order("c-1", "e2", T0 + 89_500))  # 0.5 s behind
    assert sample(m, "churn_events_total", topic="orders", outcome="accepted") == 2
    assert sample(m, "churn_event_time_lag_seconds_count") == 2
    assert sample(m, "churn_event_time_lag_seconds_sum") == pytest.approx(90.5)
    assert sample(m, "churn_event_time_lag_seconds_bucket", le="1.0") == 1
    assert sample(m, "churn_detection_duration_seconds_count") == 2
    rt.on_input("orders", 0, 2, b"c-1", b"{broken")
    assert sample(m, "churn_detection_duration_seconds_count") == 3   # invalid input is timed too
    assert sample(m, "churn_event_time_lag_seconds_count") == 2       # but has no event time


def test_the_live_path_times_each_message_once_across_the_merge():
    """receive() decodes, the merge holds, release() applies: still one observation per message."""
    rt, m, _ = make(T0 + 90_000)
    unread = {"value": True}

    def orders_unread(tp: tuple[str, int], position: int | None) -> bool:
        return tp[0] == "orders" and unread["value"]

    rating = orjson.dumps({"event_id": "r1", "type": "courier_rating", "customer_id": "c-1",
                           "occurred_at": iso_ms(T0), "order_id": "o-1", "rating": 2})
    assert list(rt.receive("courier-ratings", 0, 0, b"c-1", rating, None, [], "r1", orders_unread)) == []
    assert sample(m, "churn_detection_duration_seconds_count") == 0  # held by the merge: not done yet
    unread["value"] = False
    handles = [h for h, _ in rt.receive("orders", 0, 0, b"c-1", order("c-1", "e1", T0 - 1000), None, [], "e1",
                                          orders_unread)]
    handles += [h for h, _ in rt.receive("orders", 0, 1, b"c-1", b"{broken", None, [], "bad", orders_unread)]
    assert handles == ["e1", "r1", "bad"]
    assert sample(m, "churn_detection_duration_seconds_count") == 3
    assert 0 < sample(m, "churn_detection_duration_seconds_sum") < 1  # type: ignore[operator]


def test_dead_letters_are_counted_by_reason_and_as_invalid_input():
    rt, m, _ = make()
    rt.on_input("orders", 0, 0, b"c-9", b"{broken")
    rt.on_input("orders", 0, 1, b"c-9", b"[1]")
    rt.on_input("deliveries", 1, 0, b"c-9", b"[2]")
    assert sample(m, "churn_dlq_messages_total", reason="malformed_json") == 1
    assert sample(m, "churn_dlq_messages_total", reason="not_an_object") == 2
    assert sample(m, "churn_events_total", topic="orders", outcome="invalid") == 2
    assert sample(m, "churn_events_total", topic="deliveries", outcome="invalid") == 1


def test_an_implausible_delivery_time_is_dead_lettered_with_its_raw_bytes():
    rt, m, _ = make()
    raw = orjson.dumps({"event_id": "d1", "type": "delivery", "customer_id": "c-9", "occurred_at": iso_ms(T0),
                        "order_id": "o1", "status": "delivered", "promised_at": iso_ms(T0),
                        "delivered_at": "2099-01-01T00:00:00Z"})
    [letter] = rt.on_input("deliveries", 0, 7, b"c-9", raw, 1234.5, [("trace", b"t1")])
    assert (letter.topic, letter.key, letter.value, letter.timestamp) == ("churn-dlq", b"c-9", raw, 1234.5)
    headers = dict(letter.headers)
    assert headers["trace"] == b"t1"
    assert headers["dlq.error.class"] == b"implausible_time"
    assert headers["dlq.error.message"].startswith(b"delivered_at 2099-01-01T00:00:00Z is ")
    assert sample(m, "churn_dlq_messages_total", reason="implausible_time") == 1
    assert rt.store.get("c-9") is None  # nothing of it reached the state


def test_a_consent_event_for_a_channel_not_configured_is_dead_lettered():
    rt, m, _ = make()
    raw = orjson.dumps({"event_id": "k1", "type": "consent", "customer_id": "c-9", "occurred_at": iso_ms(T0),
                        "channel": "fax", "granted": True})
    [letter] = rt.on_input("customer-consent", 0, 3, b"c-9", raw)
    assert (letter.topic, letter.value) == ("churn-dlq", raw)
    headers = dict(letter.headers)
    assert headers["dlq.error.class"] == b"unknown_channel"
    assert headers["dlq.error.message"].startswith(b"consent channel 'fax' is not configured")
    assert sample(m, "churn_dlq_messages_total", reason="unknown_channel") == 1
    assert rt.store.get("c-9") is None
    viber = orjson.dumps({"event_id": "k2", "type": "consent", "customer_id": "c-9", "occurred_at": iso_ms(T0),
                          "channel": "viber", "granted": True})
    assert rt.on_input("customer-consent", 0, 4, b"c-9", viber) == []
    assert rt.store["c-9"].consent == ["viber", 1, T0]


def test_every_reason_the_code_can_raise_starts_at_zero():
    raised = set()
    for path in [p for d in ("schemas", "detectors", "streams") for p in ROOT.joinpath(d).glob("*.py")]:
        raised |= set(re.findall(r'InvalidEvent\(\s*"([a-z_]+)"', path.read_text()))
    assert raised, "no InvalidEvent reason found: the pattern no longer matches the code"
    assert raised <= set(DLQ_REASONS)


def test_every_trigger_kind_the_detectors_emit_starts_at_zero():
    # the detectors name their kinds from the registry (tests/unit/test_kinds.py holds them to it)
    assert set(TRIGGER_KINDS) == {kind.name for kind in KINDS}
    _, m, _ = make()
    for kind in KINDS:
        assert sample(m, "churn_triggers_total", kind=kind.name, decision="emitted") == 0


def _decision(kind: str, stage: str = "now", **kw: Any) -> Decision:
    return Decision(customer_id="c-1", kind=kind, stage=stage, severity="info", family="win_back", time_ms=T0,
                    episode="e", reason_codes=(), **kw)


def test_returns_are_counted_by_the_group_of_the_decision():
    rt, m, _ = make()
    rt._route([_decision("customer_returned", group="holdout"),
               _decision("customer_returned", group="treatment"),
               _decision("customer_returned", group="treatment"),
               _decision("silence", group="holdout")])
    assert sample(m, "churn_returns_total", group="treatment") == 2
    assert sample(m, "churn_returns_total", group="holdout") == 1
    assert sample(m, "churn_triggers_total", kind="customer_returned", decision="emitted") == 3


def test_suppressed_triggers_are_counted_under_their_reason():
    rt, m, _ = make()
    rt._route([_decision("silence", suppressed="holdout"), _decision("silence")])
    assert sample(m, "churn_triggers_total", kind="silence", decision="holdout") == 1
    assert sample(m, "churn_triggers_total", kind="silence", decision="emitted") == 1


def test_silence_triggers_are_counted_by_stage_suspected_cause_and_decision():
    rt, m, _ = make()
    rt._route([_decision("silence", stage="at_risk", suspected_cause="service",
                         service_failures=(("delivery_failed", "o-1", T0),)),
               _decision("silence", stage="at_risk", suspected_cause="service", suppressed="holdout"),
               _decision("silence", stage="dormant", suspected_cause="none"),
               _decision("delivery_failed", stage="now")])
    assert sample(m, "churn_silence_triggers_total", stage="at_risk", cause="service", decision="emitted") == 1
    assert sample(m, "churn_silence_triggers_total", stage="at_risk", cause="service", decision="holdout") == 1
    assert sample(m, "churn_silence_triggers_total", stage="dormant", cause="none", decision="emitted") == 1
    assert sample(m, "churn_silence_triggers_total", stage="at_risk", cause="none", decision="emitted") == 0
    assert sample(m, "churn_triggers_total", kind="silence", decision="emitted") == 2  # as before


def test_a_silence_after_a_failed_delivery_is_counted_as_service_by_the_worker():
    rt, m, clock = make(T0 + 7_200_000)  # the failure an hour ago
    failed = orjson.dumps({"event_id": "d1", "type": "delivery", "customer_id": "c-1",
                           "occurred_at": iso_ms(T0 + 3_600_000), "order_id": "o-e1", "status": "failed"})
    def grant(cid: str) -> bytes:  # a win-back needs a marketing grant (detectors/suppression.py)
        return orjson.dumps({"event_id": f"g-{cid}", "type": "consent", "customer_id": cid,
                             "occurred_at": iso_ms(T0 - 1), "channel": "all", "granted": True})
    for topic, partition, key, value in [("customer-consent", 0, b"c-1", grant("c-1")),
                                         ("customer-consent", 1, b"c-2", grant("c-2")),
                                         ("orders", 0, b"c-1", order("c-1", "e1", T0)),
                                         ("deliveries", 0, b"c-1", failed),
                                         ("orders", 1, b"c-2", order("c-2", "e2", T0))]:
        rt.on_input(topic, partition, 0, key, value)
        rt.write_state()  # as the app does after each message
    clock.now = T0 + 8 * DAY
    rt.tick_times([0, 1], lambda _: 0, lambda _: 0)
    rt.on_tick(0, b'{"now": %d}' % clock.now)
    rt.on_tick(1, b'{"now": %d}' % clock.now)
    assert sample(m, "churn_silence_triggers_total", stage="at_risk", cause="service", decision="emitted") == 1
    assert sample(m, "churn_silence_triggers_total", stage="at_risk", cause="none", decision="emitted") == 1


def test_overdue_deadlines_are_those_past_the_wall_clock_beyond_the_grace():
    rt, m, clock = make(T0)
    rt.on_input("orders", 0, 0, b"c-1", order("c-1", "e1", T0))
    rt.on_input("orders", 1, 0, b"c-2", order("c-2", "e2", T0))
    deadline = rt.core(0).index.peek()
    assert deadline is not None
    clock.now = deadline + rt.overdue_grace_ms - 1    # due, but within the grace
    rt.refresh_gauges()
    rt.refresh_customers()
    assert sample(m, "churn_deadlines_pending") == 2
    assert sample(m, "churn_customers_tracked") == 2
    assert sample(m, "churn_deadlines_overdue") == 0
    assert sample(m, "churn_deadline_overdue_seconds") == 0
    clock.now = deadline + 600_000                     # the clock never ticked: silence not fired
    rt.refresh_gauges()
    assert sample(m, "churn_deadlines_overdue") == 2
    assert sample(m, "churn_deadline_overdue_seconds") == 600
    rt.tick_times([0], lambda _: 0, lambda _: 0)       # caught up: this worker vouches for the wall clock
    rt.on_tick(0, b'{"now": %d}' % clock.now)          # partition 0 fires its deadline
    rt.refresh_gauges()
    assert sample(m, "churn_deadlines_overdue") == 1


def test_consumer_lag_is_end_minus_committed_and_revoked_partitions_disappear():
    rt, m, _ = make()
    ends = {("orders", 0): 120, ("orders", 1): 7, ("deliveries", 0): 5}
    committed = {("orders", 0): 20, ("deliveries", 0): 5}
    rt.record_consumer_lag([0, 1], ends.get, committed.get)
    assert sample(m, "churn_consumer_lag_messages", topic="orders", partition="0") == 100
    assert sample(m, "churn_consumer_lag_messages", topic="orders", partition="1") == 7   # never committed
    assert sample(m, "churn_consumer_lag_messages", topic="deliveries", partition="0") == 0
    assert sample(m, "churn_consumer_lag_messages", topic="deliveries", partition="1") is None  # end unknown
    rt.record_consumer_lag([1], ends.get, committed.get)
    assert sample(m, "churn_consumer_lag_messages", topic="orders", partition="0") is None
    assert sample(m, "churn_consumer_lag_messages", topic="orders", partition="1") == 7


def test_revoking_partitions_drops_their_watermark_series():
    rt, m, _ = make()
    rt.tick_times([3], lambda _: 0, lambda _: 0)
    rt.on_tick(3, b'{"now": %d}' % T0)
    vouched = T0 - Settings().producer_delay_ms  # caught up: the wall clock less the producer delay
    assert sample(m, "churn_watermark_seconds", partition="3") == vouched / 1000
    rt.revoke_all()
    assert sample(m, "churn_watermark_seconds", partition="3") is None


def test_no_label_value_ever_carries_a_customer_or_event_id():
    rt, m, clock = make(T0)
    for i in range(20):
        grant = orjson.dumps({"event_id": f"evt-g{i}", "type": "consent", "customer_id": f"cust-{i}",
                              "occurred_at": iso_ms(T0), "channel": "all", "granted": True})
        rt.on_input("customer-consent", i % 2, i, f"cust-{i}".encode(), grant)  # win-backs need a grant
        rt.on_input("orders", i % 2, i, f"cust-{i}".encode(), order(f"cust-{i}", f"evt-{i}", T0))
    rt.on_input("orders", 0, 99, b"cust-x", b"{broken")
    clock.now = T0 + 30 * DAY
    rt.tick_times([0], lambda _: 0, lambda _: 0)
    rt.on_tick(0, b'{"now": %d}' % clock.now)
    rt.refresh_gauges()
    assert sample(m, "churn_triggers_total", kind="silence", decision="emitted")
    values = {v for fam in m.registry.collect() for s in fam.samples for v in s.labels.values()}
    assert not [v for v in values if "cust-" in v or "evt-" in v]


def test_faust_sensor_metrics_share_the_registry_with_ours():
    m = Metrics(CollectorRegistry())
    monitor = faust_monitor(m.registry)
    monitor.on_assignment_completed(None, {"time_start": monitor.time()})
    text = generate_latest(m.registry).decode()
    assert "churn_events_total" in text
    assert "faust_assignment_operations_total" in text
    assert "faust_topic_partition_end_offset" in text


def test_json_logs_are_one_object_per_line_with_extras_and_tracebacks():
    fmt = JsonFormatter()
    record = logging.LogRecord("churn_signals", logging.WARNING, __file__, 1, "partition %d stalled", (3,), None)
    record.partition = 3
    out = json.loads(fmt.format(record))
    assert out["level"] == "warning"
    assert out["message"] == "partition 3 stalled"
    assert out["partition"] == 3
    assert out["ts"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = fmt.format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_log_format_setting_selects_the_formatter():
    assert logging_config("text", "info") is None  # Faust's own text format
    cfg = logging_config("json", "warning")
    assert cfg is not None
    assert cfg["root"]["level"] == "WARNING"
    logging.config.dictConfig({**cfg, "root": {"level": "WARNING", "handlers": []}})  # the config loads


def test_bootstrap_hosts_parse_kafka_server_lists():
    assert bootstrap_hosts("kafka:9092, 10.0.0.2:9093") == [("kafka", 9092), ("10.0.0.2", 9093)]
    assert bootstrap_hosts("[::1]:9092") == [("::1", 9092)]


def test_broker_is_unreachable_when_nothing_listens():
    assert asyncio.run(broker_reachable(f"127.0.0.1:{free_port()}", timeout=1)) is False


def test_broker_is_unreachable_when_the_port_accepts_but_never_answers():
    # A listening socket nobody reads: the kernel completes the TCP handshake (like a
    # SIGSTOPped broker), so only a protocol round trip can tell it is not a broker.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        assert asyncio.run(broker_reachable(f"127.0.0.1:{port}", timeout=0.5)) is False


def test_broker_is_reachable_when_it_answers_api_versions():
    async def fake_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(4), "big")
        req = await reader.readexactly(size)
        assert req[:4] == b"\x00\x12\x00\x00"  # ApiVersions v0
        writer.write((8).to_bytes(4, "big") + req[4:8] + b"\x00\x00\x00\x00")  # echo the correlation id
        await writer.drain()
        writer.close()

    async def check() -> bool:
        server = await asyncio.start_server(fake_broker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await broker_reachable(f"127.0.0.1:{free_port()},127.0.0.1:{port}", timeout=1)
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    assert asyncio.run(check()) is True


def test_the_worker_has_no_faust_agent_so_faust_s_stream_hooks_never_run():
    """Input goes from the fetch loop to the handler (faust_patches.drain_messages), not through a
    Faust stream: the sensor's stream hooks are left as Faust wrote them. An agent added later would
    run them per event, un-cached: this test is the reminder to cache them again."""
    from streams.live.app import create_app
    from streams.settings import load_settings

    app, _ = create_app(load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}))
    assert list(app.agents) == []
    assert "on_stream_event_in" not in type(faust_monitor(CollectorRegistry())).__dict__


def test_faust_sensor_series_are_those_of_fausts_own_prometheus_sensor():
    """The sensor caches its labelled children; what /metrics shows is Faust's, rebalances included."""
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
    from faust.types import TP

    class Stream:
        shortlabel = "Stream: Topic: orders"
        task_owner = None

    class Message:
        time_in = None

    class App:
        rebalancing_count = 1

    def drive(monitor: Any, registry: CollectorRegistry, rebalance_at: int) -> str:
        stream = Stream()
        stream.task_owner = stream  # any weak-referenceable object
        for i in range(12):
            if i == rebalance_at:
                monitor.on_rebalance_start(App())
            tp = TP("orders" if i % 3 else "deliveries", i % 2)
            monitor.on_message_in(tp, i, Message())
            monitor.track_tp_end_offset(tp, i + 7)
            state = monitor.on_stream_event_in(tp, i, stream, None)
            monitor.on_stream_event_out(tp, i, stream, None, state)
            monitor.on_message_out(tp, i, Message())
            monitor.on_send_initiated(None, "churn-triggers" if i % 2 else "churn-audit", None, 1, 1)
        lines = generate_latest(registry).decode().splitlines()
        # latencies differ run to run: compare the series and the counts
        timings = ("latency", "_ms", "_created")
        return "\n".join(line for line in lines if not any(t in line for t in timings))

    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = faust_monitor(ours_registry)
    theirs = PrometheusMonitor(metrics=FaustMetrics.create(theirs_registry, "faust"))
    for rebalance_at in (-1, 5):
        page = drive(ours, ours_registry, rebalance_at)
        assert page == drive(theirs, theirs_registry, rebalance_at)
        assert 'faust_messages_received_per_topics_partition{partition="1",topic="orders"}' in page
