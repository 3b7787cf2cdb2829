"""`churn-signals worker`: prepare topics, then run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from streams.broker import EmbeddedBroker
from streams.logs import logging_config
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger("churn_signals")


def run_worker(settings: Settings) -> int:
    import faust

    from streams.app import create_app

    broker: EmbeddedBroker | None = None
    if not settings.bootstrap:
        broker = EmbeddedBroker().start()
        settings = replace(settings, bootstrap=broker.bootstrap)
        print(f"KAFKA_BOOTSTRAP_SERVERS unset: embedded broker listening on {broker.bootstrap}", flush=True)
    try:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        partitions = loop.run_until_complete(ensure_topics(settings))
        settings = replace(settings, partitions=partitions)
        app, _ = create_app(settings)
        worker = faust.Worker(app, loglevel=settings.log_level, loop=loop, quiet=True,
                              logging_config=logging_config(settings.log_format, settings.log_level))
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    finally:
        if broker:
            broker.stop()
