"""The live worker, wired: topics, the customer table, the handler, the checkpoint, the clock.

One handler consumes the four input topics and the clock topic together, called
by Faust's fetch loop for each message (`drain_messages` in
streams/live/faust_patches.py), so the state of a customer changes on the partition
the message came from, and the clock goes through a topic like the input (a
timer cannot write a table, DESIGN.md section 4). The clock timer only *sends*
ticks, and only for partitions this worker actively owns, so standby replicas
never fire anything. Outputs, then states, then offsets: streams/live/checkpoint.py.
Every change to Faust's own behaviour: streams/live/faust_patches.py; every read of
its private state: streams/live/consumer_view.py. This module only wires them.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import faust
from faust.serializers import codecs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.health import broker_reachable
from streams.live.checkpoint import Checkpoint, SendChangelog, SendEndMark, SendOutput
from streams.live.consumer_view import ConsumerView, watch_input, watch_recovery
from streams.live.faust_patches import (
    check_faust_version,
    count_offset_gaps,
    drain_messages,
    fetch_from_snapshot,
    finisher,
    flush_before_commit,
    process_held_before_wait_empty,
    resume_inputs_after_seek,
    use_table_codecs,
)
from streams.live.metrics import Metrics, faust_monitor
from streams.live.runtime import Outgoing, Runtime, headers_list
from streams.live.state_store import decode_stored
from streams.settings import Settings
from streams.topics import table_topic_configs

log = logging.getLogger("churn_signals")

#: Producer batching (also used by the bench baselines, bench/faust_baselines.py): records wait up
#: to this long to share a produce request (aiokafka's default: 0, a request per record while
#: the previous one is answered), in batches of up to this many bytes per partition.
PRODUCER_LINGER_S = 0.01
PRODUCER_MAX_BATCH_SIZE = 256 * 1024
#: Records one poll hands over at most (aiokafka's default: all it has fetched, ~10,000 in the
#: bench's backlog); also used by the bench baselines.
MAX_POLL_RECORDS = 2000

#: Changelog key of the tombstone closing each flush (never a customer id: ids are printable).
END_MARK = "\x00end-of-flush"


class _StateCodec(codecs.Codec):
    """Compact, lossless changelog encoding of a customer's state and source offsets.

    The bytes are made when the state is written (streams/live/state_store.py), so a
    record drained from the producer buffer later is still the state written.
    """

    def _dumps(self, obj: Any) -> bytes:
        return obj.raw  # type: ignore[no-any-return]  # a Stored record: its bytes, typed Any by Faust's codec API

    def _loads(self, s: bytes) -> Any:
        return decode_stored(s)


class _Utf8Codec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


codecs.register("churn_state", _StateCodec())
codecs.register("churn_utf8", _Utf8Codec())


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("churn-signals")
    except PackageNotFoundError:  # running from a source tree without install
        return "unknown"


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the worker's settings (no tables, topics or handlers yet)."""
    return faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=settings.kafka.faust_credentials(),  # SASL and TLS, as every other client
        store="memory://",
        topic_partitions=settings.partitions,
        # Faust declares its own topics (the table changelog, the assignor's leader topic) with these;
        # the worker has created them before (streams/topics.py), so this is the fallback.
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=settings.create_topics,
        table_standby_replicas=settings.standby_replicas,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        datadir=str(Path(tempfile.gettempdir()) / f"churn-signals-{settings.app_id}-{settings.web_port}"),
        autodiscover=False,
        # Small group timeouts: the embedded broker waits for the rebalance timeout
        # before a lone member joins; real Kafka is unaffected by lower values.
        broker_rebalance_timeout=6.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Outputs are never awaited one by one (the Checkpoint awaits them before a commit), so
        # gathering them costs no latency that matters: one produce request per 10 ms instead
        # of one per trigger, and a commit's changelog burst in one request per partition.
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_MAX_BATCH_SIZE,
        broker_max_poll_records=MAX_POLL_RECORDS,
    )


