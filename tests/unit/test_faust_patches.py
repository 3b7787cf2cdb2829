"""The Faust patches (streams/faust_patches.py): pinned to the Faust they were written for.

Every function a patch replaces or relies on is pinned by the hash of its source:
an upgrade of faust-streaming or aiokafka that changes one fails here, naming it,
before it can change the worker's behaviour silently.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest

from schemas.errors import CommandError
from streams import faust_patches
from streams.faust_patches import PINNED, check_faust_version, fetch_from_snapshot, source_digest


@pytest.mark.parametrize("qualified", sorted(PINNED))
def test_each_patched_faust_function_is_the_one_the_patch_was_written_for(qualified: str) -> None:
    assert source_digest(qualified) == PINNED[qualified], (
        f"{qualified} changed in the installed release: re-read the patch in streams/faust_patches.py "
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


class Consumer:
    """What fetch_from_snapshot touches of Faust's consumer; `_getmany` stands for the thread call."""

    def __init__(self) -> None:
        self.flow_active = True
        self.active = {CHANGELOG}
        self.not_waiting_next_records = asyncio.Event()
        self.asked: list[Any] = []
        self.app = type("App", (), {"client_only": False})()

    def _get_active_partitions(self) -> set[TP]:
        return self.active

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[TP, list[int]]:
        self.asked.append(active_partitions)
        # while the fetch waits in the consumer thread, the recovery pauses the changelog
        self.active.discard(CHANGELOG)
        await asyncio.sleep(0)
        # aiokafka's fetched_records reads an empty set as "every assigned partition"
        return {tp: [1, 2] for tp in (ORDERS, CHANGELOG) if not active_partitions or tp in active_partitions}

    async def sleep(self, seconds: float) -> None:
        self.asked.append(("slept", seconds))


def test_aiokafka_is_asked_for_a_copy_of_the_active_partitions_that_later_pauses_do_not_empty() -> None:
    c = Consumer()
    fetch_from_snapshot(c)
    records, active = asyncio.run(c._wait_next_records(1.0))  # type: ignore[attr-defined]
    assert c.asked == [frozenset({CHANGELOG})]
    assert ORDERS not in records, "records of a partition that was not active when asked were consumed"
    assert active is c.active, "records are filtered against the live set, as Faust does"


def test_with_no_active_partition_aiokafka_is_not_asked_at_all() -> None:
    c = Consumer()
    c.active.clear()
    fetch_from_snapshot(c)
    records, _ = asyncio.run(c._wait_next_records(1.0))  # type: ignore[attr-defined]
    assert records == {}
    assert c.asked == [("slept", 1)]
