"""Topic administration: reachability check and idempotent topic creation.

All input topics and the clock topic must have the same partition count: the
customer table is co-partitioned with them. If the inputs already exist, their
count wins; a mismatch is a clear error, not a crash inside Faust.
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.errors import CommandError
from streams.connection import KafkaConnection, start
from streams.settings import Settings


async def admin_client(conn: KafkaConnection, timeout: float = 15.0) -> AIOKafkaAdminClient:
    """A started admin client; one line saying why when it cannot start (streams/connection.py)."""
    admin = conn.admin(request_timeout_ms=int(timeout * 1000))
    await start(conn, admin, timeout, close=admin.close)
    return admin


async def ensure_topics(settings: Settings, timeout: float = 15.0) -> int:
    """Create missing topics; return the partition count the worker must use."""
    assert settings.bootstrap
    admin = await admin_client(settings.kafka, timeout)
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
