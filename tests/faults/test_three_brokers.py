"""A broker of three killed under traffic: the replicated cluster carries on, and nothing is lost.

Three Apache Kafka nodes (KRaft, each broker and controller) on loopback
(tests/kafka/launcher.py, KafkaCluster), the worker's topics created by the
worker itself with replication factor 3 and min.insync.replicas 2, every
producer on acks=all. One broker, the one leading the most of the test's
partitions, is killed with SIGKILL while traffic flows and started again on its
data. The same smoke-test verifier as the single-broker faults
(tests/faults/harness.py): the trigger topic, deduplicated by id, equals what
replay of the generated log emits, and every customer's state in the changelog
equals replay's. Runs on Kafka only (BROKER=kafka or both, as CI's `make test`);
on the embedded broker it is reported as skipped.

About 75-85 s on a shared 2-core machine: 5-9 s to start the cluster, ~25 s of
traffic, the rest the verifier waiting for the last silence deadlines.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.errors import CommandError
from streams.settings import load_settings
from streams.topics import topic_plan
from tests.conftest import broker_kinds, describe_topics, topic_configs, wait_for
from tests.faults.harness import LOST_MS, SHORT_WINDOWS, Traffic, customers, event_ms, now_ms, verify

pytestmark = pytest.mark.faults

#: How long an event may take to reach the broker (CHURN_PRODUCER_DELAY): the traffic's
#: producers wait for the killed broker's partitions to get a new leader (its session
#: timeout, 3 s here, then a metadata refresh) before their records are appended.
PRODUCER_DELAY_S = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Overrides the session's one-node broker for this module: three nodes."""
    if "kafka" not in broker_kinds():
        pytest.skip("needs three Apache Kafka brokers: BROKER=kafka or both")
    from tests.kafka.launcher import KafkaCluster

    failed = None
    try:
        cluster = KafkaCluster(3, tmp_path_factory.mktemp("kafka-cluster"), extra_config={"num.partitions": "2"})
        started = time.monotonic()
        cluster.start()
        cluster.started_in = time.monotonic() - started
    except CommandError as exc:
        failed = f"three Kafka brokers: {exc}"
    if failed:
        pytest.fail(failed, pytrace=False)
    cluster.kind = "kafka"
    yield cluster
    cluster.stop()


def _topics(bootstrap: str, names: set[str]) -> dict[str, list[dict[str, Any]]]:
    return {name: parts for name, parts in describe_topics(bootstrap).items() if name in names}


def _leaders(bootstrap: str, names: set[str]) -> Counter[int]:
    return Counter(p["leader"] for parts in _topics(bootstrap, names).values() for p in parts)


def _all_in_sync(bootstrap: str, names: set[str], replicas: int) -> bool:
    described = _topics(bootstrap, names)
    return len(described) == len(names) and all(
        len(p["isr"]) == replicas for parts in described.values() for p in parts)


def test_one_of_three_brokers_killed_under_traffic_loses_nothing_and_the_worker_never_stops(
        broker: Any, topics: Any, start_worker: Any, tmp_path: Any) -> None:
    env = {**SHORT_WINDOWS, "CHURN_REPLICATION_FACTOR": "3", "CHURN_MIN_INSYNC_REPLICAS": "2",
           "CHURN_PRODUCER_DELAY": f"{PRODUCER_DELAY_S}s"}
    worker = start_worker(env)
    # Every topic the worker needs, Faust's changelog and leader topic included, has 3 replicas
    # and min.insync.replicas 2: the worker made them so.
    plan = topic_plan(load_settings(env={k: v for k, v in worker.env.items() if k.startswith(("CHURN_", "KAFKA_"))}))
    names = {s.name for s in plan}
    described = _topics(broker.bootstrap, names)
    assert set(described) == names
    assert {name: {len(p["replicas"]) for p in parts} for name, parts in described.items()} == \
        {name: {3} for name in names}
    configs = topic_configs(broker.bootstrap, sorted(names))
    assert {name: c.get("min.insync.replicas") for name, c in configs.items()} == dict.fromkeys(names, "2")

    traffic = Traffic(broker.bootstrap, topics, customers(30, rounds=100)).start()
    traffic.wait_rounds(16)
    wait_for(lambda: worker.metric("churn_events_total", outcome="accepted") > 50, what="the worker processing")
    leaders = _leaders(broker.bootstrap, names)
    victim = broker.node(leaders.most_common(1)[0][0])
    assert leaders[victim.node_id] > 0
    victim.kill()  # SIGKILL under traffic
    killed_at = now_ms()
    try:
        # Two brokers of three: acks=all with min.insync.replicas 2 still succeeds, so traffic goes on.
        traffic.wait_rounds(16, timeout=60)
        moved = _leaders(broker.bootstrap, names)
        assert moved[victim.node_id] == 0, f"partitions still led by the killed broker: {moved}"
        assert worker.proc.poll() is None, f"worker died with a broker:\n{worker.log()[-3000:]}"
        before_restart = worker.metric("churn_events_total", outcome="accepted")
        wait_for(lambda: worker.metric("churn_events_total", outcome="accepted") > before_restart + 20,
                 timeout=60, what="the worker processing with a broker down")
    finally:
        victim.restart()  # same data directory, same ports
    down_s = (now_ms() - killed_at) / 1000
    wait_for(lambda: _all_in_sync(broker.bootstrap, names, 3), timeout=90,
             what="the restarted broker back in every in-sync replica set")
    traffic.wait_rounds(16, timeout=120)
    events = traffic.stop()
    stats = verify(tmp_path, broker.bootstrap, topics, worker.env["CHURN_APP_ID"], events, env, [worker],
                   settle_until_ms=max(event_ms(e) for e in events) + LOST_MS)
    assert worker.proc.poll() is None, f"the worker died:\n{worker.log()[-3000:]}"
    worker.wait_ready(timeout=60)  # ready on its own: nobody restarted it
    assert stats["triggers"] > 0
    print(f"three brokers, node {victim.node_id} (leading {leaders[victim.node_id]} of {sum(leaders.values())} "
          f"partitions) killed for {down_s:.1f} s; cluster started in {broker.started_in:.1f} s; {stats}")
