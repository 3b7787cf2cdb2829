"""What only a real Apache Kafka broker can show: compacted changelogs, and a broker crash.

The embedded broker keeps everything in memory and reports no topic configs, so
these run on Kafka only (BROKER=kafka or both); on the embedded broker they are
reported as skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import topic_configs, wait_for
from tests.faults.harness import LOST_MS, SHORT_WINDOWS, Traffic, customers, event_ms, now_ms, verify

pytestmark = pytest.mark.faults

PRODUCER_DELAY_S = 30


@pytest.fixture
def kafka(broker: Any) -> Any:
    if getattr(broker, "kind", None) != "kafka":
        pytest.skip("needs Apache Kafka: the embedded broker keeps no data on disk and reports no topic configs")
    return broker


def test_the_customer_changelog_is_created_compacted(kafka: Any, start_worker: Any) -> None:
    worker = start_worker()
    changelog = f"{worker.env['CHURN_APP_ID']}-customers-changelog"
    configs = topic_configs(kafka.bootstrap, [changelog])[changelog]
    assert configs["cleanup.policy"] == "compact", f"{changelog}: {configs.get('cleanup.policy')}"


def test_broker_killed_and_restarted_on_its_data_loses_nothing_and_the_worker_carries_on(
        kafka: Any, topics: Any, start_worker: Any, tmp_path: Any) -> None:
    # A round of traffic the broker had not appended when it died reaches it only after the
    # restart, that long after its occurred_at: live equals replay only if the worker's
    # producer delay allowance covers the outage (docs/reliability.md, "Limits").
    env = {**SHORT_WINDOWS, "CHURN_PRODUCER_DELAY": f"{PRODUCER_DELAY_S}s"}
    worker = start_worker(env)
    traffic = Traffic(kafka.bootstrap, topics, customers(30, rounds=90)).start()
    traffic.wait_rounds(16)
    wait_for(lambda: worker.metric("churn_events_total", outcome="accepted") > 50, what="the worker processing")
    kafka.kill()  # SIGKILL under traffic: acknowledged records are in the log files, nothing else is
    killed_at = now_ms()
    try:
        wait_for(lambda: now_ms() > killed_at + 5000, timeout=30, what="5 s without a broker")
        assert worker.proc.poll() is None, f"worker died with the broker:\n{worker.log()[-3000:]}"
    finally:
        kafka.restart()  # same data directory, same ports
    outage_s = (now_ms() - killed_at) / 1000
    assert outage_s < PRODUCER_DELAY_S - 5, f"the broker was down {outage_s:.1f} s, beyond the test's allowance"
    traffic.wait_rounds(16, timeout=180)  # producers got through again
    events = traffic.stop()
    stats = verify(tmp_path, kafka.bootstrap, topics, worker.env["CHURN_APP_ID"], events, env, [worker],
                   settle_until_ms=max(event_ms(e) for e in events) + LOST_MS)
    assert worker.proc.poll() is None, f"the worker died:\n{worker.log()[-3000:]}"
    worker.wait_ready(timeout=60)  # ready again on its own: nobody restarted it
    assert stats["triggers"] > 0
    print(f"broker kill -9 and restart: down {outage_s:.1f} s, {stats}")


def test_the_broker_process_is_the_one_the_signals_reach(kafka: Any) -> None:
    # the pause and crash tests signal this pid: it must be the JVM itself, not a wrapper
    assert kafka.proc is not None
    with open(f"/proc/{kafka.proc.pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert argv[0].endswith(b"java")
    assert b"kafka.Kafka" in argv
