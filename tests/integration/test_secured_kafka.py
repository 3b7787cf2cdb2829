"""The project over a secured Apache Kafka: SASL_SSL with SCRAM, mutual TLS, and the errors when it is wrong.

One broker for the module (tests/kafka/secure.py): a CA and broker certificate
made by the test, SCRAM users added when its storage was formatted. The worker,
`produce`, `replay kafka:` and `replay --out-topic` connect through its SASL_SSL
listener exactly as they would to a managed cluster; the tests check what they
wrote through the broker's PLAINTEXT listener, with a client that shares no code
with theirs. The embedded broker has no TLS: these run on BROKER=kafka or both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.envelope import iso_ms
from schemas.decode import to_epoch_ms
from schemas.errors import CommandError
from streams.broker import free_port
from streams.dev.samples import SampleGenerator
from streams.settings import Topics
from tests.conftest import ROOT, WorkerProcess, broker_kinds, consume
from tests.kafka.launcher import KafkaBroker
from tests.kafka.secure import PASSWORD, PLAIN_PASSWORD, PLAIN_USER, USER, Certificates, secured_broker
from tests.unit.test_cli import cli

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif("kafka" not in broker_kinds(), reason="needs Apache Kafka (the embedded broker "
                                 "has no TLS): BROKER=kafka or both")]

END = to_epoch_ms("2026-06-01T00:00:00Z")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, Certificates, Path]]:
    where = tmp_path_factory.mktemp("secured")
    try:
        broker, certs = secured_broker(where, {"num.partitions": "2"})
    except CommandError as exc:  # no Java, no Maven, a broker that would not start: one line
        pytest.fail(str(exc), pytrace=False)
    password_file = where / "password"
    password_file.write_text(PASSWORD + "\n")
    yield broker, certs, password_file
    broker.stop()


def _sasl_env(secured: tuple[KafkaBroker, Certificates, Path], topics: Topics | None = None,
              **over: str) -> dict[str, str]:
    broker, certs, password_file = secured
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_for("SASL_SSL"), "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": USER,
           "KAFKA_SASL_PASSWORD_FILE": str(password_file), "KAFKA_SSL_CAFILE": str(certs.ca)}
    if topics is not None:
        env.update({f"CHURN_TOPIC_{f.upper()}": getattr(topics, f) for f in topics.__dataclass_fields__})
    env.update(over)
    return {k: v for k, v in env.items() if v}


def _topics() -> Topics:
    return Topics().with_prefix(f"s{uuid.uuid4().hex[:10]}-")


def _log(tmp_path: Path, events: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"events-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _no_secret(*texts: str | bytes) -> None:
    for text in texts:
        raw = text.encode() if isinstance(text, str) else text
        assert PASSWORD.encode() not in raw


def test_worker_and_produce_over_sasl_ssl(secured, tmp_path):
    broker, _, _ = secured
    topics = _topics()
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_"))},
           **_sasl_env(secured, topics), "CHURN_APP_ID": f"app-{uuid.uuid4().hex[:8]}", "CHURN_WEB_PORT": str(port),
           "CHURN_PARTITIONS": "2", "CHURN_TICK_INTERVAL": "0.5", "CHURN_LOG_LEVEL": "debug"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    worker = WorkerProcess(proc, port, log_path, env)
    try:
        worker.wait_ready(timeout=120)  # /readyz asks the broker over TLS, as the clients do
        now = time.time_ns() // 1_000_000
        events = [{"event_id": "r1", "type": "courier_rating", "customer_id": "c-1", "occurred_at": iso_ms(now),
                   "order_id": "o-1", "rating": 1},
                  {"event_id": "o2", "type": "order", "customer_id": "c-2", "occurred_at": iso_ms(now),
                   "order_id": "o-2", "category": "grocery", "amount": 12.5}]
        p = cli("produce", str(_log(tmp_path, events)), env=_sasl_env(secured, topics))
        assert p.returncode == 0, p.stderr
        assert "sent 2 events" in p.stdout
        plain = broker.bootstrap_for("PLAINTEXT")
        triggers = consume(plain, topics.triggers, until=lambda m: len(m) >= 1, timeout=60)
        assert [(orjson.loads(m.value)["data"]["kind"], m.key) for m in triggers] == [("negative_rating", b"c-1")]
        _, metrics = worker.get("/metrics")
        assert b"churn_events_total" in metrics
        log = worker.log()
        assert f"SASL SCRAM-SHA-512 as {USER}" in log  # the start-up line says how it connected ...
        _no_secret(metrics, log, p.stdout, p.stderr)  # ... and nothing, debug logs included, shows the password
    finally:
        worker.stop()


def test_replay_from_and_to_topics_over_sasl_ssl(secured, tmp_path):
    broker, _, _ = secured
    topics = _topics()
    env = _sasl_env(secured, topics)
    history = SampleGenerator(seed=5, customers=15).history(END, days=40)
    log = _log(tmp_path, history)
    assert cli("produce", str(log), env=env).returncode == 0
    until = iso_ms(END)
    from_file, from_topic = tmp_path / "f.jsonl", tmp_path / "k.jsonl"
    assert cli("replay", str(log), "--until", until, "--out", str(from_file)).returncode == 0
    r = cli("replay", "kafka:", "--until", until, "--out", str(from_topic), env=env)
    assert r.returncode == 0, r.stderr
    assert f"replayed {len(history)} events" in r.stderr
    assert from_topic.read_bytes() == from_file.read_bytes()  # the topic range replays exactly like the file
    out_topic = topics.triggers + "-backfill"
    w = cli("replay", str(log), "--until", until, "--out-topic", out_topic, env=env)
    assert w.returncode == 0, w.stderr
    lines = from_file.read_bytes().splitlines()
    assert lines
    msgs = consume(broker.bootstrap_for("PLAINTEXT"), out_topic, until=lambda m: len(m) >= len(lines), timeout=30)
    assert sorted(m.value for m in msgs) == sorted(lines)
    _no_secret(r.stderr, w.stderr)


def test_mutual_tls_with_a_client_certificate(secured, tmp_path):
    broker, certs, _ = secured
    topics = _topics()
    events = [{"event_id": "m1", "type": "order", "customer_id": "c-m", "occurred_at": iso_ms(END),
               "order_id": "o-m", "category": "home", "amount": 3.0}]
    log = _log(tmp_path, events)
    mtls = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_for("SSL"), "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(certs.ca), "CHURN_TOPIC_ORDERS": topics.orders}
    p = cli("produce", str(log), env={**mtls, "KAFKA_SSL_CERTFILE": str(certs.client_cert),
                                      "KAFKA_SSL_KEYFILE": str(certs.client_key)})
    assert p.returncode == 0, p.stderr
    assert len(consume(broker.bootstrap_for("PLAINTEXT"), topics.orders, until=lambda m: len(m) >= 1)) == 1
    _one_line(cli("produce", str(log), env=mtls), "requires a client certificate", "KAFKA_SSL_CERTFILE")


def _one_line(r: subprocess.CompletedProcess[str], *fragments: str, within: float | None = None) -> str:
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    _no_secret(r.stdout, r.stderr)
    return lines[0]


def _timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    r = cli(*args, env=env)
    return r, time.monotonic() - started


@pytest.mark.parametrize("command", ["produce", "worker"])
def test_a_wrong_password_is_one_line_within_seconds(secured, tmp_path, command):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    env = _sasl_env(secured, _topics(), KAFKA_SASL_PASSWORD_FILE=str(wrong), CHURN_WEB_PORT=str(free_port()))
    args = ("produce", str(_log(tmp_path, []))) if command == "produce" else ("worker",)
    r, seconds = _timed(*args, env=env)
    _one_line(r, f"authentication failed for user {USER} (SASL SCRAM-SHA-512)")
    assert seconds < 15, f"took {seconds:.1f}s"  # Python start-up included; the answer itself is immediate
    assert "not-the-password" not in r.stderr


@pytest.mark.parametrize("ca", ["other", "system"])
def test_an_untrusted_broker_certificate_is_one_line(secured, tmp_path, ca):
    _, certs, _ = secured
    env = _sasl_env(secured, _topics(), KAFKA_SSL_CAFILE=str(certs.other_ca) if ca == "other" else "")
    r, seconds = _timed("produce", str(_log(tmp_path, [])), env=env)
    _one_line(r, "TLS: certificate verify failed for 127.0.0.1:", "set KAFKA_SSL_CAFILE")
    assert seconds < 15


def test_a_wrong_protocol_is_one_line(secured, tmp_path):
    broker, _, _ = secured
    log = str(_log(tmp_path, []))
    plain_to_tls = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_for("SASL_SSL")}
    _one_line(cli("produce", log, env=plain_to_tls), "is a TLS listener but KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
    tls_to_plain = _sasl_env(secured, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_for("PLAINTEXT"))
    _one_line(cli("produce", log, env=tls_to_plain), "does not seem to be a TLS listener",
              "KAFKA_SECURITY_PROTOCOL (now SASL_SSL)")
    no_sasl = _sasl_env(secured, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SASL_MECHANISM="", KAFKA_SASL_USERNAME="",
                        KAFKA_SASL_PASSWORD_FILE="")
    _one_line(cli("produce", log, env=no_sasl), "the listener requires SASL authentication")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_the_other_sasl_mechanisms(secured, tmp_path, mechanism):
    broker, _, _ = secured
    topics = _topics()
    over = {"KAFKA_SASL_MECHANISM": mechanism}
    if mechanism == "PLAIN":  # the broker's PLAIN users live in its JAAS config, not in the SCRAM store
        over |= {"KAFKA_SASL_USERNAME": PLAIN_USER, "KAFKA_SASL_PASSWORD_FILE": "",
                 "KAFKA_SASL_PASSWORD": PLAIN_PASSWORD}
    events = [{"event_id": "p1", "type": "order", "customer_id": "c-p", "occurred_at": iso_ms(END),
               "order_id": "o-p", "category": "home", "amount": 3.0}]
    p = cli("produce", str(_log(tmp_path, events)), env=_sasl_env(secured, topics, **over))
    assert p.returncode == 0, p.stderr
    assert len(consume(broker.bootstrap_for("PLAINTEXT"), topics.orders, until=lambda m: len(m) >= 1)) == 1
