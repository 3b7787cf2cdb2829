"""Topic administration: reachability check and idempotent topic creation.

All input topics and the clock topic must have the same partition count: the
customer table is co-partitioned with them. If the inputs already exist, their
count wins; a mismatch is a clear error, not a crash inside Faust.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.errors import CommandError
from streams.settings import Settings


@contextlib.contextmanager
def quiet_connection_errors() -> Iterator[None]:
    """aiokafka logs each failed connection attempt; we report one clear line instead."""
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


async def _admin(bootstrap: str, timeout: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        with quiet_connection_errors():
            await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        await admin.close()
        raise CommandError(
            f"cannot reach the Kafka broker at {bootstrap} ({type(exc).__name__}); "
            "check KAFKA_BOOTSTRAP_SERVERS or unset it to use the embedded broker"
        ) from None
    return admin


async def partition_counts(bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    admin = await _admin(bootstrap, timeout)
    try:
        meta = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in meta if not t.get("error_code")}


async def ensure_topics(settings: Settings, timeout: float = 15.0) -> int:
    """Create missing topics; return the partition count the worker must use."""
    assert settings.bootstrap
    admin = await _admin(settings.bootstrap, timeout)
    try:
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics() if not t.get("error_code")}
        co = [settings.topics.clock, *settings.topics.inputs]
        counts = {name: existing[name] for name in co if name in existing}
        if len(set(counts.values())) > 1:
            raise CommandError(
                "input topics must have the same number of partitions (the customer table is "
                f"co-partitioned with them), found {counts}"
            )
        n = next(iter(counts.values())) if counts else settings.partitions
        wanted = [
            *(NewTopic(name, n, 1) for name in co if name not in existing),
            *(NewTopic(name, n, 1) for name in (settings.topics.triggers, settings.topics.audit, settings.topics.dlq)
              if name not in existing),
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created them first
                await admin.create_topics(wanted)
        return n
    finally:
        await admin.close()
