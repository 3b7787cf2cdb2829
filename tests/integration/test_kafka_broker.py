"""The Apache Kafka broker the tests fetch and start themselves (tests/kafka/launcher.py).

One broker (KRaft, broker+controller in one JVM) for the module: topic configs are
real (a compacted topic reads back as compacted, which the embedded broker cannot
show), records round-trip, and a SIGKILLed broker restarted on its data dir still
has what it acknowledged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.errors import CommandError
from tests.conftest import broker_kinds
from tests.kafka.launcher import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.skipif("kafka" not in broker_kinds(), reason="BROKER does not include kafka")]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start(timeout=60)
    except CommandError as exc:  # no Java, no Maven, or the broker did not come up: say which, in one place
        pytest.fail(str(exc), pytrace=False)
    yield broker
    broker.stop()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create_compacted(bootstrap: str, topic: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        created = await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
        assert [(t, code) for t, code, _ in created.topic_errors] == [(topic, 0)]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})])
        entries = {e[0]: e[1] for r in responses for res in r.resources for e in res[4]}
        return entries.get("cleanup.policy")
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return (await producer.send_and_wait(topic, value, key=key)).offset
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, want: int, timeout: float = 20.0) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < want and loop.time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                out.extend((m.key, m.value) for m in msgs)
    finally:
        await consumer.stop()
    return out


def test_compacted_topic_config_reads_back_and_records_round_trip(kafka: KafkaBroker):
    topic = _name("compacted")
    assert asyncio.run(_create_compacted(kafka.bootstrap, topic)) == "compact"
    assert asyncio.run(_produce(kafka.bootstrap, topic, b"cust-1", b"v1")) == 0
    assert asyncio.run(_read_all(kafka.bootstrap, topic, want=1)) == [(b"cust-1", b"v1")]


def test_a_killed_broker_restarted_on_its_data_dir_keeps_acknowledged_records(kafka: KafkaBroker):
    topic = _name("durable")
    bootstrap = kafka.bootstrap
    asyncio.run(_produce(bootstrap, topic, b"cust-2", b"before the crash"))  # auto-created topic

    pid = kafka.pid
    kafka.kill()
    assert not kafka.running
    kafka.restart(timeout=60)
    assert kafka.pid != pid
    assert kafka.bootstrap == bootstrap  # same ports: clients reconnect to the address they had

    assert asyncio.run(_read_all(bootstrap, topic, want=1)) == [(b"cust-2", b"before the crash")]
    assert "Kafka Server started" in kafka.log_path.read_text()
