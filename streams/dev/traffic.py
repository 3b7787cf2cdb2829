"""Sample traffic for a running stack: `python -m streams.dev.traffic` (compose profile "traffic").

Publishes a 120-day history ending now for the sample customers, then live
events at `--rate` orders per second until stopped, plus a small share of
malformed messages so the dead-letter panels of the dashboard show something.
It only produces: the workers of the stack do the detecting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from schemas.decode import to_epoch_ms
from streams.dev.samples import SampleGenerator
from streams.settings import load_settings


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m streams.dev.traffic", description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=500, help="sample customers (default 500)")
    p.add_argument("--rate", type=float, default=5.0, help="live orders per second (default 5)")
    p.add_argument("--invalid-share", type=float, default=0.01, help="share of malformed messages (default 0.01)")
    p.add_argument("--no-history", action="store_true", help="skip the 120-day history")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until stopped)")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    topics = settings.topics
    producer = settings.kafka.producer(linger_ms=5, acks="all")
    for attempt in range(30):  # the broker may still be starting
        try:
            await producer.start()
            break
        except Exception as exc:
            print(f"waiting for Kafka at {settings.bootstrap} ({type(exc).__name__})", flush=True)
            await producer.stop()
            producer = settings.kafka.producer(linger_ms=5, acks="all")
            await asyncio.sleep(min(10, 1 + attempt))
    else:
        return 1
    gen = SampleGenerator(seed=args.seed, customers=args.customers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sent = bad = 0

    async def send(e: dict[str, Any]) -> None:
        nonlocal sent
        await producer.send(topics.for_event_type(e["type"]), orjson.dumps(e), key=e["customer_id"].encode(),
                            timestamp_ms=to_epoch_ms(e["occurred_at"]))
        sent += 1

    try:
        if not args.no_history:
            for e in gen.history(time.time_ns() // 1_000_000):
                await send(e)
            await producer.flush()
            print(f"published {sent} history events for {args.customers} customers", flush=True)
        started = time.monotonic()
        while not stop.is_set():
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
            for e in gen.live(time.time_ns() // 1_000_000):
                await send(e)
            if gen.rng.random() < args.invalid_share * 3:  # ~3 messages per live burst
                await producer.send(topics.orders, b'{"event_id": "broken", ', key=b"sample-invalid")
                bad += 1
            if sent % 500 == 0:
                print(f"sent {sent} events, {bad} malformed", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / args.rate)
    finally:
        await producer.stop()
    print(f"stopped after {sent} events, {bad} malformed", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(_args(argv)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
