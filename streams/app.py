"""The Faust application: topics, the customer table, the detector handler and the clock.

One handler consumes the four input topics and the clock topic together, called
by Faust's fetch loop for each message (streams/intake.py), so the state of a
customer changes on the partition the message came from, and the clock goes
through a topic like the input (a timer cannot write a table, DESIGN.md section
4). The clock timer only *sends* ticks, and only for partitions this worker
actively owns, so standby replicas never fire anything.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import faust
from faust.serializers import codecs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.faust_patches import (
    check_faust_version,
    count_offset_gaps,
    drain_messages,
    fetch_from_snapshot,
    finisher,
    process_held_before_wait_empty,
    resume_inputs_after_seek,
    use_table_codecs,
)
from streams.health import broker_reachable
from streams.metrics import Metrics, faust_monitor
from streams.runtime import Outgoing, Runtime, headers_list
from streams.settings import Settings
from streams.state_store import decode_stored

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

    The bytes are made when the state is written (streams/state_store.py), so a
    record drained from the producer buffer later is still the state written.
    """

    def _dumps(self, obj: Any) -> bytes:
        return obj.raw  # type: ignore[no-any-return]

    def _loads(self, s: bytes) -> Any:
        return decode_stored(s)


class _Utf8Codec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


codecs.register("churn_state", _StateCodec())
codecs.register("churn_utf8", _Utf8Codec())


#: An assigned input partition not fetched for this long, with no rebalance under way, is stalled.
STALL_S = 30.0


def watch_input(consumer: Any, inputs: set[str], last_poll_ms: Callable[[Any], int | None],
                wall_ms: Callable[[], int], highwater: Callable[[Any], int | None]) -> Callable[[bool], list[Any]]:
    """Returns `check(settled)`: the assigned input partitions the fetcher has stopped polling.

    A worker has been seen to finish a restart and then read nothing for minutes, with no
    error (docs/reliability.md, "Open issues"). Two signs are logged, with the consumer's
    view of the partition (the evidence the open issue lacks):

    - not polled for STALL_S once nothing has been rebalanced for STALL_S (every partition
      Faust counts as active is polled at least once a second): made active again and
      returned; a paused one is left to `seek_before_fetch`'s unstick;
    - polled, with records past its read offset, and the read offset still for STALL_S:
      logged once per stall, nothing changed (the cause is unknown).
    """
    limit = STALL_S * 1000

    def fetch_state(tp: Any) -> str:
        try:
            client = consumer._thread._ensure_consumer()
            fetcher = client._fetcher
            state = client._subscription.subscription.assignment.state_value(tp)
            held = fetcher._records.get(tp)
            return (f"client position {state._position}, client paused {state.paused}, "
                    f"buffered {held!r}, in flight {sorted(fetcher._in_flight)}, "
                    f"faust active {tp in consumer._get_active_partitions()}, "
                    f"faust paused {tp in consumer._paused_partitions}, committed {consumer._committed_offset.get(tp)}")
        except Exception as exc:
            return f"client state unknown: {exc!r}"
    settled_since: list[int | None] = [None]
    reads: dict[Any, tuple[int | None, int]] = {}  # tp -> (read offset, since when, ms)
    told: set[Any] = set()
    settled_since: list[int | None] = [None]
    reads: dict[Any, tuple[int | None, int]] = {}  # tp -> (read offset, since when, ms)
    told: set[Any] = set()

    def check(settled: bool) -> list[Any]:
        now = wall_ms()
        if not settled:
            settled_since[0] = None
            reads.clear()
            told.clear()
            return []
        if settled_since[0] is None:
            settled_since[0] = now
        look_for_stalls = now - settled_since[0] >= limit
        paused = consumer._paused_partitions
        waiting: list[str] = []
        stalled: list[Any] = []
        for tp in sorted(consumer.assignment()):
            if tp.topic not in inputs:
                continue
            offset = consumer._read_offset.get(tp)
            seen = reads.get(tp)
            if seen is None or seen[0] != offset:
                reads[tp] = (offset, now)
                told.discard(tp)
            elif tp not in told and now - seen[1] >= limit:
                end = highwater(tp)
                # nothing read since a restart: the committed offset says where reading starts
                base = offset if offset is not None else consumer._committed_offset.get(tp)
                # two records past it at least: an off-by-one between offset conventions is no stall
                if end is not None and base is not None and end - 1 > base + 1:
                    waiting.append(f"{tp.topic}[{tp.partition}] (read offset {offset}, end {end}, "
                                   f"{fetch_state(tp)})")
                    told.add(tp)
            if look_for_stalls and tp not in paused:
                polled = last_poll_ms(tp)
                if polled is None or now - polled > limit:
                    stalled.append(tp)
        flow = getattr(consumer, "flow_active", "?")
        generation = getattr(consumer.app, "consumer_generation_id", "?")
        if waiting:
            log.warning("input partitions with records waiting and nothing read for %.0f s: %s "
                        "(consumer: flow %s, generation %s)", STALL_S, ", ".join(waiting), flow, generation)
        if stalled:
            active = consumer._get_active_partitions()
            buffered = getattr(consumer, "_buffered_partitions", set())

            def describe(tp: Any) -> str:
                polled = last_poll_ms(tp)
                fetched = "never" if polled is None else f"{(now - polled) / 1000:.0f} s ago"
                return (f"{tp.topic}[{tp.partition}] (active {tp in active}, buffered {tp in buffered}, "
                        f"last fetch {fetched}, read offset {consumer._read_offset.get(tp)})")

            log.warning(
                "input partitions not fetched for %.0f s after the rebalance settled; made active again: %s "
                "(consumer: flow %s, generation %s, fetching from %d of %d assigned partitions)",
                STALL_S, ", ".join(describe(tp) for tp in stalled), flow, generation,
                len(active), len(consumer.assignment()))
            active.update(stalled)
            settled_since[0] = now  # give the fetcher another STALL_S before looking again
        return stalled

    return check


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("churn-signals")
    except PackageNotFoundError:  # running from a source tree without install
        return "unknown"


