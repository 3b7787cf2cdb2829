"""What the live worker reads of Faust's consumer and of the aiokafka client inside it.

Faust keeps the facts the worker's clock and watchdogs need in private
attributes (`_committed_offset`, `_read_offset`, the client's per-partition
fetch state). They are read here and nowhere else, and never written (the
patches that change behaviour are in streams/live/faust_patches.py). Every reader
answers None for "unknown", which the callers treat as "behind".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

log = logging.getLogger("churn_signals")


class ConsumerView:
    """Read-only views of one Faust app's consumer: end offsets, fetch times, commits, ownership."""

    def __init__(self, app: Any, wall_ms: Callable[[], int]) -> None:
        self.app = app
        self.wall_ms = wall_ms

    # The `type: ignore[no-any-return]` below: Faust's consumer and aiokafka's client are untyped
    # where these private reads go, so what they return is Any to mypy; each is an int or None.

    def end_offset(self, tp: tuple[str, int]) -> int | None:
        """The last end offset Kafka reported for `tp` (None: not fetched yet)."""
        try:
            return self.app.consumer.highwater(faust.types.TP(*tp))  # type: ignore[no-any-return]
        except Exception:  # not fetched yet: unknown
            return None

    def last_poll_ms(self, tp: Any) -> int | None:
        """When the client last received a fetch response for `tp` (None: never, or no client yet)."""
        try:
            return self.app.consumer._thread._ensure_consumer().last_poll_timestamp(  # type: ignore[no-any-return]
                faust.types.TP(*tp))
        except Exception:  # the client is not there yet: unknown
            return None

    def committed(self, tp: tuple[str, int]) -> int | None:
        return self.app.consumer._committed_offset.get(faust.types.TP(*tp))  # type: ignore[no-any-return]

    def fresh_end(self, tp: tuple[str, int], stale_ms: int, lag: int) -> int | None:
        """The end offset, or one that reads as behind when it was not fetched in the last `stale_ms`.

        The end offset is only as fresh as the last fetch of the partition; a paused one
        (recovery after a rebalance, flow control) keeps an old end while input piles up,
        and looked caught up: the wall clock then fired silence for orders not read yet.
        Unknown freshness counts as behind: the clock follows event time.
        """
        end = self.end_offset(tp)
        polled = self.last_poll_ms(tp)
        if end is not None and (polled is None or self.wall_ms() - polled > stale_ms):
            return end + lag + 1
        return end

    def unread(self, tp: tuple[str, int], position: int | None) -> bool:
        """Whether the broker holds messages of `tp` this worker has not received (unknown: yes)."""
        end = self.end_offset(tp)
        if end is None:
            return True
        if position is None:  # nothing received since assignment: consumption resumes at the commit
            position = self.committed(tp) or 0
        return position < end

    def owned(self, topic: str) -> list[int]:
        """The partitions of `topic` this worker actively owns (standby replicas excluded)."""
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic)

    def settled(self) -> bool:
        """No rebalance under way, not stopping, the tables recovered."""
        app = self.app
        return bool(not app.rebalancing and not app.should_stop and app.tables.recovery.completed.is_set())


#: An assigned input partition not fetched for this long, with no rebalance under way, is stalled.
STALL_S = 30.0


def client_view(consumer: Any, tp: Any) -> str:
    """One partition as Faust's consumer and the aiokafka client inside it see it, for a log line."""
    try:
        client = consumer._thread._ensure_consumer()
        fetcher = client._fetcher
        state = client._subscription.subscription.assignment.state_value(tp)
        held = fetcher._records.get(tp)
        return (f"client position {state._position}, client paused {state.paused}, "
                f"buffered {held!r}, in flight {sorted(fetcher._in_flight)}, "
                f"faust active {tp in consumer._get_active_partitions()}, "
                f"faust paused {tp in consumer._paused_partitions}, read offset {consumer._read_offset.get(tp)}, "
                f"committed {consumer._committed_offset.get(tp)}")
    except Exception as exc:
        return f"client state unknown: {exc!r}"


def watch_recovery(app: Any, monotonic: Callable[[], float]) -> Callable[[], Awaitable[list[Any]]]:
    """Returns `check()`, for a periodic timer: re-seeks a changelog partition its recovery never reads.

    After the second worker of the rebalance test left, the remaining one recovered a
    changelog partition it had replicated as a standby, from offset 0 to 91, and received
    none of its records: the worker never became ready (twice in about 15 runs on Apache
    Kafka). This watchdog's log showed the client's position at the end (92) with nothing
    read: a fetch waiting from before the rebalance had returned the records fetched from
    the recovery's seek while the partition was paused, and Faust dropped them. Fixed in
    `fetch_from_snapshot` (docs/reliability.md, rule 11). The watchdog stays for a cause
    not known yet: an active changelog partition with records to read and nothing
    received for STALL_S since the recovery started is logged with the client's view of
    it and seeked again to where the recovery reads from, its read offset cleared and its
    fetching resumed: the recovery then completes.
    """
    recovery = app.tables.recovery
    consumer = app.consumer

    async def check() -> list[Any]:
        started = recovery._recovery_started_at
        if not recovery.in_recovery or started is None or monotonic() - started < STALL_S:
            return []
        received = recovery._active_events_received_at
        stalled = []
        for tp in sorted(recovery.active_tps):
            offset = recovery.active_offsets.get(tp)
            highwater = recovery.active_highwaters.get(tp)
            if tp in received or offset is None or highwater is None or highwater - 1 <= offset:
                continue
            stalled.append((tp, max(offset, 0)))
        if stalled:
            log.warning("changelog partitions with records to recover and none received for %.0f s since the "
                        "recovery started; seeked again: %s", STALL_S,
                        ", ".join(f"{tp.topic}[{tp.partition}] (recovering from {at}, highwater "
                                  f"{recovery.active_highwaters.get(tp)}, {client_view(consumer, tp)})"
                                  for tp, at in stalled))
            for tp, _ in stalled:
                consumer._read_offset.pop(tp, None)
            await consumer.seek_wait(dict(stalled))
            consumer.resume_partitions({tp for tp, _ in stalled})
        return [tp for tp, _ in stalled]

    return check


def watch_input(consumer: Any, inputs: set[str], last_poll_ms: Callable[[Any], int | None],
                wall_ms: Callable[[], int], highwater: Callable[[Any], int | None]) -> Callable[[bool], list[Any]]:
    """Returns `check(settled)`: the assigned input partitions the fetcher has stopped polling.

    A worker has been seen to finish a restart and then read nothing for minutes, with no
    error (docs/reliability.md, "Open issues"). Two signs are logged, with the consumer's
    view of the partition (the evidence the open issue lacks):

    - not polled for STALL_S once nothing has been rebalanced for STALL_S (every partition
      Faust counts as active is polled at least once a second): made active again and
      returned; a paused one is left to `resume_inputs_after_seek`'s unstick;
    - polled, with records past its read offset, and the read offset still for STALL_S:
      logged once per stall, nothing changed (the cause is unknown).
    """
    limit = STALL_S * 1000

    def fetch_state(tp: Any) -> str:
        return client_view(consumer, tp)
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
        since = settled_since[0]
        if since is None:
            since = settled_since[0] = now
        look_for_stalls = now - since >= limit
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
            buffered: set[Any] = getattr(consumer, "_buffered_partitions", set())

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


