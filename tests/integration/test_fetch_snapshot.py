"""The restart stall's mechanism, on a real broker and the real aiokafka client.

A restarted worker logged "Worker ready" and read nothing (docs/reliability.md,
rule 11). aiokafka's `Fetcher.fetched_records(partitions)` reads an empty set as
"every assigned partition", and Faust handed it its *live* set of active
partitions: when the recovery paused the changelogs while the input partitions
waited for their seek, a fetch still waiting returned and consumed the input
records fetched right after the seek, which Faust then dropped. These tests pin
both halves on each broker: the client behaviour the stall came from, and that
the worker's snapshot (streams/live/faust_patches.py) never loses a record that way.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.live.faust_patches import fetch_from_snapshot


async def _scenario(bootstrap: str, snapshot: bool) -> tuple[dict[str, list[int]], int]:
    prefix = f"snap{uuid.uuid4().hex[:8]}"
    changelog, inputs = TopicPartition(f"{prefix}-changelog", 0), TopicPartition(f"{prefix}-orders", 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(inputs.topic, b"order %d" % i, partition=0)
        await producer.send_and_wait(changelog.topic, b"state", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        consumer.assign([changelog, inputs])
        fetcher: Any = consumer._fetcher
        active = {changelog}  # the recovery reads the changelog; the input waits for its seek
        await fetcher.fetched_records(set(active), timeout=10)
        asked = frozenset(active) if snapshot else active
        waiting = asyncio.ensure_future(fetcher.fetched_records(asked, timeout=3))
        await asyncio.sleep(0.05)
        active.clear()  # recovery done: the changelog is paused, the input not resumed yet
        consumer.seek(inputs, 2)  # the seek to the committed offset
        got = await waiting
        returned = {tp.topic.rsplit("-", 1)[1]: [m.offset for m in ms] for tp, ms in got.items()}
        return returned, await consumer.position(inputs)
    finally:
        await consumer.stop()


def test_a_fetch_waiting_on_a_live_set_that_empties_consumes_every_partitions_records(broker: Any) -> None:
    returned, position = asyncio.run(_scenario(broker.bootstrap, snapshot=False))
    # what Faust's live set did: the input's records come back although the input was not
    # active, and the client's position has moved past them
    assert returned == {"orders": [2, 3, 4]}
    assert position == 5


def test_a_fetch_asked_for_a_snapshot_returns_nothing_of_a_partition_not_in_it(broker: Any) -> None:
    returned, position = asyncio.run(_scenario(broker.bootstrap, snapshot=True))
    assert "orders" not in returned
    assert position == 2, "the input's records stay in the client for the next fetch that asks for them"


class _FaustLikeConsumer:
    """What fetch_from_snapshot touches of Faust's consumer, around a real aiokafka client."""

    def __init__(self, client: AIOKafkaConsumer, active: set[TopicPartition]) -> None:
        self.client, self.active = client, active
        self.flow_active = True
        self.not_waiting_next_records = asyncio.Event()
        self.app = SimpleNamespace(client_only=False)
        self._buffered_partitions: set[TopicPartition] = set()
        self._read_offset: dict[TopicPartition, int | None] = {}
        # Faust runs the client in a thread of its own; here it shares the loop
        self._thread = SimpleNamespace(_ensure_consumer=lambda: client, call_thread=lambda fun, *args: fun(*args))

    def _get_active_partitions(self) -> set[TopicPartition]:
        return self.active

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        return await self.client.getmany(*active_partitions, timeout_ms=int(timeout * 1000))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _changelog_recovery(bootstrap: str) -> tuple[dict[TopicPartition, Any], int, list[int]]:
    changelog = TopicPartition(f"snap{uuid.uuid4().hex[:8]}-changelog", 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(changelog.topic, b"state %d" % i, partition=0)
    finally:
        await producer.stop()
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await client.start()
    try:
        client.assign([changelog])
        await client.seek_to_end(changelog)  # a standby replica that has read it all
        consumer = _FaustLikeConsumer(client, {changelog})
        fetch_from_snapshot(consumer)
        waiting = asyncio.ensure_future(consumer._wait_next_records(3.0))  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        # a rebalance makes it an active partition to recover: paused, seeked, resumed later
        consumer.active.discard(changelog)
        client.seek(changelog, 0)
        records, _ = await waiting
        position = await client.position(changelog)
        again = await client.getmany(changelog, timeout_ms=3000)
        return records, position, [m.offset for m in again.get(changelog, [])]
    finally:
        await client.stop()


def test_records_fetched_for_a_partition_paused_meanwhile_are_read_again(broker: Any) -> None:
    records, position, again = asyncio.run(_changelog_recovery(broker.bootstrap))
    # the waiting fetch returned the changelog's records from the recovery's seek, after its
    # pause: Faust drops them, so the client must not count them as read
    assert records == {}
    assert position == 0, "the recovery would wait forever for records the client had consumed"
    assert again == [0, 1, 2, 3, 4]
