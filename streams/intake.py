"""The worker's input messages, straight from Faust's fetch loop to a synchronous handler.

Faust hands each fetched message to an agent through four steps, per message:
the fetch loop races the delivery against a flow stop in `Service.wait_first`
(four tasks and an `asyncio.wait`), the conductor decodes it into an `Event`
and queues it on the agent's channel, the stream takes it off the queue, runs
the stream sensors and sets the current event, and acknowledges it after the
agent's body. That is ~70 µs per message on the bench machine: the cost of the
count-only Faust agent the live bench compares with (docs/performance.md). The
worker's handling of a message is synchronous (decode, merge, core, outputs
handed to the producer) and needs none of it.

`drain_messages` is Faust's `Consumer._drain_messages` (faust-streaming
0.15.x) with one change: a message of one of `topics` is tracked as Faust's
stream would track it (pending until acknowledged, message sensors) and passed
to `handle` in the loop itself; every other message (changelogs, standby
replicas) still goes through the conductor as before. The handler acknowledges
each message when it is done with it (`finish`); until then it holds up
Faust's offset commits exactly as an unacknowledged stream event does.

Must never: await inside `handle` (a message is done or held when it returns),
deliver a message fetched before a rebalance (it is neither tracked nor
acknowledged: Faust seeks back to the committed offset before it resumes), or
acknowledge a message the handler has not finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from time import monotonic
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING

#: Messages handled between two returns to the event loop (Faust's own loop: 100), so the
#: producer, the commit, the timers and the web server run while a large poll is handled.
YIELD_EVERY = 100


def drain_messages(
    app: Any, topics: set[str], handle: Callable[[Any], None],
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A replacement for `app.consumer._drain_messages` passing `topics`' messages to `handle`."""
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
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await consumer._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and consumer._n_acked >= commit_every:
                                consumer._n_acked = 0
                                await consumer.commit()
                            if message.topic in topics:
                                # Faust's stream drops these too (fetched before a rebalance).
                                if flow_control.is_active() and message.generation_id == app.consumer_generation_id:
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

    return _drain_messages


def finisher(app: Any) -> Callable[[Any], None]:
    """`finish(message)`: acknowledge a message `handle` is done with, as Faust's stream does."""
    consumer = app.consumer
    on_message_out = app.sensors.on_message_out

    def finish(message: Any) -> None:
        if message.ack(consumer):
            on_message_out(message.tp, message.offset, message)

    return finish
