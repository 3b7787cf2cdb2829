"""The checkpoint before each commit (streams/live/checkpoint.py): outputs acknowledged, then states, then offsets.

No Faust and no broker: a `Worker` holds one worker process's fakes (a producer
whose delivery futures are resolved by hand or by its flush, a write-back store,
a table recovered from the changelog), and a `Broker` what survives a crash
(acknowledged records per topic, the committed input offset). A commit is the
caller's code after `flush()` returns, as in Faust.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.live.checkpoint import Checkpoint, CheckpointError
from streams.live.runtime import Outgoing

END = "\x00end-of-flush"  # the end mark's key (app.py's END_MARK)
PARTITION = {"a": 0, "b": 2, "c": 0}  # changelog partition of each customer (1 is never written)
Future = asyncio.Future[Any]


class Crash(Exception):
    """The worker process died at this call."""


@dataclass
class Broker:
    """What survives a crash: the acknowledged records per topic and the committed input offset."""

    records: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: {"out": [], "changelog": []})
    committed: int = 0

    def values(self, topic: str) -> list[Any]:
        return [value for _, value in self.records[topic]]


class Worker:
    """One worker process: its producer, its write-back store and its table, all lost in a crash.

    The producer acknowledges what it holds when flushed (`auto_ack`, except records `held`
    back), or when the test calls `ack`/`fail`. With `crash_at`, that call and every later
    one raise `Crash`: the process is gone, and what its producer held with it.
    """

    def __init__(self, broker: Broker | None = None, *, auto_ack: bool = True, crash_at: int | None = None) -> None:
        self.broker = broker or Broker()
        self.auto_ack, self.crash_at = auto_ack, crash_at
        self.held: Callable[[str, Any], bool] = lambda topic, key: False
        self.refuse: set[bytes] = set()  # output values whose next send raises
        self.stall: set[bytes] = set()  # output values whose send waits for `go`
        self.go = asyncio.Event()
        self.steps: list[str] = []  # every call the checkpoint made, in order
        self.events: list[tuple[str, str, Any]] = []  # ("send" | "ack", topic, key), in order
        self.in_flight: list[tuple[str, Any, Any, Future]] = []
        self.staged: dict[str, tuple[int, ...]] = {}  # the current message's states
        self.finished: dict[str, tuple[int, ...]] = {}  # the write-back cache
        self.table = {k: v for k, (_, v) in self.broker.records["changelog"] if k != END}  # recovered

    def checkpoint(self, **kwargs: Any) -> Checkpoint:
        return Checkpoint(send_output=self.send_output, send_changelog=self.send_changelog,
                          send_end_mark=self.send_end_mark, producer_flush=self.producer_flush,
                          seal=self.seal, write_state=self.write_state, **kwargs)

    def step(self, name: str) -> None:
        if self.crash_at is not None and len(self.steps) >= self.crash_at:
            raise Crash(name)
        self.steps.append(name)

    # -- the producer ----------------------------------------------------------
    async def _send(self, topic: str, key: Any, value: Any) -> Future:
        fut = asyncio.get_running_loop().create_future()
        self.events.append(("send", topic, key))
        self.in_flight.append((topic, key, value, fut))
        return fut

    async def send_output(self, topic: str, key: bytes | None, value: bytes | None, headers: Any,
                          timestamp: float | None) -> Future:
        self.step("send_output")
        if value in self.refuse:
            self.refuse.discard(value)
            raise OSError("producer refused the record")
        if value in self.stall:
            await self.go.wait()
        return await self._send(topic, key, value)

    async def send_changelog(self, partition: int, key: str, stored: Any) -> Future:
        self.step("send_changelog")
        # Outputs before state: every output of the messages in this state is acknowledged.
        delivered = set(self.broker.values("out"))
        assert all(set(_outputs(o)) <= delivered for o in stored), f"state {key}={stored} logged before its outputs"
        return await self._send("changelog", key, (partition, stored))

    async def send_end_mark(self, partition: int) -> Future:
        self.step("send_end_mark")
        return await self._send("changelog", END, (partition, None))

    async def producer_flush(self) -> None:
        self.step("producer_flush")
        if self.auto_ack:
            self.ack(lambda topic, key: not self.held(topic, key))

    def ack(self, which: Callable[[str, Any], bool] = lambda topic, key: True) -> None:
        for record in [r for r in self.in_flight if which(r[0], r[1])]:
            self.in_flight.remove(record)
            topic, key, value, fut = record
            self.broker.records[topic].append((key, value))
            self.events.append(("ack", topic, key))
            fut.set_result(None)

    def fail(self, exc: BaseException) -> None:
        for _, _, _, fut in self.in_flight:
            fut.set_exception(exc)
        self.in_flight.clear()

    # -- the store -------------------------------------------------------------
    def write_state(self) -> None:
        self.step("write_state")
        self.finished.update(self.staged)
        self.staged.clear()

    def seal(self) -> list[tuple[int, str, Any]]:
        self.step("seal")
        sealed = [(PARTITION[k], k, v) for k, v in self.finished.items()]
        self.table.update(self.finished)
        self.finished = {}
        return sealed

    def sent(self, topic: str) -> list[Any]:
        return [key for kind, t, key in self.events if kind == "send" and t == topic]


def out(value: str) -> Outgoing:
    return Outgoing("out", value[:1].encode(), value.encode())


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def turns(n: int = 10) -> None:
    """Let the event loop run the other tasks (the background sender, a waiting flush)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def flush_and_commit(cp: Checkpoint, w: Worker, offset: int) -> None:
    """What Faust's commit does: flush, and only if that returned, commit the offsets."""
    await cp.flush()
    w.broker.committed = offset