def create_app(settings: Settings, metrics: Metrics | None = None) -> tuple[faust.App, Runtime]:
    check_faust_version()
    metrics = metrics or Metrics()
    metrics.initialise(settings.topics.inputs, _version(), settings.detector.version)
    t = settings.topics
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
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
        # Outputs are never awaited one by one (flush_logged awaits them before a commit), so
        # gathering them costs no latency that matters: one produce request per 10 ms instead
        # of one per trigger, and a commit's changelog burst in one request per partition.
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_MAX_BATCH_SIZE,
        broker_max_poll_records=MAX_POLL_RECORDS,
    )
    # Faust's sensor metrics go to our registry: one /metrics page serves both.
    app.monitor = faust_monitor(metrics.registry)
    table = app.Table(
        "customers", default=None, partitions=settings.partitions,
        schema=faust.Schema(key_serializer="churn_utf8", value_serializer="churn_state"),
    )
    use_table_codecs(table, "churn_utf8", "churn_state")
    changelog = table.changelog_topic
    # Triggers, audit records and dead letters sent and not yet acknowledged by the broker.
    unsent: set[asyncio.Future[Any]] = set()
    # States are written back in batches (streams/state_store.py, rule 4): the table sees
    # them, and the changelog gets them, at each flush below rather than per event.
    runtime = Runtime(settings, table, metrics, wall_ms, write_back=True)  # type: ignore[arg-type]
    producer = app.producer
    producer_flush = producer.flush

    async def acknowledged(futures: set[asyncio.Future[Any]], what: str) -> None:
        if not futures:
            return
        done, pending = await asyncio.wait(futures, timeout=60)
        if pending:
            raise RuntimeError(f"{len(pending)} {what} not acknowledged: not committing")
        for fut in done:
            if not fut.cancelled() and fut.exception() is not None:
                raise RuntimeError(f"{what} failed: not committing") from fut.exception()

    flushing = asyncio.Lock()  # two flushes at once could log a customer's states out of order

    async def flush_logged() -> None:
        # Called by Faust's commit after it chose the offsets: every message at or below
        # them has finished, so its state is in the write-back cache (or logged) and its
        # outputs were handed to the producer. Outputs before state (rule 2 of
        # streams/state_store.py): the states sealed now go to the changelog only once
        # every output sent until now is acknowledged. Messages finished while this waits
        # are not covered by the commit; their states wait for the next flush.
        # Faust's own flush returns once its buffer's queue is empty, not once the records
        # are acknowledged, and gives up after 0.1 s: every record this commit relies on
        # is awaited here (the outage fault test lost orders to a commit without that).
        async with flushing:
            sealed = runtime.seal_state()
            await send_outbox()  # the outputs of every message sealed are in `unsent` after this
            if failed:
                raise RuntimeError("output records failed: not committing") from failed[0]
            outputs = set(unsent)
            await producer_flush()
            await acknowledged(outputs, "output records")
            # Sent straight to the producer, not through Faust's send buffer: a commit's burst
            # of records (one per customer) filled that buffer past its 100 messages, and
            # Faust stops handing events to agents until it drains.
            written = {await changelog.send(key=key, value=stored, partition=partition,
                                            key_serializer="churn_utf8", value_serializer="churn_state",
                                            callback=table._on_changelog_sent)
                       for partition, key, stored in sealed}
            await producer_flush()
            await acknowledged(written, "changelog records")
            if sealed:
                # The embedded broker (Tansu) lists a partition's end offset as the first
                # offset of its last batch plus one, and Faust recovers a changelog up to the
                # listed end: the rest of a flush's batch was skipped on recovery, and a
                # restarted worker or a partition's next owner resumed from older states.
                # One tombstone per partition written, sent alone once the batch is
                # acknowledged, closes each flush: a short listing now skips only that.
                marks = {await changelog.send(key=END_MARK, value=None, partition=p, key_serializer="churn_utf8",
                                              value_serializer="raw")
                         for p in {partition for partition, _, _ in sealed}}
                await producer_flush()
                await acknowledged(marks, "changelog end marks")

    producer.flush = flush_logged  # type: ignore[method-assign]
    clock = app.topic(t.clock, key_serializer="raw", value_serializer="raw")
    out_topics = {name: app.topic(name, key_serializer="raw", value_serializer="raw")
                  for name in (t.triggers, t.audit, t.dlq)}

    # Records handed over by emit() and not sent yet, in the order they were emitted. Sent by
    # one task at a time (send_outbox), not through Faust's send buffer: that buffer sends one
    # record per turn of the event loop, and the fetch loop handles 100 messages per turn
    # (streams/intake.py), so it filled past its 100 records ("producer buffer full").
    outbox: list[Outgoing] = []
    sending = asyncio.Lock()  # one sender at a time: records of a customer keep their order
    failed: list[BaseException] = []  # outputs the producer gave up on: no commit from here on

    def sent(fut: asyncio.Future[Any]) -> None:
        unsent.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            failed.append(fut.exception())  # type: ignore[arg-type]

    async def send_outbox() -> None:
        async with sending:
            while outbox:
                batch = outbox[:]
                outbox.clear()
                for i, r in enumerate(batch):
                    try:
                        fut = await out_topics[r.topic].send(key=r.key, value=r.value, headers=r.headers,
                                                             timestamp=r.timestamp)
                    except BaseException as exc:
                        outbox[:0] = batch[i:]  # not handed to the producer: the next send retries them
                        if not isinstance(exc, asyncio.CancelledError):
                            failed.append(exc)
                        raise
                    unsent.add(fut)
                    fut.add_done_callback(sent)

    def send_soon() -> None:
        task = asyncio.ensure_future(send_outbox())
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("sending outputs failed", exc_info=t.exception()))

    def emit(records: list[Outgoing]) -> None:
        # Queued for the producer, not awaited: the next event needs no round trip to the
        # broker. The message's state waits in the write-back cache, and the flush before
        # the next commit sends it only after these are acknowledged (flush_logged).
        if records:
            if not outbox:
                send_soon()
            outbox.extend(records)
        runtime.write_state()

    finish = finisher(app)

    def process(items: Iterable[tuple[Any, list[Outgoing]]]) -> None:
        """Emit each processed message's records, then acknowledge the message."""
        for held, records in items:
            emit(records)
            finish(held)

    def unread(tp: tuple[str, int], position: int | None) -> bool:
        """Whether the broker holds messages of `tp` this worker has not received (unknown: yes)."""
        end = end_offset(tp)
        if end is None:
            return True
        if position is None:  # nothing received since assignment: consumption resumes at the commit
            position = app.consumer._committed_offset.get(faust.types.TP(*tp)) or 0
        return position < end

    def handle(msg: Any) -> None:
        # Called by the fetch loop for each message of the input and clock topics, no agent or
        # stream between (streams/intake.py). It never awaits: the message is done (state
        # staged, outputs handed to the producer, acknowledged) or held when this returns,
        # and a cancelled fetch loop leaves nothing half done.
        if msg.topic == t.clock:
            process(runtime.release(msg.partition, unread))  # held ones that waited long enough
            emit(runtime.on_tick(msg.partition, msg.value))
            finish(msg)
            return
        # Held until it can go in event-time order (streams/merge.py): unacknowledged, its
        # offset stays uncommitted until it is processed and acknowledged in process().
        process(runtime.receive(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                                msg.timestamp, headers_list(msg.headers), msg, unread))

    # Subscribed and acknowledged like an agent's topic, without the agent: the fetch loop
    # hands these messages to handle() (Faust's per-message delivery was most of the
    # worker's time, docs/performance.md); changelogs still go through Faust's conductor.
    sources = app.topic(*t.inputs, t.clock, key_serializer="raw", value_serializer="raw")
    app.topics.add(sources)
    drain_messages(app, set(sources.topics), handle)

    @app.timer(max(0.1, min(0.5, settings.merge_wait_ms / 2000)))
    async def release_waited() -> None:
        # Held messages also go when they waited long enough, whether or not anything else
        # arrives (a clock tick cannot be relied on: a partition with held input does not
        # tick). Processing needs no event context: it never writes the table directly.
        for partition in runtime.merger.partitions():
            process(runtime.release(partition, unread))

    # Faust waits for every message handed to an agent to be acknowledged before it
    # revokes partitions or stops; held messages would make it wait forever. Process them
    # first, in event-time order without waiting for the other topics.
    consumer = app.consumer
    process_held_before_wait_empty(consumer, lambda: process(runtime.drain()))
    unstick = resume_inputs_after_seek(consumer, consumer._is_changelog_tp)
    fetch_from_snapshot(consumer)
    count_offset_gaps(consumer, metrics, set(t.inputs))

    def last_poll_ms(tp: Any) -> int | None:
        try:
            return consumer._thread._ensure_consumer().last_poll_timestamp(tp)  # type: ignore[no-any-return]
        except Exception:  # the client is not there yet: unknown
            return None

    def known_end(tp: Any) -> int | None:
        try:
            return consumer.highwater(tp)  # type: ignore[no-any-return]
        except Exception:  # not fetched yet: unknown
            return None

    stalled_input = watch_input(consumer, set(t.inputs) | {t.clock}, last_poll_ms, wall_ms, known_end)

    stale_ms = max(2000, int(settings.tick_interval_s * 2000))

    @app.timer(settings.tick_interval_s)
    async def tick() -> None:
        consumer = app.consumer
        owned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == t.clock)

        def highwater(tp: tuple[str, int]) -> int | None:
            try:
                key = faust.types.TP(*tp)
                end: int | None = consumer.highwater(key)
                polled = consumer._thread._ensure_consumer().last_poll_timestamp(key)
            except Exception:  # not fetched yet: unknown
                return None
            if end is not None and (polled is None or wall_ms() - polled > stale_ms):
                # The end offset is only as fresh as the last fetch of the partition; a paused
                # one (recovery after a rebalance, flow control) keeps an old end while input
                # piles up, and looked caught up: the wall clock then fired silence for orders
                # not read yet. Unknown freshness counts as behind: the clock follows event time.
                return end + settings.caught_up_lag + 1
            return end

        def committed(tp: tuple[str, int]) -> int | None:
            return consumer._committed_offset.get(faust.types.TP(*tp))  # type: ignore[no-any-return]

        for partition, now in runtime.tick_times(owned, highwater, committed).items():
            await clock.send(key=None, value=b'{"now":%d}' % now, partition=partition)
        runtime.record_consumer_lag(owned, end_offset, committed)

    def end_offset(tp: tuple[str, int]) -> int | None:
        """The consumer's last known end offset, as Kafka reported it (for the lag metric)."""
        try:
            return app.consumer.highwater(faust.types.TP(*tp))  # type: ignore[no-any-return]
        except Exception:  # not fetched yet: unknown
            return None

    broker_ok = {"reachable": False}

    def readiness() -> dict[str, Any]:
        owned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == t.clock)
        recovered = app.tables.recovery.completed.is_set()
        ready = bool(owned) and not app.rebalancing and recovered and broker_ok["reachable"]
        metrics.ready.set(1 if ready else 0)
        return {"ready": ready, "partitions": owned, "recovered": recovered,
                "rebalancing": bool(app.rebalancing), "broker_reachable": broker_ok["reachable"]}

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
    async def first_broker_check() -> None:
        broker_ok["reachable"] = await broker_reachable(settings.bootstrap or "")

    @app.timer(5.0)
    async def broker_check() -> None:
        reachable = await broker_reachable(settings.bootstrap or "")
        if reachable != broker_ok["reachable"]:
            log.log(logging.INFO if reachable else logging.WARNING,
                    "broker %s", "reachable again" if reachable else "unreachable (ApiVersions failed)")
        broker_ok["reachable"] = reachable

    @app.timer(5.0)
    async def gauges() -> None:
        runtime.refresh_gauges()
        readiness()
        settled = not app.rebalancing and not app.should_stop and app.tables.recovery.completed.is_set()
        stuck = unstick(settled)
        if stuck:
            log.warning("input partitions %s were still paused after the rebalance; resumed",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stuck))
        stalled_input(settled and broker_ok["reachable"])  # an unreachable broker is its own alert

    @app.timer(30.0)
    async def customers_gauge() -> None:
        runtime.refresh_customers()  # walks the table: not every 5 s

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        await flush_logged()  # the next owner reads the states in the changelog
        runtime.revoke_all()

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
        body = readiness()
        return web.json(body, status=200 if body["ready"] else 503)

    return app, runtime
