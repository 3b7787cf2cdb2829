"""Shared fixtures: a real embedded broker process, real worker processes, plain aiokafka clients.

Integration tests never mock the broker. Each test gets unique topic names (a
random prefix) and a unique consumer group, so tests share one broker process
without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.errors import CommandError
from streams.broker import EmbeddedBroker, free_port
from streams.corebuild import StaleCore, check_fresh, kind
from streams.settings import Topics

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    try:
        check_fresh()  # a compiled core older than its source would test old code
    except StaleCore as exc:
        pytest.exit(str(exc), returncode=4)


def pytest_report_header(config: pytest.Config) -> str:
    return f"churn-signals core: {kind()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/unit/" in path:
            item.add_marker(pytest.mark.unit)


#: The brokers the integration and fault tests run on: BROKER=embedded|kafka|both (make test: both).
BROKER_KINDS = ("embedded", "kafka")


def broker_kinds() -> list[str]:
    wanted = os.environ.get("BROKER", "embedded").strip().lower()
    if wanted == "both":
        return list(BROKER_KINDS)
    if wanted not in BROKER_KINDS:
        raise pytest.UsageError(f"BROKER={wanted!r}: choose embedded, kafka or both")
    return [wanted]


def start_broker(kind: str, where: Path) -> Any:
    """A started broker process of that kind on loopback: `.bootstrap`, `.proc`, `.stop()`."""
    if kind == "kafka":
        from tests.kafka.launcher import KafkaBroker

        # topics a test produces to before a worker declares them get the workers' 2 partitions
        return KafkaBroker(where / "kafka", extra_config={"num.partitions": "2"}).start()
    return EmbeddedBroker(log_path=where / "tansu.log").start()


@pytest.fixture(scope="session", params=broker_kinds())
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One broker process per kind for the whole session (tests keep apart by topic names)."""
    failed = None
    try:
        b = start_broker(request.param, tmp_path_factory.mktemp(f"broker-{request.param}"))
    except CommandError as exc:  # no Java, no Maven, a failed fetch, a broker that would not start: one line
        failed = f"BROKER={request.param}: {exc}"
    if failed:
        pytest.fail(failed, pytrace=False)
    b.kind = request.param
    yield b
    b.stop()


@pytest.fixture
def topics() -> Topics:
    return Topics().with_prefix(f"t{uuid.uuid4().hex[:10]}-")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                status, _ = self.get("/readyz", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready within {timeout}s:\n{self.log()[-4000:]}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching the labels, read from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def start_worker(broker: Any, topics: Topics, tmp_path: Path) -> Iterator[Any]:
    """Factory: start a real `churn-signals worker` process; all are stopped at teardown."""
    started: list[WorkerProcess] = []
    app_id = f"app-{uuid.uuid4().hex[:8]}"

    def start(extra_env: dict[str, str] | None = None, wait: bool = True, **kw: Any) -> WorkerProcess:
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "CHURN_APP_ID": app_id,
            "CHURN_WEB_PORT": str(port),
            "CHURN_PARTITIONS": "2",
            "CHURN_TICK_INTERVAL": "0.5",
            **{f"CHURN_TOPIC_{f.upper()}": getattr(topics, f) for f in topics.__dataclass_fields__},
            **(extra_env or {}),
        }
        env.pop("CHURN_CONFIG", None)
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        w = WorkerProcess(proc, port, log_path, env)
        started.append(w)
        if wait:
            w.wait_ready(**kw)
        return w

    yield start
    for w in started:
        w.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send (topic, key, raw value) records in order and wait for each."""
    run(_produce(bootstrap, records))


def produce_events(bootstrap: str, topics: Topics, events: list[dict[str, Any]]) -> None:
    produce(bootstrap, [(topics.for_event_type(e["type"]), e["customer_id"].encode(), orjson.dumps(e))
                        for e in events])


async def _consume(bootstrap: str, topic: str, until: Any, timeout: float) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(out):
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()
    return out


def consume(bootstrap: str, topic: str, until: Any = None, timeout: float = 30.0) -> list[Any]:
    """Read a topic from the beginning until `until(messages)` is true or the timeout passes."""
    return run(_consume(bootstrap, topic, until or (lambda _: False), timeout))


async def _describe_topics(bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: t["partitions"] for t in await admin.describe_topics() if not t.get("error_code")}
    finally:
        await admin.close()


def describe_topics(bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """Topic -> its partitions as the broker describes them (leader, replicas, isr)."""
    return run(_describe_topics(bootstrap))


async def _topic_configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        return {name: {k: v for k, v, *_ in entries} for r in responses for _, _, _, name, entries in r.resources}
    finally:
        await admin.close()


def topic_configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic -> its configs as the broker reports them (Apache Kafka; the embedded broker reports none)."""
    return run(_topic_configs(bootstrap, names))


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.3, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