def test_an_output_that_failed_stops_the_commit_and_no_state_is_logged() -> None:
    async def scenario() -> None:
        w = Worker(auto_ack=False)
        cp = w.checkpoint()
        w.staged["a"] = (0,)
        cp.emit([out("a@0#0")])
        commit = asyncio.ensure_future(flush_and_commit(cp, w, 1))
        await turns()
        w.fail(OSError("message too large"))
        with pytest.raises(CheckpointError, match="output records failed"):
            await commit
        assert w.sent("changelog") == []
        assert w.broker.committed == 0
        assert isinstance(cp.failed[0], OSError)
        with pytest.raises(CheckpointError, match="output records failed"):  # and no later commit either
            await cp.flush()

    run(scenario)


def test_a_pending_output_holds_the_states_and_the_commit_back_until_acknowledged() -> None:
    async def scenario() -> None:
        w = Worker(auto_ack=False)
        cp = w.checkpoint()
        w.staged["a"] = (0,)
        cp.emit([out("a@0#0")])
        commit = asyncio.ensure_future(flush_and_commit(cp, w, 1))
        await turns()
        assert not commit.done()
        assert w.sent("changelog") == []
        assert cp.pending_outputs == 1
        w.ack()  # the output
        await turns()
        assert w.sent("changelog") == ["a"]
        assert not commit.done()  # the state is not acknowledged yet
        w.ack()
        await turns()
        assert w.sent("changelog") == ["a", END]
        w.ack()
        await commit
        assert w.broker.committed == 1
        assert cp.pending_outputs == 0

    run(scenario)


def test_an_output_never_acknowledged_fails_the_flush_after_the_timeout() -> None:
    async def scenario() -> None:
        w = Worker(auto_ack=False)
        cp = w.checkpoint(ack_timeout=0.01)
        w.staged["a"] = (0,)
        cp.emit([out("a@0#0")])
        with pytest.raises(CheckpointError, match="1 output records not acknowledged"):
            await flush_and_commit(cp, w, 1)
        assert w.sent("changelog") == []
        assert w.broker.committed == 0

    run(scenario)


