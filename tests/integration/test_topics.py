"""Topics as an operator wants them: the plan created, or only checked (CHURN_CREATE_TOPICS=false)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from streams.settings import load_settings
from streams.topics import topic_plan
from tests.conftest import ROOT, describe_topics, topic_configs


def _env(broker: Any, topics: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_"))}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CHURN_TOPIC_PREFIX": topics.orders[:-len("orders")],
                "CHURN_APP_ID": f"{topics.orders[:-len('-orders')]}-app", "CHURN_PARTITIONS": "2", **extra})
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def test_with_create_topics_false_the_worker_stops_naming_every_missing_topic_and_creates_none(broker, topics):
    env = _env(broker, topics, CHURN_CREATE_TOPICS="false")
    before = set(describe_topics(broker.bootstrap))
    r = _cli(env, "worker")
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = [x for x in r.stderr.splitlines() if "error:" in x]
    assert "Traceback" not in r.stderr
    plan = topic_plan(load_settings(env=env))
    assert line.startswith("churn-signals worker: error: CHURN_CREATE_TOPICS=false and 10 topics are missing: ")
    for spec in plan:
        assert spec.describe() in line
    assert f"{env['CHURN_APP_ID']}-__assignor-__leader (1 partition)" in line
    assert set(describe_topics(broker.bootstrap)) == before  # nothing created, Faust's topics neither


def test_topics_apply_creates_the_plan_and_a_worker_then_starts_without_creating(broker, topics, start_worker):
    env = _env(broker, topics)
    r = _cli(env, "topics", "--apply", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "created 10 topic(s)" in r.stderr
    plan = topic_plan(load_settings(env=env))
    described = describe_topics(broker.bootstrap)
    assert {s.name: s.partitions for s in plan} == {s.name: len(described[s.name]) for s in plan}
    again = _cli(env, "topics", "--apply")
    assert "created 0 topic(s); 10 already there" in again.stderr, again.stderr
    # The worker fixture's environment names these topics and this app id: it must find everything.
    worker = start_worker({"CHURN_CREATE_TOPICS": "false", "CHURN_APP_ID": env["CHURN_APP_ID"]})
    assert worker.proc.poll() is None
    assert set(describe_topics(broker.bootstrap)) >= {s.name for s in plan}


def test_produce_with_create_topics_false_names_the_missing_input_topics(broker, topics, tmp_path):
    log = tmp_path / "e.jsonl"
    log.write_text('{"event_id":"e1","type":"order","customer_id":"c1","occurred_at":"2026-01-01T00:00:00Z",'
                   '"order_id":"o1","category":"grocery","amount":5}\n')
    r = _cli(_env(broker, topics, CHURN_CREATE_TOPICS="false"), "produce", str(log))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{topics.orders} (2 partitions)" in r.stderr


def test_every_topic_the_worker_creates_on_kafka_has_the_plan_s_configs(broker, topics, start_worker):
    if broker.kind != "kafka":
        pytest.skip("the embedded broker reports no topic configs")
    worker = start_worker({"CHURN_MIN_INSYNC_REPLICAS": "1"})
    settings = load_settings(env={k: v for k, v in worker.env.items() if k.startswith(("CHURN_", "KAFKA_"))})
    plan = topic_plan(settings)
    configs = topic_configs(broker.bootstrap, [s.name for s in plan])
    for spec in plan:
        for key, value in spec.configs:
            assert configs[spec.name].get(key) == value, (spec.name, key, configs[spec.name].get(key))
        assert configs[spec.name]["min.insync.replicas"] == "1"


def test_a_replication_factor_beyond_the_brokers_is_one_line_on_kafka(broker, topics):
    if broker.kind != "kafka":
        pytest.skip("the embedded broker accepts any replication factor")
    r = _cli(_env(broker, topics, CHURN_REPLICATION_FACTOR="3"), "worker")
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = [x for x in r.stderr.splitlines() if "error:" in x]
    assert "with replication factor 3: InvalidReplicationFactorError" in line
    assert line.endswith("set CHURN_REPLICATION_FACTOR to at most the number of brokers")
