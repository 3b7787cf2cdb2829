"""`churn-signals demo`: embedded broker + worker + sample traffic, triggers printed live.

1. start the embedded broker (or use KAFKA_BOOTSTRAP_SERVERS),
2. start a worker process,
3. publish a realistic 120-day history ending now,
4. keep sending live events, and print every trigger as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from detectors.envelope import iso_ms
from schemas.decode import to_epoch_ms
from streams.broker import EmbeddedBroker, free_port
from streams.connection import start
from streams.dev.samples import SampleGenerator
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.wording import describe


async def _run(settings: Settings, duration: float | None, customers: int, rate: float, show_history: bool) -> int:
    assert settings.bootstrap
    await ensure_topics(settings)
    web_port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"churn-signals-demo-worker-{os.getpid()}.log"
    # the worker connects as the demo does (its flags included), on a port of its own
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_SASL", "KAFKA_SSL"))}
    env = {**inherited, **settings.kafka.as_env(), "CHURN_WEB_PORT": str(web_port)}
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    print(f"worker started (log {log_path}); metrics at http://127.0.0.1:{web_port}/metrics", flush=True)
    gen = SampleGenerator(seed=7, customers=customers)
    now = time.time_ns() // 1_000_000
    history = gen.history(now)
    producer = settings.kafka.producer(linger_ms=5)
    consumer = settings.kafka.consumer(settings.topics.triggers, auto_offset_reset="earliest", group_id=None,
                                       enable_auto_commit=False)
    await start(settings.kafka, producer)
    await start(settings.kafka, consumer)
    colour = sys.stdout.isatty()
    seen = 0

    async def send(e: dict[str, Any]) -> None:
        await producer.send(settings.topics.for_event_type(e["type"]), orjson.dumps(e),
                            key=e["customer_id"].encode(), timestamp_ms=to_epoch_ms(e["occurred_at"]))

    async def traffic() -> None:
        for e in history:
            await send(e)
        await producer.flush()
        print(f"published {len(history)} history events for {customers} customers; "
              f"now sending live traffic (~{rate:g} orders/s). Ctrl-C to stop.", flush=True)
        while True:
            await asyncio.sleep(1 / rate)
            for e in gen.live(time.time_ns() // 1_000_000):
                await send(e)

    start_iso = iso_ms(now)
    history_kinds: Counter[str] = Counter()
    reported = 0

    async def show() -> None:
        nonlocal seen
        async for msg in consumer:
            ce = orjson.loads(msg.value)
            seen += 1
            if ce["data"]["event_time"] < start_iso and not show_history:
                history_kinds[ce["data"]["kind"]] += 1
            else:
                print(describe(ce, colour), flush=True)

    async def summarise_history() -> None:
        # Past triggers of the 120-day history are many; show them as a tally.
        nonlocal reported
        while True:
            await asyncio.sleep(3)
            total = sum(history_kinds.values())
            if total != reported:
                reported = total
                kinds = ", ".join(f"{k}={n}" for k, n in history_kinds.most_common())
                print(f"-- history: {total} triggers with event time before the demo started "
                      f"({kinds}); live ones are printed in full", flush=True)

    tasks = [asyncio.create_task(f()) for f in (traffic, show, summarise_history)]
    try:
        await asyncio.wait(tasks, timeout=duration, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            if t.done() and (exc := t.exception()) is not None:
                raise exc
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks)
        await producer.stop()
        await consumer.stop()
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        print(f"demo finished: {seen} triggers shown", flush=True)
    return 0


def run_demo(
    settings: Settings, duration: float | None, customers: int, rate: float, show_history: bool = False
) -> int:
    broker: EmbeddedBroker | None = None
    if not settings.bootstrap:
        broker = EmbeddedBroker().start()
        settings = settings.with_bootstrap(broker.bootstrap)
        print(f"embedded broker listening on {broker.bootstrap}", flush=True)
    try:
        return asyncio.run(_run(settings, duration, customers, rate, show_history))
    except KeyboardInterrupt:
        return 130
    finally:
        if broker:
            broker.stop()
