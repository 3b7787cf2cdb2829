"""One incident, one contact; the contact cap; value-aware severity (detectors/suppression.py, engine.py).

The scenarios (one_incident_one_contact, contact_cap, value_aware_severity) show each rule on a
story; these pin the edges: what the cap counts whenever the clock ticks, the switches, the
bounds of the state and the encoding of before.
"""

from __future__ import annotations

from typing import Any

import pytest

from detectors import CustomerState, DetectorConfig, Engine, PartitionCore
from detectors.config import DAY_MS, HOUR_MS
from detectors.decision import Decision
from detectors.state import ENCODING_VERSION
from detectors.suppression import MAX_CONTACTS, MAX_INCIDENTS
from tests.unit.test_core import DEC, T0, ev

#: In the treatment group (the holdout gets nothing actionable).
CID = "taras"
GRANT = ev("consent", CID, T0 - DAY_MS, channel="all", granted=True)


def run(cfg: DetectorConfig, events: list[dict[str, Any]], ticks: tuple[int, ...] = (),
        until: int = T0 + 30 * DAY_MS) -> list[Decision]:
    """Replay's loop (sweep to the highest event time after each event), with extra clock ticks as live."""
    core = PartitionCore(Engine(cfg), {})
    pending = sorted(ticks)
    out: list[Decision] = []
    for e in [GRANT, *events]:
        parsed = DEC.validate(e)
        while pending and pending[0] <= parsed.ts:
            out += core.advance(pending.pop(0))
        out += core.apply(parsed)[0]
        out += core.advance(core.max_event)
    return out + core.advance(until)


def rows(decisions: list[Decision]) -> list[tuple[int, str, str, str | None]]:
    return sorted((d.time_ms, d.kind, d.stage, d.suppressed) for d in decisions)


# -- the cap counts the same whenever the clock ticks ---------------------------------


def test_a_silence_counts_no_contact_later_than_its_deadline_whatever_the_clock_did():
    """The at-risk deadline is day 7; a failed delivery an hour later is read before the sweep that
    fires the silence in replay, after it live. The silence must not count it either way."""
    cfg = DetectorConfig(contact_cap=1)
    events = [ev("order", CID, T0, category="grocery"),
              ev("delivery", CID, T0 + 7 * DAY_MS + HOUR_MS, order_id="o9", status="failed")]
    replayed = run(cfg, events)
    live = run(cfg, events, ticks=(T0 + 7 * DAY_MS,))
    assert rows(replayed) == rows(live)
    assert (T0 + 7 * DAY_MS, "silence", "at_risk", None) in rows(replayed)


def test_a_silence_counts_the_contacts_before_its_deadline():
    cfg = DetectorConfig(contact_cap=1)
    events = [ev("order", CID, T0, category="grocery"),
              ev("delivery", CID, T0 + 6 * DAY_MS, order_id="o9", status="failed")]
    assert (T0 + 7 * DAY_MS, "silence", "at_risk", "contact_cap") in rows(run(cfg, events))


def test_an_order_caused_trigger_counts_the_silence_fired_before_the_order():
    """A favourite-category abandonment on an order after the at-risk deadline: the order fires the
    customer's due deadlines first, so the silence is counted, ticks or not."""
    cfg = DetectorConfig(contact_cap=1)
    events = [ev("order", CID, T0 + i * DAY_MS, category="grocery") for i in range(3)]
    events.append(ev("order", CID, T0 + 12 * DAY_MS, category="home"))
    for ticks in ((), (T0 + 9 * DAY_MS,)):
        got = rows(run(cfg, events, ticks=ticks, until=T0 + 13 * DAY_MS))
        assert (T0 + 9 * DAY_MS, "silence", "at_risk", None) in got
        assert (T0 + 12 * DAY_MS, "favourite_category_abandoned", "now", "contact_cap") in got


def test_service_recovery_goes_out_past_the_cap_and_counts():
    cfg = DetectorConfig(contact_cap=1)
    events = [ev("delivery", CID, T0 + i * DAY_MS, order_id=f"o{i}", status="failed") for i in (1, 3)]
    got = rows(run(cfg, events, until=T0 + 4 * DAY_MS))
    assert [r[3] for r in got] == [None, None]


