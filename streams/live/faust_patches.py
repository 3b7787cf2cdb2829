"""Every place the live worker changes Faust's behaviour, in one module.

The worker runs on faust-streaming 0.15.x, whose consumer runs aiokafka in a
thread of its own and talks to it through a method queue. Each function below
replaces or wraps one Faust method *on the app's own instances* (never on the
classes), says what Faust does there and why that is not good enough for us,
and is pinned in `PINNED`: the SHA-256 of the source of the Faust (or aiokafka)
function whose behaviour it replaces or relies on, as installed when the patch
was written. `tests/unit/test_faust_patches.py` recomputes them, so an upgrade
that changes one of those functions fails loudly and names the patch to re-read.
`check_faust_version()` refuses, at start-up, a faust-streaming outside the
range these patches were written for.

| patch                        | replaces                          | why (docs/reliability.md) |
|------------------------------|-----------------------------------|---------------------------|
| `fetch_from_snapshot`        | `Consumer._wait_next_records`     | the restart stall, the unread changelog (rule 11) |
| `resume_inputs_after_seek`   | `resume_partitions`, `perform_seek` | records fetched before the seek (rule 10) |
| `drain_messages`             | `Consumer._drain_messages`        | no agent per message (docs/performance.md) |
| `process_held_before_wait_empty` | `Consumer.wait_empty`         | held messages would block a rebalance (rule 6) |
| `flush_before_commit`        | `Producer.flush` (run by the commit) | outputs, then state, then offsets (rules 1, 2) |
| `count_offset_gaps`          | `Consumer._add_gap`               | a skipped input offset is counted and logged |
| `use_table_codecs`           | the table's derived serializers   | our own compact state codec |

Must never: decide anything about events (that is the core), or patch a Faust
class (other apps in the same process would change too).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from importlib import import_module
from importlib.metadata import version
from time import monotonic
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING

from schemas.errors import CommandError

log = logging.getLogger("churn_signals")

#: The faust-streaming releases these patches were written against and tested with.
FAUST_RANGE = ((0, 15, 3), (0, 16, 0))

#: Qualified name -> SHA-256 (first 16 hex digits) of `inspect.getsource` of each function a
#: patch replaces or relies on. A mismatch means Faust or aiokafka changed under a patch.
PINNED: dict[str, str] = {
    # fetch_from_snapshot replaces it; fetched_records is why (an empty set means "every partition")
    "faust.transport.consumer.Consumer._wait_next_records": "6218e1969a636b3f",
    "aiokafka.consumer.fetcher.Fetcher.fetched_records": "be4348896b9b66af",
    # and gives back what Faust would drop, with the client's own seek
    "aiokafka.consumer.consumer.AIOKafkaConsumer.seek": "a9430f1f3b9ac419",
    # resume_inputs_after_seek wraps them; the recovery's order (resume, then seek) is what it relies on
    "faust.transport.consumer.Consumer.resume_partitions": "afe6b7c02a41d63c",
    "faust.transport.consumer.Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.tables.recovery.Recovery.on_recovery_completed": "6ef567acf072e46d",
    # drain_messages is a copy of it with one change
    "faust.transport.consumer.Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer.Consumer.getmany": "4b168d84882a70d6",
    # process_held_before_wait_empty wraps it
    "faust.transport.consumer.Consumer.wait_empty": "e4662fe24f094819",
    # flush_before_commit replaces the producer flush that the commit runs before committing
    "faust.transport.consumer.Consumer._commit_offsets": "1a69799041188441",
    "faust.transport.drivers.aiokafka.Producer.flush": "36d0cb3615f65b01",
    # count_offset_gaps wraps it
    "faust.transport.consumer.Consumer._add_gap": "4df2573ded7c1c2c",
    # watch_recovery (streams/live/consumer_view.py) reads the recovery's own progress as these keep
    # it, and re-seeks the way the recovery seeks
    "faust.tables.recovery.Recovery._set_recovery_started": "bcfebf81ae13fc75",
    "faust.tables.recovery.Recovery._verify_remaining": "2427027d0c01623f",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._seek_wait": "9d221e816d940467",
}


def source_digest(qualified: str) -> str:
    """SHA-256 (16 hex digits) of the source of `module.Class.function`, as installed."""
    parts = qualified.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        try:
            obj: Any = import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    raise ImportError(f"no importable module in {qualified}")


def check_faust_version() -> None:
    """Refuse to start on a faust-streaming these patches were not written for (one line, exit 2)."""
    installed = version("faust-streaming")
    numbers = tuple(int(p) for p in installed.split(".")[:3] if p.isdigit())
    low, high = FAUST_RANGE
    if not (low <= numbers < high):
        raise CommandError(
            f"faust-streaming {installed} is installed; the worker patches Faust internals written for "
            f"{'.'.join(map(str, low))} up to before {'.'.join(map(str, high))}: "
            f"pip install 'faust-streaming>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}'")


# -- the restart stall ----------------------------------------------------------------------------
def fetch_from_snapshot(consumer: Any) -> None:
    """Ask aiokafka for the records of a *copy* of the active partitions, never the live set.

    Faust's `_wait_next_records` hands its live set of active partitions to aiokafka's
    `Fetcher.fetched_records`, which runs in the consumer thread and waits up to a second
    for data. aiokafka reads an *empty* set as "every assigned partition". After a restart,
    the recovery pauses the changelogs once it has read them, and the input partitions stay
    paused until they are seeked (`resume_inputs_after_seek`): for a moment the live set is
    empty. A fetch still waiting from the recovery then returned, and consumed, the input
    records fetched right after the seek; Faust dropped them (their partitions were not
    active) while aiokafka's position had moved past them. The worker logged "Worker ready"
    and read nothing: every later fetch of those partitions was empty at the end offset,
    and nothing ever seeked them back (the restart stall, docs/reliability.md rule 11).

    With a snapshot, aiokafka returns only partitions that were active when asked, and an
    empty snapshot is never sent. Records are still filtered against the live set, as Faust
    does, but the records of a partition paused while the fetch waited are not left
    consumed: the client is rewound to the first of them (in its own thread, and only if
    its position is still right after the last of them, so a seek made meanwhile wins).
    Faust counted on the recovery after a rebalance to seek such a partition, but the
    recovery seeks *before* it resumes: a fetch still waiting from the previous generation
    returned a changelog partition's records from the recovery's own seek position while
    the partition was paused, they were dropped, and the recovery waited for them forever
    (docs/reliability.md, "A changelog partition its recovery never reads").
    """

    async def rewind(client: Any, tp: Any, first: int, after: int) -> bool:
        """In the consumer thread: back to `first` if nothing moved the position since."""
        try:
            state = client._subscription.subscription.assignment.state_value(tp)
        except Exception:  # no longer assigned: the next owner reads from the commit
            return False
        if getattr(state, "_position", None) != after:
            return False
        client.seek(tp, first)
        return True

    async def give_back(records: dict[Any, Any], active: Any) -> None:
        buffered = consumer._buffered_partitions
        for tp in [tp for tp in records if tp not in active and tp not in buffered]:
            batch = records.pop(tp)
            if not batch:
                continue
            first, after = batch[0].offset, batch[-1].offset + 1
            thread = consumer._thread
            if await thread.call_thread(rewind, thread._ensure_consumer(), tp, first, after):
                consumer._read_offset[tp] = first if first else None
                log.info("%s[%d]: %d records fetched while it was paused given back (from offset %d)",
                         tp.topic, tp.partition, len(batch), first)

    async def _wait_next_records(timeout: float) -> tuple[Any, Any]:
        if not consumer.flow_active:
            await consumer.wait(consumer.can_resume_flow)
        try:
            consumer.not_waiting_next_records.set()
            if consumer.app.client_only:
                return await consumer._getmany(active_partitions=None, timeout=timeout), None
            active = consumer._get_active_partitions()
            snapshot = frozenset(active)
            if not snapshot:
                await consumer.sleep(1)
                return {}, active
            records = await consumer._getmany(active_partitions=snapshot, timeout=timeout)
            if records:
                await give_back(records, active)
            return records, active
        finally:
            consumer.not_waiting_next_records.set()

    consumer._wait_next_records = _wait_next_records


def resume_inputs_after_seek(consumer: Any, is_changelog: Callable[[Any], bool]) -> Callable[[bool], list[Any]]:
    """Keep input partitions paused until they are seeked to their committed offsets.

    After a rebalance, Faust's recovery resumes the input partitions and then seeks them
    to the committed offsets, while its fetcher (started to read the changelogs) runs.
    Input records fetched in between were handed on for processing, and the seek then
    moved Faust's read offset back below them: the next record looked like a jump in
    offsets, which Faust records as a gap it may commit, and the records fetched again
    after the seek were dropped as already read. A restarted worker lost an input message
    about one run in ten (docs/reliability.md rule 10). Faust resumes input partitions
    only right before such a seek, so the resume now waits for the seek.

    Returns `unstick(settled)`, for a periodic check: with no rebalance under way
    (`settled`), an input partition found paused at two calls in a row is resumed and
    returned. None is expected; it keeps a missed resume from stopping the worker's input.
    """
    resume, seek = consumer.resume_partitions, consumer.perform_seek
    waiting: set[Any] = set()
    suspects: set[Any] = set()

    def resume_partitions(tps: Iterable[Any]) -> None:
        tps = set(tps)
        changelogs = {tp for tp in tps if is_changelog(tp)}
        waiting.update(tps - changelogs)
        if changelogs:
            resume(changelogs)

    async def perform_seek() -> None:
        try:
            await seek()
        finally:  # also when the seek fails or a new rebalance cancels it: never left paused
            if waiting:
                tps = set(waiting)
                waiting.clear()
                resume(tps)

    def unstick(settled: bool) -> list[Any]:
        if not settled:
            suspects.clear()
            return []
        paused = waiting | {tp for tp in consumer._paused_partitions if not is_changelog(tp)}
        stuck = sorted(paused & suspects)
        suspects.clear()
        suspects.update(paused.difference(stuck))
        if stuck:
            waiting.difference_update(stuck)
            resume(stuck)
        return stuck

    consumer.resume_partitions = resume_partitions
    consumer.perform_seek = perform_seek
    return unstick


# -- the fetch loop without agents ----------------------------------------------------------------
#: Messages handled between two returns to the event loop (Faust's own loop: 100), so the
#: producer, the commit, the timers and the web server run while a large poll is handled.
YIELD_EVERY = 100


def drain_messages(app: Any, topics: set[str], handle: Callable[[Any], None]) -> None:
    """Replace `app.consumer._drain_messages`: `topics`' messages go straight to `handle`.

    Faust hands each fetched message to an agent through four steps, per message: the
    fetch loop races the delivery against a flow stop in `Service.wait_first` (four tasks
    and an `asyncio.wait`), the conductor decodes it into an `Event` and queues it on the
    agent's channel, the stream takes it off the queue, runs the stream sensors and sets
    the current event, and acknowledges it after the agent's body: ~70 µs per message on
    the bench machine (docs/performance.md). The worker's handling of a message is
    synchronous and needs none of it.

    This is Faust's `Consumer._drain_messages` with one change: a message of one of
    `topics` is tracked as Faust's stream would track it (pending until acknowledged,
    message sensors) and passed to `handle` in the loop itself; every other message
    (changelogs, standby replicas) still goes through the conductor. `handle` must never
    await and acknowledges each message when it is done with it (`finisher`); until then
    the message holds up Faust's offset commits exactly as an unacknowledged stream event.
    A message fetched before a rebalance (flow stopped, or another generation) is neither
    handled nor counted as read: the recovery that follows seeks back to the commit.
    """
    consumer = app.consumer
    flow_control = app.flow_control
    track = consumer.track_message
    # What Faust's stream sensor records per event, and its livelock check reads: without it,
    # a partition behind by more than `stream_processing_timeout` logs "not processing".
    inbound_time = app.monitor.stream_inbound_time
    producer_buffer = app.producer.buffer

    async def _drain_messages(fetcher: Any) -> None:  # pragma: no cover (the fault tests run it)
        callback = consumer.callback
        getmany = consumer.getmany
        consumer_should_stop = consumer._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = consumer._read_offset.__getitem__
        set_read_offset = consumer._read_offset.__setitem__
        set_flag = consumer.diag.set_flag
        unset_flag = consumer.diag.unset_flag
        commit_every = consumer._commit_every
        acks_enabled_for = app.topics.acks_enabled_for
        sleep = asyncio.sleep
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await consumer.sleep(0)
                if not consumer.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > YIELD_EVERY:
                            await sleep(0)
                            num_since_yield = 0
                            # The conductor waits for this before each message: records sent
                            # while handling (outputs) must not pile up without bound.
                            if producer_buffer.size > producer_buffer.max_messages:
                                await producer_buffer.wait_until_ebb()
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            # Faust's stream drops these too (fetched before a rebalance). Not
                            # counted as read: the recovery's seek fetches them again.
                            if message.topic in topics and not (
                                    flow_control.is_active()
                                    and message.generation_id == app.consumer_generation_id):
                                continue
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await consumer._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and consumer._n_acked >= commit_every:
                                consumer._n_acked = 0
                                await consumer.commit()
                            if message.topic in topics:
                                track(message)
                                inbound_time[tp] = monotonic()
                                handle(message)
                            else:
                                await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                consumer.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if consumer.transport.app.should_stop:
                consumer.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            consumer.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    consumer._drain_messages = _drain_messages


def finisher(app: Any) -> Callable[[Any], None]:
    """`finish(message)`: acknowledge a message `handle` is done with, as Faust's stream does."""
    consumer = app.consumer
    on_message_out = app.sensors.on_message_out

    def finish(message: Any) -> None:
        if message.ack(consumer):
            on_message_out(message.tp, message.offset, message)

    return finish