def test_outputs_are_acknowledged_before_states_and_states_before_end_marks() -> None:
    async def scenario() -> None:
        w = Worker()
        cp = w.checkpoint()
        for i, customer in enumerate("abc"):
            w.staged[customer] = (i,)
            cp.emit([out(f"{customer}@{i}#0")] if customer != "c" else [])
        await flush_and_commit(cp, w, 3)
        e = w.events
        last_output_ack = max(i for i, (kind, topic, _) in enumerate(e) if kind == "ack" and topic == "out")
        first_state_send = e.index(("send", "changelog", "a"))
        last_state_ack = max(i for i, (kind, _, key) in enumerate(e) if kind == "ack" and key in PARTITION)
        first_mark_send = e.index(("send", "changelog", END))
        assert last_output_ack < first_state_send
        assert last_state_ack < first_mark_send
        assert sorted(w.sent("changelog")[:3]) == ["a", "b", "c"]
        marks = [value for key, value in w.broker.records["changelog"] if key == END]
        assert marks == [(0, None), (2, None)]  # one per partition written, none for partition 1
        assert w.broker.committed == 3

    run(scenario)


def test_nothing_sealed_sends_nothing_to_the_changelog() -> None:
    async def scenario() -> None:
        w = Worker()
        cp = w.checkpoint()
        cp.emit([out("x@0#0")])  # a dead letter: no state changed
        await flush_and_commit(cp, w, 1)
        assert w.broker.values("out") == [b"x@0#0"]
        assert w.sent("changelog") == []
        assert w.broker.committed == 1

    run(scenario)


def test_outputs_emitted_while_a_flush_waits_go_with_the_next_flush() -> None:
    async def scenario() -> None:
        w = Worker()
        w.held = lambda topic, key: topic == "out"
        cp = w.checkpoint()
        w.staged["a"] = (0,)
        cp.emit([out("a@0#0")])
        commit = asyncio.ensure_future(flush_and_commit(cp, w, 1))
        await turns()  # the flush sealed a's state and waits for a's output
        assert not commit.done()
        w.staged["b"] = (1,)
        cp.emit([out("b@1#0")])
        await turns()  # b's output is handed to the producer too
        assert w.sent("out") == [b"a", b"b"]
        w.held = lambda topic, key: key == b"b"  # b's output stays unacknowledged for now
        w.ack(lambda topic, key: key == b"a")
        await commit  # did not wait for b's output: its message is not covered by this commit
        assert [key for key, _ in w.broker.records["changelog"]] == ["a", END]
        assert w.finished == {"b": (1,)}
        assert cp.pending_outputs == 1
        w.held = lambda topic, key: False
        await flush_and_commit(cp, w, 2)
        assert [key for key, _ in w.broker.records["changelog"]] == ["a", END, "b", END]
        assert w.events.index(("ack", "out", b"b")) < w.events.index(("send", "changelog", "b"))

    run(scenario)


