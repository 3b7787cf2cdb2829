"""The topic plan: every topic the worker or Faust uses, with the deployment's replication, in one place."""

from __future__ import annotations

import json

import pytest
import yaml

from schemas.errors import ConfigError
from streams.live.app import create_app
from streams.settings import load_settings
from streams.topics import missing_line, render, topic_plan
from tests.conftest import ROOT

SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"
COMPOSE = ROOT / "docker-compose.yml"
#: the settings the compose stack's script is written for (its workers' environment says the same)
COMPOSE_ENV = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "CHURN_PARTITIONS": "6"}


def _settings(**env: str):
    return load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env})


def test_the_plan_names_every_topic_the_worker_and_faust_declare_with_faust_s_own_names():
    settings = _settings(CHURN_APP_ID="shop-eu", CHURN_TOPIC_PREFIX="eu-")
    app, _ = create_app(settings)
    table = app.tables["customers"]
    # Faust's private names: the topics it declares itself
    faust_topics = {table.changelog_topic.get_topic_name(),
                    app._leader_assignor._leader_topic_name}  # type: ignore[attr-defined]
    worker_topics = {name for channel in app.topics._topics  # type: ignore[attr-defined]
                     for name in channel.topics}
    t = settings.topics
    planned = {s.name for s in topic_plan(settings)}
    assert planned == faust_topics | worker_topics | {t.triggers, t.audit, t.dlq}
    assert "shop-eu-customers-changelog" in planned
    assert "eu-orders" in planned


def test_faust_declares_its_own_topics_with_the_replication_and_configs_of_the_plan():
    # Faust's Topic.declare() creates with .replicas or conf.topic_replication_factor and .config:
    # the fallback if the worker had not created them first.
    settings = _settings(CHURN_REPLICATION_FACTOR="3", CHURN_MIN_INSYNC_REPLICAS="2")
    app, _ = create_app(settings)
    plan = {s.name: s for s in topic_plan(settings)}
    changelog = app.tables["customers"].changelog_topic
    leader = app._leader_assignor._leader_topic  # type: ignore[attr-defined]  # Faust's private name
    assert app.conf.topic_replication_factor == 3
    assert changelog.replicas is None  # so conf.topic_replication_factor applies
    assert leader.replicas == 3
    assert changelog.config == dict(plan[changelog.get_topic_name()].configs)
    assert changelog.config["min.insync.replicas"] == "2"
    assert app.conf.topic_allow_declare is True


def test_with_create_topics_false_faust_declares_nothing():
    app, _ = create_app(_settings(CHURN_CREATE_TOPICS="false"))
    assert app.conf.topic_allow_declare is False


def test_every_topic_gets_the_replication_factor_and_min_insync_replicas():
    plan = topic_plan(_settings(CHURN_REPLICATION_FACTOR="3", CHURN_MIN_INSYNC_REPLICAS="2"))
    assert len(plan) == 10
    assert {s.replication_factor for s in plan} == {3}
    assert all(dict(s.configs)["min.insync.replicas"] == "2" for s in plan)


def test_without_min_insync_replicas_the_cluster_default_applies():
    plan = topic_plan(_settings())
    assert {s.replication_factor for s in plan} == {1}
    assert not any("min.insync.replicas" in dict(s.configs) for s in plan)


def test_co_partitioned_topics_share_the_count_and_the_leader_topic_has_one_partition():
    plan = {s.role: s for s in topic_plan(_settings(CHURN_PARTITIONS="12"))}
    assert plan["input"].partitions == plan["clock"].partitions == plan["changelog"].partitions == 12
    assert plan["leader"].partitions == 1
    assert dict(plan["changelog"].configs)["cleanup.policy"] == "compact"


@pytest.mark.parametrize(("env", "message"), [
    ({"CHURN_REPLICATION_FACTOR": "0"}, "replication_factor: expected 1..32767, got 0"),
    ({"CHURN_REPLICATION_FACTOR": "three"}, "replication_factor: expected int, got 'three'"),
    ({"CHURN_MIN_INSYNC_REPLICAS": "2"}, "min_insync_replicas: expected 1..1"),
    ({"CHURN_REPLICATION_FACTOR": "3", "CHURN_MIN_INSYNC_REPLICAS": "4"}, "min_insync_replicas: expected 1..3"),
    ({"CHURN_CREATE_TOPICS": "nope"}, "create_topics: expected true or false, got 'nope'"),
])
def test_bad_topic_settings_are_one_line_errors(env, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _settings(**env)


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("0", False), ("off", False), ("true", True)])
def test_create_topics_reads_booleans(raw, value):
    assert _settings(CHURN_CREATE_TOPICS=raw).create_topics is value


def test_create_topics_and_replication_from_the_config_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[worker]\nreplication_factor = 3\nmin_insync_replicas = 2\ncreate_topics = false\n")
    s = load_settings(env={"CHURN_CONFIG": str(toml)})
    assert (s.replication_factor, s.min_insync_replicas, s.create_topics) == (3, 2, False)


def test_the_missing_topics_line_names_each_with_its_partitions():
    settings = _settings(CHURN_REPLICATION_FACTOR="3", CHURN_MIN_INSYNC_REPLICAS="2")
    plan = topic_plan(settings, 6)
    line = missing_line(settings, [plan[0], plan[-1]])
    assert "\n" not in line
    assert line.startswith("CHURN_CREATE_TOPICS=false and 2 topics are missing: orders (6 partitions), "
                           "churn-signals-__assignor-__leader (1 partition);")
    assert "replication factor 3, min.insync.replicas 2" in line


def test_the_json_plan_carries_everything_an_operator_needs():
    settings = _settings(CHURN_REPLICATION_FACTOR="3")
    rows = json.loads(render(topic_plan(settings), "json", settings))
    assert [r["name"] for r in rows] == [s.name for s in topic_plan(settings)]
    assert rows[8] == {"name": "churn-signals-customers-changelog", "partitions": 4, "replication_factor": 3,
                       "configs": {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
                       "role": "changelog", "why": rows[8]["why"]}


def test_the_table_lists_every_topic_once():
    settings = _settings()
    lines = render(topic_plan(settings), "table", settings).splitlines()
    assert lines[0].split() == ["topic", "partitions", "replicas", "configs", "role"]
    assert [line.split()[0] for line in lines[1:]] == [s.name for s in topic_plan(settings)]


def test_the_compose_stack_s_create_topics_script_is_the_plan():
    settings = load_settings(env=COMPOSE_ENV)
    expected = render(topic_plan(settings), "sh", settings)
    assert SCRIPT.read_text() == expected, (
        "deploy/kafka/create-topics.sh is not the topic plan: write it again with\n  env -i PATH=$PATH "
        + " ".join(f"{k}={v}" for k, v in COMPOSE_ENV.items()) + " churn-signals topics --format sh > " + str(SCRIPT))


def test_the_compose_workers_use_the_settings_the_script_was_written_for():
    compose = yaml.safe_load(COMPOSE.read_text())
    worker_env = compose["x-worker-env"]
    assert worker_env["KAFKA_BOOTSTRAP_SERVERS"] == COMPOSE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
    assert worker_env["CHURN_PARTITIONS"] == COMPOSE_ENV["CHURN_PARTITIONS"]
    assert worker_env["CHURN_APP_ID"] == "churn-signals"  # names the changelog and leader topics in the script
    init = compose["services"]["kafka-init"]
    assert "PARTITIONS" not in init.get("environment", {}), "the script's own default is the plan's"