# -- around rebalances and commits ----------------------------------------------------------------
def process_held_before_wait_empty(consumer: Any, process_held: Callable[[], None]) -> None:
    """Process the messages held for the event-time merge before Faust waits for acknowledgements.

    Faust waits for every message handed on to be acknowledged before it revokes partitions
    or stops; messages held by the merge (streams/live/merge.py) would make it wait forever.
    """
    wait_empty = consumer.wait_empty

    async def _wait_empty() -> None:
        try:
            process_held()
        except Exception:  # never stop a rebalance: unacknowledged messages are redelivered
            log.exception("could not process the messages held for the event-time merge")
        await wait_empty()

    consumer.wait_empty = _wait_empty


def flush_before_commit(producer: Any, flush: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """Make the flush Faust's commit runs before committing offsets ours (the Checkpoint's).

    Faust's own flush returns once its buffer's queue is empty, not once the records are
    acknowledged, and gives up after 0.1 s: the outage fault test lost orders whose offsets
    were committed while their changelog records were still on their way. Returns Faust's
    flush, for the Checkpoint to drain Faust's buffer with.
    """
    original: Callable[[], Awaitable[None]] = producer.flush
    producer.flush = flush
    return original


def count_offset_gaps(consumer: Any, metrics: Any, inputs: set[str]) -> None:
    """Count and log the offset jumps Faust's consumer records as committable gaps (metric offset_gaps)."""
    add_gap = consumer._add_gap

    async def counted(tp: Any, offset_from: int, offset_to: int) -> None:
        if tp.topic in inputs:
            log.warning("consumer skipped offsets %d..%d of %s[%d]; they count as processed",
                        offset_from, offset_to - 1, tp.topic, tp.partition)
            metrics.offset_gaps.labels(tp.topic).inc()
        await add_gap(tp, offset_from, offset_to)

    consumer._add_gap = counted


def use_table_codecs(table: Any, key_serializer: str, value_serializer: str) -> None:
    """Give a table and its changelog topic our codecs by name.

    Faust derives table serializers from key/value model types; our states are plain
    records with their own codec. The changelog topic is made (at registration) with the
    json default, and recovery decodes with it: every record failed ("Error in recovery")
    and a restarted worker never recovered its state.
    """
    import faust

    table.key_serializer, table.value_serializer = key_serializer, value_serializer
    changelog = table.changelog_topic
    changelog.schema = faust.Schema(key_serializer=key_serializer, value_serializer=value_serializer)
    changelog.key_serializer, changelog.value_serializer = key_serializer, value_serializer

