"""The silence knows why: service failures are remembered, bounded, and name the cause of a silence."""

from __future__ import annotations

import pytest

from detectors import CustomerState, DetectorConfig, PartitionCore
from detectors.cause import MAX_FAILURES
from detectors.config import DAY_MS, HOUR_MS
from detectors.engine import Engine
from detectors.envelope import iso_ms
from tests.unit.test_core import DEC, T0, ev


def _core(cfg: DetectorConfig | None = None) -> PartitionCore:
    return PartitionCore(Engine(cfg or DetectorConfig()), {})


def _apply(core: PartitionCore, *events: dict) -> list:
    out = []
    for e in events:
        out += core.apply(DEC.validate(e))[0]
        out += core.advance(core.max_event)
    return out


def failed(cid: str, at: int, order_id: str = "o1", status: str = "failed") -> dict:
    return ev("delivery", cid, at, order_id=order_id, status=status)


def late(cid: str, at: int, order_id: str = "o1", minutes: int = 45) -> dict:
    return ev("delivery", cid, at, order_id=order_id, status="delivered", promised_at=iso_ms(at - minutes * 60_000),
              delivered_at=iso_ms(at))


def rated(cid: str, at: int, rating: int, order_id: str = "o1") -> dict:
    return ev("courier_rating", cid, at, order_id=order_id, rating=rating)


# -- what the state keeps ----------------------------------------------------------


@pytest.mark.parametrize(("event", "kept"), [
    (failed("c", T0 + HOUR_MS, "o1"), [[T0 + HOUR_MS, 1, "o1"]]),
    (failed("c", T0 + HOUR_MS, "o1", status="returned"), [[T0 + HOUR_MS, 2, "o1"]]),
    (late("c", T0 + HOUR_MS, "o1"), [[T0 + HOUR_MS, 3, "o1"]]),
    (rated("c", T0 + HOUR_MS, 1), [[T0 + HOUR_MS, 11, "o1"]]),
    (rated("c", T0 + HOUR_MS, 2), [[T0 + HOUR_MS, 12, "o1"]]),
    (rated("c", T0 + HOUR_MS, 3), []),                                    # not negative
    (rated("c", T0 + HOUR_MS, 5), []),
    (late("c", T0 + HOUR_MS, "o1", minutes=20), []),                      # within the 30-minute grace
    (ev("delivery", "c", T0 + HOUR_MS, order_id="o1", status="cancelled"), []),
    (ev("delivery", "c", T0 + HOUR_MS, order_id="o1", status="delivered"), []),
])
def test_the_service_failures_are_those_the_service_detectors_fire_on(event, kept):
    core = _core()
    _apply(core, ev("order", "c", T0), event)
    assert core.store["c"].failures == kept


def test_at_most_a_handful_of_failures_are_kept_the_earliest():
    core = _core()
    _apply(core, ev("order", "c", T0), *[failed("c", T0 + (10 - i) * HOUR_MS, f"o{i}") for i in range(6)])
    st = core.store["c"]
    assert len(st.failures) == MAX_FAILURES == 4
    assert [f[0] for f in st.failures] == [T0 + h * HOUR_MS for h in (5, 6, 7, 8)]


def test_a_failure_told_twice_is_kept_once():
    core = _core()
    _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS, "o1"), failed("c", T0 + HOUR_MS, "o1"))
    assert len(core.store["c"].failures) == 1


def test_failures_older_than_the_lookback_before_the_last_order_are_forgotten():
    core = _core()
    _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS, "o1"), failed("c", T0 + 20 * DAY_MS, "o2"),
           ev("order", "c", T0 + 40 * DAY_MS))
    assert [f[2] for f in core.store["c"].failures] == ["o2"]
    _apply(core, failed("c", T0 + 5 * DAY_MS, "o3"))  # read late, and too old to ever count: not kept
    assert [f[2] for f in core.store["c"].failures] == ["o2"]


def test_failures_round_trip_through_the_state_encoding():
    core = _core()
    _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS, "order-0001"), rated("c", T0 + 2 * HOUR_MS, 1))
    st = core.store["c"]
    raw = st.encode()
    assert CustomerState.decode(raw) == st
    assert CustomerState.decode(raw).failures == [[T0 + HOUR_MS, 1, "order-0001"], [T0 + 2 * HOUR_MS, 11, "o1"]]
    assert st.copy().failures == st.failures


def test_a_version_4_state_reads_with_no_failures_and_is_written_as_version_5():
    core = _core()
    _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS))
    v4 = core.store["c"].to_list()[:24]  # version 4: the same values, without the failures
    v4[0] = 4
    old = CustomerState.from_list(v4)
    assert old.failures == []
    assert old.to_list()[:24] == [5, *v4[1:]]
    assert CustomerState.decode(old.encode()).to_list()[0] == 5
    with pytest.raises(ValueError, match="values"):
        CustomerState.from_list([*v4, []])  # a version-4 list one value too long