def create_app(settings: Settings, metrics: Metrics | None = None) -> tuple[faust.App, Runtime]:
    """The live worker, wired: Faust app, customer table, handler, checkpoint, patches, timers, pages."""
    check_faust_version()
    metrics = metrics or Metrics()
    metrics.initialise(settings.topics.inputs, _version(), settings.detector.version)
    t = settings.topics
    app = faust_app(settings)
    app.monitor = faust_monitor(metrics.registry)  # Faust's sensor metrics on our /metrics page
    table = app.Table("customers", default=None, partitions=settings.partitions,
                      extra_topic_configs=table_topic_configs(settings),
                      schema=faust.Schema(key_serializer="churn_utf8", value_serializer="churn_state"))
    use_table_codecs(table, "churn_utf8", "churn_state")
    changelog = table.changelog_topic
    # States are written back in batches (streams/live/state_store.py): the table sees them, and
    # the changelog gets them, at each checkpoint rather than per event.
    runtime = Runtime(settings, table, metrics, wall_ms, write_back=True)
    clock = app.topic(t.clock, key_serializer="raw", value_serializer="raw")
    out_topics = {name: app.topic(name, key_serializer="raw", value_serializer="raw")
                  for name in (t.triggers, t.audit, t.dlq)}
    producer = app.producer
    # Faust annotates Topic.send as Awaitable[RecordMetadata]; awaited, it gives the FutureMessage
    # that the broker's acknowledgement resolves, which is what the checkpoint waits on.
    checkpoint = Checkpoint(
        send_output=cast(SendOutput, lambda topic, key, value, headers, timestamp: out_topics[topic].send(
            key=key, value=value, headers=headers, timestamp=timestamp)),
        # Straight to the producer, not through Faust's send buffer: a commit's burst of
        # records (one per customer) filled that buffer past its 100 messages, and Faust
        # stops handing events to agents until it drains.
        send_changelog=cast(SendChangelog, lambda p, key, stored: changelog.send(
            key=key, value=stored, partition=p, key_serializer="churn_utf8", value_serializer="churn_state",
            callback=table._on_changelog_sent)),  # type: ignore[attr-defined]  # Faust's own callback (private)
        send_end_mark=cast(SendEndMark, lambda p: changelog.send(key=END_MARK, value=None, partition=p,
                                                                 key_serializer="churn_utf8", value_serializer="raw")),
        producer_flush=producer.flush, seal=runtime.seal_state, write_state=runtime.write_state, log=log)
    flush_before_commit(producer, checkpoint.flush)
    consumer, view = app.consumer, ConsumerView(app, wall_ms)
    finish, emit = finisher(app), checkpoint.emit

    def process(items: Iterable[tuple[Any, list[Outgoing]]]) -> None:
        """Emit each processed message's records, then acknowledge the message."""
        for held, records in items:
            emit(records)
            finish(held)

    def handle(msg: Any) -> None:
        # Called by the fetch loop for each message of the input and clock topics, no agent or
        # stream between (faust_patches.drain_messages). It never awaits: the message is done
        # (state staged, outputs queued, acknowledged) or held when this returns, and a
        # cancelled fetch loop leaves nothing half done.
        if msg.topic == t.clock:
            process(runtime.release(msg.partition, view.unread))  # held ones that waited long enough
            emit(runtime.on_tick(msg.partition, msg.value))
            finish(msg)
            return
        # Held until it can go in event-time order (streams/live/merge.py): unacknowledged, its
        # offset stays uncommitted until it is processed and acknowledged in process().
        process(runtime.receive(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                                msg.timestamp, headers_list(msg.headers), msg, view.unread))

    # Subscribed and acknowledged like an agent's topic, without the agent: the fetch loop
    # hands these messages to handle(); changelogs still go through Faust's conductor.
    sources = app.topic(*t.inputs, t.clock, key_serializer="raw", value_serializer="raw")
    app.topics.add(sources)
    drain_messages(app, set(sources.topics), handle)
    process_held_before_wait_empty(consumer, lambda: process(runtime.drain()))
    unstick = resume_inputs_after_seek(consumer, consumer._is_changelog_tp)  # type: ignore[attr-defined]  # private
    fetch_from_snapshot(consumer)
    count_offset_gaps(consumer, metrics, set(t.inputs))
    stalled_input = watch_input(consumer, set(t.inputs) | {t.clock}, view.last_poll_ms, wall_ms, view.end_offset)
    stalled_recovery = watch_recovery(app, time.monotonic)

    # Faust's signal type wants a `signal` keyword in the receiver's signature; it passes it in **kwargs.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        await checkpoint.flush()  # the next owner reads the states in the changelog
        runtime.revoke_all()

    health = Health(app, settings, metrics, view)
    schedule(app, settings, runtime, view, clock, health, unstick, stalled_input, process)

    @app.timer(5.0)
    async def recovery_watchdog() -> None:
        await stalled_recovery()

    add_pages(app, metrics, health)
    return app, runtime


