"""The Faust patches (streams/live/faust_patches.py): pinned to the Faust they were written for.

Every function a patch replaces or relies on is pinned by the hash of its source:
an upgrade of faust-streaming or aiokafka that changes one fails here, naming it,
before it can change the worker's behaviour silently.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest

from schemas.errors import CommandError
from streams.live import faust_patches
from streams.live.faust_patches import PINNED, check_faust_version, fetch_from_snapshot, source_digest


@pytest.mark.parametrize("qualified", sorted(PINNED))
def test_each_patched_faust_function_is_the_one_the_patch_was_written_for(qualified: str) -> None:
    assert source_digest(qualified) == PINNED[qualified], (
        f"{qualified} changed in the installed release: re-read the patch in streams/live/faust_patches.py "
        f"that names it, adapt it, then update its digest in PINNED")


def test_the_installed_faust_is_in_the_supported_range() -> None:
    check_faust_version()


def test_a_faust_outside_the_range_stops_the_worker_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "version", lambda name: "0.16.1")
    with pytest.raises(CommandError) as err:
        check_faust_version()
    assert "faust-streaming 0.16.1 is installed" in str(err.value)
    assert "\n" not in str(err.value)


class TP(NamedTuple):
    topic: str
    partition: int


ORDERS, CHANGELOG = TP("orders", 0), TP("app-customers-changelog", 0)


class Record(NamedTuple):
    offset: int


class Client:
    """The aiokafka client in the consumer thread: positions, and the seeks made."""

    def __init__(self, positions: dict[TP, int]) -> None:
        self.states = {tp: SimpleNamespace(_position=p, paused=False) for tp, p in positions.items()}
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(
            assignment=SimpleNamespace(state_value=self.states.__getitem__)))
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.states[tp]._position = offset


class Thread:
    def __init__(self, client: Client) -> None:
        self.client = client

    def _ensure_consumer(self) -> Client:
        return self.client

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        return await fun(*args)


class Consumer:
    """What fetch_from_snapshot touches of Faust's consumer; `_getmany` stands for the thread call."""

    def __init__(self, positions: dict[TP, int] | None = None) -> None:
        self.flow_active = True
        self.active = {CHANGELOG}
        self.not_waiting_next_records = asyncio.Event()
        self.asked: list[Any] = []
        self.app = type("App", (), {"client_only": False})()
        self._buffered_partitions: set[TP] = set()
        self._read_offset: dict[TP, int | None] = {}
        self._thread = Thread(Client(positions or {CHANGELOG: 3, ORDERS: 3}))

    def _get_active_partitions(self) -> set[TP]:
        return self.active

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[TP, list[Record]]:
        self.asked.append(active_partitions)
        # while the fetch waits in the consumer thread, the recovery pauses the changelog
        self.active.discard(CHANGELOG)
        await asyncio.sleep(0)
        # aiokafka's fetched_records reads an empty set as "every assigned partition"
        return {tp: [Record(1), Record(2)] for tp in (ORDERS, CHANGELOG)
                if not active_partitions or tp in active_partitions}

    async def sleep(self, seconds: float) -> None:
        self.asked.append(("slept", seconds))


def test_aiokafka_is_asked_for_a_copy_of_the_active_partitions_that_later_pauses_do_not_empty() -> None:
    c = Consumer()
    fetch_from_snapshot(c)
    records, active = asyncio.run(c._wait_next_records(1.0))  # type: ignore[attr-defined]
    assert c.asked == [frozenset({CHANGELOG})]
    assert ORDERS not in records, "records of a partition that was not active when asked were consumed"
    assert active is c.active, "records are filtered against the live set, as Faust does"


def test_records_of_a_partition_paused_during_the_fetch_are_given_back_to_the_client() -> None:
    # The recovery seeked the changelog to 1 and paused it; a fetch asked before returned 1..2.
    c = Consumer()
    fetch_from_snapshot(c)
    records, _ = asyncio.run(c._wait_next_records(1.0))  # type: ignore[attr-defined]
    assert CHANGELOG not in records, "Faust would drop them: they must not reach it as consumed"
    assert c._thread.client.seeks == [(CHANGELOG, 1)], "the client reads them again once resumed"
    assert c._read_offset[CHANGELOG] == 1


def test_a_seek_made_while_the_records_came_back_wins_over_the_rewind() -> None:
    c = Consumer(positions={CHANGELOG: 40, ORDERS: 3})  # seeked elsewhere after the records were taken
    fetch_from_snapshot(c)
    records, _ = asyncio.run(c._wait_next_records(1.0))  # type: ignore[attr-defined]
    assert CHANGELOG not in records
    assert c._thread.client.seeks == []
    assert CHANGELOG not in c._read_offset


def test_with_no_active_partition_aiokafka_is_not_asked_at_all() -> None:
    c = Consumer()
    c.active.clear()
    fetch_from_snapshot(c)
    records, _ = asyncio.run(c._wait_next_records(1.0))  # type: ignore[attr-defined]
    assert records == {}
    assert c.asked == [("slept", 1)]
