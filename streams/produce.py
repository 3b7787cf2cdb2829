"""Publish a JSON Lines event log to the input topics (key = customer_id).

Each event goes to the topic of its type with its event time as the Kafka
message timestamp. Lines that are not JSON objects with a known type and a
customer_id cannot be routed; they are reported with line numbers and counted,
and the exit code says so.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas import EVENT_TYPES
from schemas.decode import to_epoch_ms
from schemas.errors import CommandError
from schemas.validator import parse_rfc3339
from streams.jsonl import read_lines
from streams.settings import Settings
from streams.topics import quiet_connection_errors


@dataclass
class ProduceResult:
    sent: Counter[str] = field(default_factory=Counter)
    unroutable: list[tuple[int, str]] = field(default_factory=list)


def route(settings: Settings, raw: bytes) -> tuple[str, bytes, int | None] | str:
    """(topic, key, timestamp ms) for a line, or the reason it cannot be routed."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "malformed JSON"
    if not isinstance(obj, dict):
        return "not a JSON object"
    type_ = obj.get("type")
    if type_ not in EVENT_TYPES:
        return f"unknown type {type_!r}"
    cid = obj.get("customer_id")
    if not isinstance(cid, str) or not cid:
        return "missing customer_id"
    ts = obj.get("occurred_at")
    ts_ms = to_epoch_ms(ts) if isinstance(ts, str) and parse_rfc3339(ts) else None
    return settings.topics.for_event_type(type_), cid.encode(), ts_ms


async def produce_file(settings: Settings, path: str) -> ProduceResult:
    assert settings.bootstrap
    result = ProduceResult()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5)
    try:
        with quiet_connection_errors():
            await asyncio.wait_for(producer.start(), 15)
    except (TimeoutError, KafkaError, OSError):
        await producer.stop()
        raise CommandError(f"cannot reach the Kafka broker at {settings.bootstrap}") from None
    try:
        pending = []
        for line_no, raw in read_lines(path):
            r = route(settings, raw)
            if isinstance(r, str):
                result.unroutable.append((line_no, r))
                continue
            topic, key, ts_ms = r
            pending.append(await producer.send(topic, raw, key=key, timestamp_ms=ts_ms))
            result.sent[topic] += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return result


def report(result: ProduceResult) -> int:
    total = sum(result.sent.values())
    print(f"sent {total} events: " + ", ".join(f"{t}={n}" for t, n in sorted(result.sent.items())))
    if result.unroutable:
        lines = ", ".join(str(n) for n, _ in result.unroutable[:20])
        more = " ..." if len(result.unroutable) > 20 else ""
        print(f"not sent: {len(result.unroutable)} lines ({lines}{more})", file=sys.stderr)
        for n, why in result.unroutable[:20]:
            print(f"  line {n}: {why}", file=sys.stderr)
        return 1
    return 0