def test_a_send_that_raises_puts_the_unsent_records_back_in_order(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        w = Worker()
        w.refuse = {b"a@1#0"}
        cp = w.checkpoint(log=logging.getLogger("tests.checkpoint"))
        cp.emit([out("a@0#0"), out("a@1#0"), out("a@2#0")])
        await turns()  # the background sender hands a@0, then the producer refuses a@1
        cp.emit([out("a@3#0")])
        assert [r.value for r in cp.queued] == [b"a@1#0", b"a@2#0", b"a@3#0"]
        assert isinstance(cp.failed[0], OSError)
        with pytest.raises(CheckpointError, match="output records failed"):
            await flush_and_commit(cp, w, 4)
        assert [v for _, _, v, _ in w.in_flight] == [b"a@0#0", b"a@1#0", b"a@2#0", b"a@3#0"]  # retried, in order
        assert w.broker.committed == 0

    run(scenario)
    assert "sending outputs failed" in caplog.text


def test_a_cancelled_send_keeps_its_records_queued_and_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        w = Worker()
        w.stall = {b"a@1#0"}
        cp = w.checkpoint()
        cp.emit([out("a@0#0"), out("a@1#0"), out("a@2#0")])
        await turns()  # the background sender waits on a@1
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()  # the worker stops
        await turns()
        assert [r.value for r in cp.queued] == [b"a@1#0", b"a@2#0"]
        assert cp.failed == ()
        w.go.set()
        await flush_and_commit(cp, w, 3)
        assert w.broker.values("out") == [b"a@0#0", b"a@1#0", b"a@2#0"]
        assert w.broker.committed == 3

    run(scenario)
    assert "sending outputs failed" not in caplog.text


# -- crashes -------------------------------------------------------------------
#: The customer of each input message (its offset is its index); a commit every BATCH messages.
MESSAGES = ["a", "b", "c", "a", "b", "a"]
BATCH = 3


def _outputs(offset: int) -> list[bytes]:
    """Offset 2 changes state only, offset 3 fires twice, the others once."""
    n = {2: 0, 3: 2}.get(offset, 1)
    return [f"{MESSAGES[offset]}@{offset}#{i}".encode() for i in range(n)]


def _process(w: Worker, cp: Checkpoint, offset: int) -> None:
    """The runtime's part: the state is the offsets applied, in order; an offset it holds is a duplicate."""
    customer = MESSAGES[offset]
    state = w.finished[customer] if customer in w.finished else w.table.get(customer, ())
    if state and offset <= state[-1]:
        cp.emit([])  # redelivered: already applied, and its outputs were acknowledged before that
        return
    w.staged[customer] = (*state, offset)
    cp.emit([Outgoing("out", customer.encode(), v) for v in _outputs(offset)])


def _logged(broker: Broker) -> dict[str, tuple[int, ...]]:
    """The states a restarted worker recovers from the changelog."""
    return {key: state for key, (_, state) in broker.records["changelog"] if key != END}


async def _incarnation(broker: Broker, crash_at: int | None) -> list[str]:
    """One worker process from the committed offset to the end (or to its crash); the calls it made."""
    w = Worker(broker, crash_at=crash_at)
    cp = w.checkpoint()
    try:
        for start in range(broker.committed, len(MESSAGES), BATCH):
            end = min(start + BATCH, len(MESSAGES))
            for offset in range(start, end):
                _process(w, cp, offset)
                await turns(2)  # the background sender runs between messages
            await cp.flush()
            w.step("commit")
            # Nothing committed before its outputs and its state are acknowledged.
            delivered, logged = set(broker.values("out")), _logged(broker)
            assert all(set(_outputs(o)) <= delivered and o in logged[MESSAGES[o]] for o in range(end))
            broker.committed = end
    except (Crash, CheckpointError):
        pass  # the process is gone: only the broker is left
    return w.steps


STEPS = asyncio.run(_incarnation(Broker(), None))


@pytest.mark.parametrize("crash_at", range(len(STEPS)), ids=[f"{k}-before-{s}" for k, s in enumerate(STEPS)])
def test_a_crash_between_any_two_steps_loses_nothing_and_applies_nothing_twice(crash_at: int) -> None:
    broker = Broker()
    assert len(asyncio.run(_incarnation(broker, crash_at))) == crash_at
    assert broker.committed < len(MESSAGES)
    asyncio.run(_incarnation(broker, None))  # restarted: the messages after the last commit come again
    assert broker.committed == len(MESSAGES)
    assert set(broker.values("out")) == {v for o in range(len(MESSAGES)) for v in _outputs(o)}  # none missing
    assert _logged(broker) == {c: tuple(o for o, m in enumerate(MESSAGES) if m == c) for c in set(MESSAGES)}


def test_a_clean_run_sends_each_output_once_and_covers_every_step() -> None:
    broker = Broker()
    asyncio.run(_incarnation(broker, None))
    assert sorted(broker.values("out")) == sorted(v for o in range(len(MESSAGES)) for v in _outputs(o))
    assert {"seal", "send_output", "producer_flush", "send_changelog", "send_end_mark", "write_state",
            "commit"} <= set(STEPS)
