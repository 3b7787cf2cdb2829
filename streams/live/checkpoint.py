"""The checkpoint before each offset commit: outputs acknowledged, then states logged, then offsets.

The worker is at-least-once (docs/reliability.md, "How the worker keeps it",
rules 1, 2 and 5). Each processed message's outputs (triggers, audit records,
dead letters) are queued here and handed to the producer in the background; its
states wait in the write-back cache (streams/live/state_store.py). `flush()` runs
right before every offset commit and makes the commit safe: the changelog gets
a state only once every output sent until then is acknowledged, and it returns
only once the states are acknowledged too. The model is quix-streams'
`Checkpoint.commit()`.

Faust-free: the producer, the changelog and the store come in as callables, so
the rules are tested with fakes (tests/unit/test_checkpoint.py). Must never:
commit offsets itself, send a state before the outputs of its messages are
acknowledged, or swallow a failure (an exception is what stops the commit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.live.runtime import Headers, Outgoing
    from streams.live.state_store import Stored

Future = asyncio.Future[Any]
SendOutput = Callable[[str, "bytes | None", "bytes | None", "Headers", "float | None"], Awaitable[Future]]
SendChangelog = Callable[[int, str, "Stored"], Awaitable[Future]]
SendEndMark = Callable[[int], Awaitable[Future]]


class CheckpointError(RuntimeError):
    """A flush could not make the commit safe: the offsets must not be committed."""


class Checkpoint:
    """Outputs, then states, then offsets: what one worker has sent and still owes the broker.

    `send_output(topic, key, value, headers, timestamp)`, `send_changelog(partition,
    key, stored)` and `send_end_mark(partition)` hand one record to the producer and
    return its delivery future; `producer_flush()` is the producer's own flush;
    `seal()` takes the finished states for the changelog and `write_state()` finishes
    the current message's states (streams/live/runtime.py).
    """

    def __init__(
        self, *, send_output: SendOutput, send_changelog: SendChangelog,
        send_end_mark: SendEndMark, producer_flush: Callable[[], Awaitable[None]],
        seal: Callable[[], list[tuple[int, str, Stored]]], write_state: Callable[[], None],
        ack_timeout: float = 60.0, log: logging.Logger | None = None,
    ) -> None:
        self._send_output = send_output
        self._send_changelog = send_changelog
        self._send_end_mark = send_end_mark
        self._producer_flush = producer_flush
        self._seal = seal
        self._write_state = write_state
        self.ack_timeout = ack_timeout
        self.log = log or logging.getLogger(__name__)
        # Records handed over by emit() and not sent yet, in the order they were emitted. Sent by
        # one task at a time (send_outbox), not through Faust's send buffer: that buffer sends one
        # record per turn of the event loop, and the fetch loop handles 100 messages per turn
        # (drain_messages, streams/live/faust_patches.py), so it filled past its 100 records
        # ("producer buffer full").
        self._outbox: list[Outgoing] = []
        # Outputs handed to the producer and not yet acknowledged by the broker.
        self._unsent: set[Future] = set()
        self._failed: list[BaseException] = []  # outputs the producer gave up on: no commit from here on
        self._sending = asyncio.Lock()  # one sender at a time: records of a customer keep their order
        self._flushing = asyncio.Lock()  # two flushes at once could log a customer's states out of order

    @property
    def queued(self) -> tuple[Outgoing, ...]:
        """Outputs emitted and not handed to the producer yet, in order."""
        return tuple(self._outbox)

    @property
    def pending_outputs(self) -> int:
        """Outputs emitted and not acknowledged yet (queued or in the producer)."""
        return len(self._outbox) + len(self._unsent)

    @property
    def failed(self) -> tuple[BaseException, ...]:
        """Why outputs failed; once one has, every flush raises (the worker must restart)."""
        return tuple(self._failed)

    def emit(self, records: list[Outgoing]) -> None:
        """Queue the current message's outputs, then finish its states.

        Queued for the producer, not awaited: the next event needs no round trip to the
        broker. The message's state waits in the write-back cache, and the flush before
        the next commit sends it only after these are acknowledged.
        """
        if records:
            if not self._outbox:
                self._send_soon()
            self._outbox.extend(records)
        self._write_state()

    async def send_outbox(self) -> None:
        """Hand every queued output to the producer, in order; a record it did not take stays queued."""
        async with self._sending:
            outbox = self._outbox
            while outbox:
                batch = outbox[:]
                outbox.clear()
                for i, r in enumerate(batch):
                    try:
                        fut = await self._send_output(r.topic, r.key, r.value, r.headers, r.timestamp)
                    except BaseException as exc:
                        outbox[:0] = batch[i:]  # not handed to the producer: the next send retries them
                        if not isinstance(exc, asyncio.CancelledError):
                            self._failed.append(exc)
                        raise
                    self._unsent.add(fut)
                    fut.add_done_callback(self._sent)

    async def flush(self) -> None:
        """Make the next offset commit safe; raise (so nothing is committed) when it cannot.

        Faust calls this after it chose the offsets (it replaces the producer's flush), and
        the worker before partitions are revoked (the next owner reads the changelog).
        Every message at or below those offsets has finished: its state is in the
        write-back cache (or logged) and its outputs were emitted.

        1. Seal the states finished so far (they are now in the table). Messages finished
           while this waits are not covered by the commit; their states wait for the next flush.
        2. Hand every queued output to the producer: the outputs of every sealed message.
        3. Stop if any output failed.
        4. Wait until every output sent so far is acknowledged (none within `ack_timeout`,
           or one failed: error). Outputs before state (rule 2): a state in the changelog
           saying "fired" for a trigger the broker lacks would make the redelivered event a
           duplicate that never sends it again.
        5. Send the sealed states to the changelog and wait for their acknowledgement
           (rule 1). Faust's own flush returns once its buffer's queue is empty, not once
           the records are acknowledged, and gives up after 0.1 s: the outage fault test
           lost orders to a commit without this wait.
        6. Send one end mark per changelog partition written and wait for it (rule 5).
        7. Return: the caller (Faust) commits the offsets.

        An exception anywhere means no commit: Faust's commit fails and the messages after
        the last commit are delivered again (duplicates, never a loss).
        """
        async with self._flushing:
            sealed = self._seal()
            await self.send_outbox()
            if self._failed:
                raise CheckpointError("output records failed: not committing") from self._failed[0]
            outputs = set(self._unsent)
            await self._producer_flush()
            await self._acknowledged(outputs, "output records")
            # Straight to the producer, not through Faust's send buffer: a commit's burst of
            # records (one per customer) filled that buffer past its 100 messages, and Faust
            # stops handing events to agents until it drains.
            written = {await self._send_changelog(partition, key, stored) for partition, key, stored in sealed}
            await self._producer_flush()
            await self._acknowledged(written, "changelog records")
            if sealed:
                # The embedded broker (Tansu) lists a partition's end offset as the first offset
                # of its last batch plus one, and Faust recovers a changelog up to the listed end:
                # the rest of a flush's batch was skipped on recovery, and a restarted worker or a
                # partition's next owner resumed from older states. One tombstone per partition
                # written, sent alone once the batch is acknowledged, closes each flush: a short
                # listing now skips only that.
                marks = {await self._send_end_mark(p) for p in sorted({p for p, _, _ in sealed})}
                await self._producer_flush()
                await self._acknowledged(marks, "changelog end marks")

    async def _acknowledged(self, futures: set[Future], what: str) -> None:
        if not futures:
            return
        done, pending = await asyncio.wait(futures, timeout=self.ack_timeout)
        if pending:
            raise CheckpointError(f"{len(pending)} {what} not acknowledged: not committing")
        for fut in done:
            if not fut.cancelled() and fut.exception() is not None:
                raise CheckpointError(f"{what} failed: not committing") from fut.exception()

    def _sent(self, fut: Future) -> None:
        self._unsent.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self._failed.append(fut.exception())  # type: ignore[arg-type]  # not None: checked above

    def _send_soon(self) -> None:
        task = asyncio.ensure_future(self.send_outbox())
        task.add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Future[None]) -> None:
        # A failed send is already in `failed` (the next flush raises); a cancelled one left its
        # records queued for the next send.
        if not task.cancelled() and task.exception() is not None:
            self.log.error("sending outputs failed", exc_info=task.exception())
