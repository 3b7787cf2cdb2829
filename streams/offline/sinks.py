"""Where replayed triggers and rejects go: JSON Lines files (.gz too), stdout, or a Kafka topic.

Trigger lines are the canonical CloudEvent bytes (`detectors.envelope.encode`),
the same bytes the live worker writes to the trigger topic, so a file of
replayed triggers can be compared byte for byte with the topic.
"""

from __future__ import annotations

import asyncio
import gzip
import sys
from pathlib import Path
from typing import IO, Any, cast

import orjson

from detectors import Decision
from detectors.envelope import CONTENT_TYPE, encode
from schemas.errors import CommandError
from streams.connection import start
from streams.offline.sources import Reject
from streams.settings import Settings


def open_output(path: str | None) -> IO[bytes]:
    """A binary file for writing (`-` or None: stdout; `.gz`: compressed)."""
    if path in (None, "-"):
        return sys.stdout.buffer
    p = Path(path)
    if not p.parent.exists():
        raise CommandError(f"output folder {p.parent} does not exist")
    try:
        # typeshed does not count GzipFile as an IO[bytes]; it is one for every use here
        return cast(IO[bytes], gzip.open(p, "wb")) if p.suffix == ".gz" else open(p, "wb")  # closed by the caller
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


class FileSink:
    def __init__(self, path: str | None) -> None:
        self.fh = open_output(path)
        self.count = 0

    def write(self, ce: dict[str, Any], _decision: Decision | None = None) -> None:
        self.fh.write(encode(ce) + b"\n")
        self.count += 1

    def close(self) -> None:
        if self.fh is sys.stdout.buffer:
            self.fh.flush()
        else:
            self.fh.close()


class RejectSink:
    """One JSON line per reject: source, line (or partition/offset), reason, message, raw text."""

    def __init__(self, path: str) -> None:
        self.fh = open_output(path)

    def write(self, r: Reject) -> None:
        self.fh.write(orjson.dumps(r.to_json()) + b"\n")

    def close(self) -> None:
        self.fh.close()


async def _ensure_topics(settings: Settings, names: list[str]) -> None:
    """The output topics with the deployment's replication (streams/topics.py); only checked when
    CHURN_CREATE_TOPICS=false."""
    from streams.topics import TopicSpec, admin_client, create, existing_topics, isr_configs, missing_line

    isr = isr_configs(settings)
    admin = await admin_client(settings.kafka, 15.0)
    try:
        existing = await existing_topics(admin)
        missing = [TopicSpec(n, settings.partitions, settings.replication_factor, isr, "output", "replayed triggers")
                   for n in dict.fromkeys(names) if n not in existing]
        if missing and not settings.create_topics:
            raise CommandError(missing_line(settings, missing))
        await create(admin, missing)
    finally:
        await admin.close()


class TopicSink:
    """Triggers to a Kafka topic: key = customer id, timestamp = the trigger's event time.

    Suppressed decisions go to `audit_topic` when given, else to the same topic
    (their `decision` field says what they are).
    """

    def __init__(self, settings: Settings, topic: str, audit_topic: str | None = None, batch: int = 2000) -> None:
        from aiokafka import AIOKafkaProducer

        self.topic = topic
        self.audit_topic = audit_topic or topic
        self.batch = batch
        self.count = 0
        conn = settings.kafka

        async def create() -> AIOKafkaProducer:  # aiokafka binds to the loop running when it is built
            return conn.producer(acks="all", linger_ms=5)

        self.loop = asyncio.new_event_loop()
        try:  # brokers may not create topics on first write (auto.create.topics.enable=false)
            self.loop.run_until_complete(_ensure_topics(settings, [topic, self.audit_topic]))
            self.producer = self.loop.run_until_complete(create())
            self.loop.run_until_complete(start(conn, self.producer))
        except BaseException:
            self.loop.close()
            raise
        self.pending: list[Any] = []

    def write(self, ce: dict[str, Any], decision: Decision | None = None) -> None:
        emitted = ce["data"]["decision"] == "emit"
        ts = decision.time_ms if decision is not None else None
        fut = self.loop.run_until_complete(self.producer.send(
            self.topic if emitted else self.audit_topic, encode(ce), key=ce["subject"].encode(),
            timestamp_ms=ts, headers=[("content-type", CONTENT_TYPE.encode())],
        ))
        self.pending.append(fut)
        self.count += 1
        if len(self.pending) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.loop.run_until_complete(asyncio.gather(*self.pending))
            self.pending.clear()

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self.loop.run_until_complete(self.producer.stop())
            self.loop.close()