class Health:
    """Readiness: active partitions assigned, table state recovered, broker answering."""

    def __init__(self, app: Any, settings: Settings, metrics: Metrics, view: ConsumerView) -> None:
        self.app, self.settings, self.metrics, self.view = app, settings, metrics, view
        self.broker_reachable = False
        self.ssl = settings.kafka.ssl_context()  # the probe asks the listener the clients use, as they do

    async def check_broker(self) -> None:
        reachable = await broker_reachable(self.settings.bootstrap or "", ssl=self.ssl)
        if reachable != self.broker_reachable:
            log.log(logging.INFO if reachable else logging.WARNING,
                    "broker %s", "reachable again" if reachable else "unreachable (ApiVersions failed)")
        self.broker_reachable = reachable

    def readiness(self) -> dict[str, Any]:
        owned = self.view.owned(self.settings.topics.clock)
        recovered = self.app.tables.recovery.completed.is_set()
        ready = bool(owned) and not self.app.rebalancing and recovered and self.broker_reachable
        self.metrics.ready.set(1 if ready else 0)
        return {"ready": ready, "partitions": owned, "recovered": recovered,
                "rebalancing": bool(self.app.rebalancing), "broker_reachable": self.broker_reachable}


def schedule(app: Any, settings: Settings, runtime: Runtime, view: ConsumerView, clock: Any, health: Health,
             unstick: Callable[[bool], list[Any]], stalled_input: Callable[[bool], list[Any]],
             process: Callable[[Iterable[tuple[Any, list[Outgoing]]]], None]) -> None:
    """The worker's timers: the clock ticks, held messages, gauges, the broker check, the watchdogs."""
    clock_topic = settings.topics.clock
    stale_ms = max(2000, int(settings.tick_interval_s * 2000))

    @app.timer(max(0.1, min(0.5, settings.merge_wait_ms / 2000)))
    async def release_waited() -> None:
        # Held messages also go when they waited long enough, whether or not anything else
        # arrives (a clock tick cannot be relied on: a partition with held input does not
        # tick). Processing needs no event context: it never writes the table directly.
        for partition in runtime.merger.partitions():
            process(runtime.release(partition, view.unread))

    @app.timer(settings.tick_interval_s)
    async def tick() -> None:
        owned = view.owned(clock_topic)

        def highwater(tp: tuple[str, int]) -> int | None:
            return view.fresh_end(tp, stale_ms, settings.caught_up_lag)

        for partition, now in runtime.tick_times(owned, highwater, view.committed, view.last_poll_ms).items():
            await clock.send(key=None, value=b'{"now":%d}' % now, partition=partition)
        runtime.record_consumer_lag(owned, view.end_offset, view.committed)

    @app.task
    async def drop_debug_records() -> None:
        # Faust's worker can leave the root logger at DEBUG (its terminal spinner wants every
        # record) and lets the handlers filter: aiokafka then built a debug record per
        # request, a few percent of the worker's time. Records below the configured level
        # are now never made.
        level = logging.getLevelName(settings.log_level.upper())
        root = logging.getLogger()
        if isinstance(level, int) and root.level < level:
            root.setLevel(level)

    @app.task
    async def announce_connection() -> None:
        log.info("Kafka: %s", settings.kafka.describe())  # how, never a secret (KafkaConnection.describe)

    @app.task
    async def first_broker_check() -> None:
        health.broker_reachable = await broker_reachable(settings.bootstrap or "", ssl=health.ssl)

    @app.timer(5.0)
    async def broker_check() -> None:
        await health.check_broker()

    @app.timer(5.0)
    async def gauges() -> None:
        runtime.refresh_gauges()
        health.readiness()
        settled = view.settled()
        stuck = unstick(settled)
        if stuck:
            log.warning("input partitions %s were still paused after the rebalance; resumed",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stuck))
        stalled_input(settled and health.broker_reachable)  # an unreachable broker is its own alert

    @app.timer(30.0)
    async def customers_gauge() -> None:
        runtime.refresh_customers()  # walks the table: not every 5 s


def add_pages(app: Any, metrics: Metrics, health: Health) -> None:
    """/metrics (ours and Faust's), /healthz, /readyz."""

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body = generate_latest(metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Ready = active partitions assigned, table state recovered, broker answering."""
        body = health.readiness()
        return web.json(body, status=200 if body["ready"] else 503)
