"""`churn-signals worker`: prepare topics, then run the Faust worker until stopped.

The embedded broker starts only when asked (`--embedded-broker`): a worker
without a bootstrap server must not quietly detect churn on an in-memory toy
and report ready, as it did when KAFKA_BOOTSTRAP_SERVERS was unset or misspelt.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from schemas.errors import CommandError
from streams.broker import EmbeddedBroker
from streams.collector import WORKER_GEN0, fewer_collections
from streams.live.logs import logging_config
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger("churn_signals")


NO_BROKER = ("no Kafka chosen: set KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers, or bootstrap_servers in "
             "[kafka]) to use a cluster, or pass --embedded-broker for a throwaway in-memory broker on loopback")


def run_worker(settings: Settings, embedded_port: int | None = None) -> int:
    """Run until stopped; `embedded_port`: start the embedded broker there first (0: any free port)."""
    import faust

    from streams.live.app import create_app

    broker: EmbeddedBroker | None = None
    if embedded_port is None and not settings.bootstrap:
        raise CommandError(NO_BROKER)
    if embedded_port is not None:
        if settings.bootstrap:
            raise CommandError(f"--embedded-broker starts a broker of its own, but a bootstrap server is set "
                               f"({settings.bootstrap}): drop one of the two")
        if settings.kafka.security_protocol != "PLAINTEXT":
            raise CommandError("the embedded broker speaks PLAINTEXT only: drop KAFKA_SECURITY_PROTOCOL "
                               "or --embedded-broker")
        broker = EmbeddedBroker(port=embedded_port or None).start()
        settings = settings.with_bootstrap(broker.bootstrap)
        print(f"embedded broker (memory only) listening on {broker.bootstrap}", flush=True)
    try:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        partitions = loop.run_until_complete(ensure_topics(settings))
        settings = replace(settings, partitions=partitions)
        app, _ = create_app(settings)
        worker = faust.Worker(app, loglevel=settings.log_level, loop=loop, quiet=True,
                              logging_config=logging_config(settings.log_format, settings.log_level))
        try:
            with fewer_collections(WORKER_GEN0, freeze=True):
                worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    finally:
        if broker:
            broker.stop()
