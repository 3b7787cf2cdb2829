"""Publish a JSON Lines event log to the input topics (key = customer_id).

Each event goes to the topic of its type with its event time as the Kafka
message timestamp. Lines that are not JSON objects with a known type and a
customer_id cannot be routed; they are reported with line numbers and counted,
and the exit code says so.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from schemas import EVENT_TYPES
from schemas.decode import to_epoch_ms
from schemas.errors import CommandError
from schemas.validator import parse_rfc3339
from streams.connection import start
from streams.offline.sources import FileSource
from streams.progress import Progress
from streams.settings import Settings


@dataclass
class ProduceResult:
    sent: Counter[str] = field(default_factory=Counter)
    unroutable: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0


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


async def produce_file(settings: Settings, path: str, rate: float | None = None,
                       progress: str = "never") -> ProduceResult:
    """Send every routable line; `rate` caps events per second (a backfill must not swamp live traffic)."""
    assert settings.bootstrap
    if rate is not None and rate <= 0:
        raise CommandError(f"--rate must be positive, got {rate:g}")
    result = ProduceResult()
    source = FileSource(path)
    bar = Progress(source.progress, label=f"produce {path}", mode=progress)
    started = time.monotonic()
    sent = 0
    producer = settings.kafka.producer(acks="all", linger_ms=5)
    await start(settings.kafka, producer)
    try:
        pending = []
        batch = 1000 if rate is None else max(1, min(1000, int(rate / 10)))
        for line_no, raw in source.lines():
            r = route(settings, raw)
            if isinstance(r, str):
                result.unroutable.append((line_no, r))
                continue
            topic, key, ts_ms = r
            pending.append(await producer.send(topic, raw, key=key, timestamp_ms=ts_ms))
            result.sent[topic] += 1
            sent += 1
            if len(pending) >= batch:
                await asyncio.gather(*pending)
                pending.clear()
                bar.update(sent)
                if rate is not None:
                    # Token bucket over the whole run: sleep until `sent` events are due.
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        bar.close(sent)
    result.seconds = time.monotonic() - started
    return result


def report(result: ProduceResult) -> int:
    total = sum(result.sent.values())
    print(f"sent {total} events: " + ", ".join(f"{t}={n}" for t, n in sorted(result.sent.items())))
    if result.seconds > 0:
        print(f"in {result.seconds:.1f}s ({total / result.seconds:,.0f} events/s)", file=sys.stderr)
    if result.unroutable:
        lines = ", ".join(str(n) for n, _ in result.unroutable[:20])
        more = " ..." if len(result.unroutable) > 20 else ""
        print(f"not sent: {len(result.unroutable)} lines ({lines}{more})", file=sys.stderr)
        for n, why in result.unroutable[:20]:
            print(f"  line {n}: {why}", file=sys.stderr)
        return 1
    return 0