@pytest.mark.parametrize(("cfg", "expected"), [
    (DetectorConfig(), "same_incident"),
    (DetectorConfig(incident_window_ms=0), None),
    (DetectorConfig(incident_window_ms=DAY_MS), None),  # two days apart: two incidents
])
def test_the_incident_window_and_its_switch(cfg, expected):
    events = [ev("delivery", CID, T0, order_id="o1", status="failed"),
              ev("courier_rating", CID, T0 + 2 * DAY_MS, order_id="o1", rating=1)]
    rating = [d for d in run(cfg, events, until=T0 + 2 * DAY_MS) if d.kind == "negative_rating"]
    assert [d.suppressed for d in rating] == [expected]


def test_cap_zero_turns_the_cap_off():
    events = [ev("order", CID, T0, category="grocery"),
              ev("delivery", CID, T0 + 6 * DAY_MS, order_id="o9", status="failed")]
    assert (T0 + 7 * DAY_MS, "silence", "at_risk", None) in rows(run(DetectorConfig(contact_cap=0), events))


# -- value -------------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "orders", "amount", "severity", "segment"), [
    (1, 5, 120.0, "medium", "sleeping_valuable"),  # 4 repeat order days and 120 a basket: top F and M
    (2, 5, 120.0, "high", "sleeping_valuable"),
    (0, 5, 120.0, "low", "sleeping_valuable"),  # the label does not depend on the severity rule
    (1, 5, 20.0, "low", "loyal"),               # frequent, small baskets: not valuable
    (1, 1, 120.0, "low", "new_with_potential"),  # one big basket: not (yet) valuable
])
def test_a_valuable_customers_silence(steps, orders, amount, severity, segment):
    events = [ev("order", CID, T0 + i * DAY_MS, category="grocery", amount=amount) for i in range(orders)]
    last = T0 + (orders - 1) * DAY_MS
    (at_risk,) = [d for d in run(DetectorConfig(value_severity_steps=steps), events, until=last + 8 * DAY_MS)
                  if d.stage == "at_risk"]
    assert (at_risk.severity, at_risk.rfm_segment) == (severity, segment)
    assert ("high_value_customer" in at_risk.reason_codes) == (steps > 0 and segment == "sleeping_valuable")


def test_measurement_events_are_not_raised():
    events = [ev("order", CID, T0, category="grocery", amount=120.0),
              ev("order", CID, T0 + 9 * DAY_MS, category="grocery", amount=120.0)]
    (ret,) = [d for d in run(DetectorConfig(), events, until=T0 + 10 * DAY_MS) if d.kind == "customer_returned"]
    assert (ret.severity, "high_value_customer" in ret.reason_codes) == ("info", False)


# -- state -------------------------------------------------------------------------------


def test_contacts_and_incidents_stay_bounded_and_round_trip():
    cfg = DetectorConfig.from_mapping({"cooldowns": {"delivery_failed": "0s"}, "incident_window": "30d",
                                       "contact_cap_period": "30d"})
    events = [ev("delivery", CID, T0 + i * HOUR_MS, order_id=f"o{i}", status="failed") for i in range(12)]
    core = PartitionCore(Engine(cfg), {})
    for e in [GRANT, *events]:
        core.apply(DEC.validate(e))
    st = core.store[CID]
    assert len(st.contacts) == MAX_CONTACTS  # every failure went out
    assert len(st.incidents) == MAX_INCIDENTS
    assert CustomerState.decode(st.encode()) == st


def test_a_version_5_state_reads_with_no_contacts_or_incidents():
    core = PartitionCore(Engine(), {})
    core.apply(DEC.validate(ev("delivery", CID, T0, order_id="o1", status="failed")))
    v6 = core.store[CID].to_list()
    assert v6[0] == ENCODING_VERSION == 6
    assert v6[-3]  # contacts
    assert v6[-2]  # incidents (v6[-1]: the silence stages contacted about)
    old = CustomerState.from_list([5, *v6[1:-3]])
    assert (old.contacts, old.incidents) == ([], [])
    assert CustomerState.decode(old.encode()).to_list()[0] == ENCODING_VERSION
    with pytest.raises(ValueError, match="values"):
        CustomerState.from_list([5, *v6[1:]])
