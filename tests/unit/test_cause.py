"""The silence knows why: service failures are remembered, bounded, and name the cause of a silence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import CustomerState, DetectorConfig, PartitionCore
from detectors.cause import MAX_FAILURES
from detectors.config import DAY_MS, HOUR_MS
from detectors.engine import Engine
from detectors.envelope import encode, iso_ms, to_cloudevent
from detectors.state import ENCODING_VERSION
from schemas.errors import ConfigError
from tests.unit.test_core import DEC, T0, ev

#: The default allowed lateness: a deadline is due once the clock is past it by more than this.
LATENESS = DetectorConfig().allowed_lateness_ms


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


def test_a_version_4_state_reads_with_no_failures_and_is_written_in_the_current_encoding():
    core = _core()
    _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS))
    v4 = core.store["c"].to_list()[:24]  # version 4: the same values, without the failures
    v4[0] = 4
    old = CustomerState.from_list(v4)
    assert old.failures == []
    assert old.to_list()[:24] == [ENCODING_VERSION, *v4[1:]]
    assert CustomerState.decode(old.encode()).to_list()[0] == ENCODING_VERSION
    with pytest.raises(ValueError, match="values"):
        CustomerState.from_list([*v4, []])  # a version-4 list one value too long


# -- what a silence says -------------------------------------------------------------


def silences(decisions: list) -> list:
    return [d for d in decisions if d.kind == "silence"]


def test_a_customer_silent_after_a_failed_delivery_is_a_suspected_service_churner_at_every_stage():
    core = _core()
    out = _apply(core, ev("order", "c", T0), failed("c", T0 + 18 * HOUR_MS, "o-7"))
    out += core.advance(T0 + 200 * DAY_MS)
    stages = silences(out)
    assert [d.stage for d in stages] == ["at_risk", "dormant", "lost"]
    for d in stages:
        assert d.suspected_cause == "service"
        assert d.service_failures == (("delivery_failed", "o-7", T0 + 18 * HOUR_MS),)
        assert d.reason_codes == (f"silence_{d.stage}", "category_window_grocery", "after_delivery_failed")
        assert d.family == "win_back"  # still a silence: what changes is what the CRM sends
    data = to_cloudevent(stages[0], "v")["data"]
    assert data["suspected_cause"] == "service"
    assert data["service_failures"] == [{"kind": "delivery_failed", "order_id": "o-7",
                                         "occurred_at": "2026-01-01T18:00:00.000Z"}]
    assert data["reason_codes"][-1] == "after_delivery_failed"
    assert data["evidence"] == stages[0].evidence  # the silence's own numbers are unchanged


def test_a_failure_older_than_the_lookback_before_the_last_order_makes_no_service_cause():
    core = _core(DetectorConfig(value_severity_steps=0))  # seven order days: valuable, a reason code more
    out = _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS), ev("order", "c", T0 + 5 * DAY_MS),
                 ev("order", "c", T0 + 10 * DAY_MS), ev("order", "c", T0 + 15 * DAY_MS),
                 ev("order", "c", T0 + 20 * DAY_MS), ev("order", "c", T0 + 25 * DAY_MS),
                 ev("order", "c", T0 + 31 * DAY_MS + 2 * HOUR_MS))
    out += core.advance(T0 + 60 * DAY_MS)
    stages = silences(out)
    assert [d.stage for d in stages] == ["at_risk", "dormant"]
    for d in stages:
        assert (d.suspected_cause, d.service_failures) == ("none", ())
        assert d.reason_codes == (f"silence_{d.stage}", "category_window_grocery")
    data = to_cloudevent(stages[0], "v")["data"]
    assert (data["suspected_cause"], data["service_failures"]) == ("none", [])


def test_a_late_delivery_after_the_last_order_and_before_the_deadline_counts():
    core = _core()
    out = _apply(core, ev("order", "c", T0), late("c", T0 + 6 * DAY_MS, "o-1"))
    out += core.advance(T0 + 20 * DAY_MS)
    at_risk, dormant = silences(out)
    assert at_risk.suspected_cause == dormant.suspected_cause == "service"
    assert at_risk.service_failures == (("delivered_late", "o-1", T0 + 6 * DAY_MS),)
    assert "after_delivered_late" in at_risk.reason_codes


def test_a_failure_after_a_stages_deadline_counts_for_the_later_stages_only():
    core = _core()
    out = _apply(core, ev("order", "c", T0), late("c", T0 + 10 * DAY_MS, "o-1"))  # read after at_risk passed
    out += core.advance(T0 + 20 * DAY_MS)
    at_risk, dormant = silences(out)
    assert (at_risk.suspected_cause, dormant.suspected_cause) == ("none", "service")


@pytest.mark.parametrize(("rating", "cause"), [(1, "service"), (2, "service"), (3, "none"), (4, "none"), (5, "none")])
def test_only_a_negative_courier_rating_is_a_service_failure(rating, cause):
    core = _core()
    out = _apply(core, ev("order", "c", T0), rated("c", T0 + DAY_MS, rating))
    out += core.advance(T0 + 8 * DAY_MS)
    (at_risk,) = silences(out)
    assert at_risk.suspected_cause == cause
    assert at_risk.reason_codes[2:] == ((f"after_courier_rating_{rating}",) if cause == "service" else ())


def test_negative_ratings_follow_the_configured_threshold():
    cfg = DetectorConfig(negative_rating_max=3)
    core = _core(cfg)
    out = _apply(core, ev("order", "c", T0), rated("c", T0 + DAY_MS, 3))
    out += core.advance(T0 + 8 * DAY_MS)
    assert silences(out)[0].service_failures == (("courier_rating_3", "o1", T0 + DAY_MS),)


def test_several_failures_are_named_oldest_first_each_kind_once():
    core = _core()
    out = _apply(core, rated("c", T0 - 3 * DAY_MS, 1, "o-0"), ev("order", "c", T0),
                 failed("c", T0 + HOUR_MS, "o-1"), failed("c", T0 + 2 * HOUR_MS, "o-1", status="returned"),
                 failed("c", T0 + 3 * HOUR_MS, "o-1"))
    out += core.advance(T0 + 8 * DAY_MS)
    (at_risk,) = silences(out)
    assert at_risk.reason_codes == ("silence_at_risk", "category_window_grocery", "after_courier_rating_1",
                                    "after_delivery_failed", "after_delivery_returned")
    assert [f[0] for f in at_risk.service_failures] == [
        "courier_rating_1", "delivery_failed", "delivery_returned", "delivery_failed"]


@pytest.mark.parametrize(("offset", "counts"), [
    (-30 * DAY_MS, True),          # exactly the lookback before the last order: inside
    (-30 * DAY_MS - 1, False),     # a millisecond earlier: outside
    (7 * DAY_MS - 1, True),        # a millisecond before the at-risk deadline
    (7 * DAY_MS, False),           # at the deadline itself: read before or after it fired, depending on ticks
])
def test_the_window_runs_from_the_lookback_before_the_last_order_up_to_the_deadline(offset, counts):
    core = _core()
    last = T0 + 40 * DAY_MS
    out = _apply(core, ev("order", "c", T0 + 35 * DAY_MS), ev("order", "c", last))
    out += core.apply(DEC.validate(failed("c", last + offset, "o-9")))[0]  # applied before any sweep
    out += core.advance(last + 7 * DAY_MS + LATENESS + 1)  # just past the deadline and the lateness: due
    (at_risk,) = [d for d in silences(out) if d.episode == str(last)]
    assert at_risk.suspected_cause == ("service" if counts else "none")


@pytest.mark.parametrize(("lookback", "cause"), [("0s", "none"), ("30d", "none"), ("45d", "service")])
def test_the_lookback_is_a_setting(lookback, cause):
    cfg = DetectorConfig.from_mapping({"silence_cause_lookback": lookback})
    core = _core(cfg)
    out = _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS), ev("order", "c", T0 + 40 * DAY_MS))
    out += core.advance(T0 + 47 * DAY_MS + LATENESS + 1)
    (at_risk,) = [d for d in silences(out) if d.episode == str(T0 + 40 * DAY_MS)]
    assert at_risk.suspected_cause == cause


def test_the_lookback_is_part_of_the_configuration_version_and_not_negative():
    assert DetectorConfig().silence_cause_lookback_ms == 30 * DAY_MS
    assert DetectorConfig.from_mapping({"silence_cause_lookback": "45d"}).version != DetectorConfig().version
    with pytest.raises(ConfigError, match="silence_cause_lookback"):
        DetectorConfig(silence_cause_lookback_ms=-1)
    with pytest.raises(ConfigError, match="silence_cause_lookback"):
        DetectorConfig.from_mapping({"silence_cause_lookback": "soon"})


def test_only_silence_triggers_carry_a_suspected_cause():
    core = _core()
    out = _apply(core, ev("order", "c", T0), failed("c", T0 + HOUR_MS), rated("c", T0 + 2 * HOUR_MS, 1))
    out += core.advance(T0 + 8 * DAY_MS)
    for d in out:
        data = to_cloudevent(d, "v")["data"]
        assert ("suspected_cause" in data) == ("service_failures" in data) == (d.kind == "silence"), d


# -- determinism ---------------------------------------------------------------------

#: Service-heavy logs of two customers: orders, every kind of delivery and rating, often more
#: failures than are kept, around the silence deadlines.
service_step = st.tuples(
    st.sampled_from(["order", "failed", "returned", "late", "on_time", "cancelled", "rating"]),
    st.sampled_from(["a", "b"]),
    st.integers(0, 70 * 24),    # hours after T0
    st.integers(1, 5),          # rating
)
service_logs = st.lists(service_step, min_size=1, max_size=40)


def service_events(spec: list[tuple[str, str, int, int]]) -> list[dict]:
    out = []
    for i, (what, cid, hours, rating) in enumerate(sorted(spec, key=lambda s: s[2])):
        at = T0 + hours * HOUR_MS
        if what == "order":
            out.append(ev("order", cid, at, event_id=f"s{i}", order_id=f"o{i}"))
        elif what == "rating":
            out.append(ev("courier_rating", cid, at, event_id=f"s{i}", order_id=f"o{i % 3}", rating=rating))
        elif what in ("late", "on_time"):
            promised = at - (2 * HOUR_MS if what == "late" else 0)
            out.append(ev("delivery", cid, at, event_id=f"s{i}", order_id=f"o{i % 3}", status="delivered",
                          promised_at=iso_ms(promised), delivered_at=iso_ms(at)))
        else:
            out.append(ev("delivery", cid, at, event_id=f"s{i}", order_id=f"o{i % 3}", status=what))
    return out


def run(evs: list[dict], ticks: tuple[int, ...] | list[int] = (), recover: bool = False) -> list[bytes]:
    """Triggers as canonical bytes; `ticks` are clock ticks between events (live), `recover` decodes
    every state from its encoding after each event (a restart from the changelog)."""
    core = _core()
    pending = sorted(ticks)
    out = []
    for e in evs:
        parsed = DEC.validate(e)
        while pending and pending[0] <= parsed.ts:
            out += core.advance(pending.pop(0))
        out += core.apply(parsed)[0]
        if recover:
            for cid, state in list(core.store.items()):
                core.store[cid] = CustomerState.decode(state.encode())
        out += core.advance(core.max_event)
    out += core.advance(T0 + 400 * DAY_MS)
    return sorted(encode(to_cloudevent(d, "v")) for d in out)


@settings(max_examples=300, deadline=None)
@given(spec=service_logs, ticks=st.lists(st.integers(0, 80 * 24), max_size=12))
def test_replay_equals_live_ticks_and_restarts_with_the_causes(spec, ticks):
    evs = service_events(spec)
    replayed = run(evs)
    assert run(evs) == replayed                                          # same events, same bytes
    assert run(evs, [T0 + h * HOUR_MS for h in ticks]) == replayed        # the clock ticking in between
    assert run(evs, recover=True) == replayed                            # state through its encoding


@settings(max_examples=300, deadline=None)
@given(spec=service_logs)
def test_a_silence_names_exactly_the_failures_of_its_window_while_they_fit(spec):
    evs = service_events(spec)
    cfg = DetectorConfig()
    failures: dict[str, list[tuple[int, str, str]]] = {"a": [], "b": []}
    for e in evs:
        at = DEC.validate(e).ts
        if e["type"] == "courier_rating" and e["rating"] <= cfg.negative_rating_max:
            failures[e["customer_id"]].append((at, f"courier_rating_{e['rating']}", e["order_id"]))
        elif e["type"] == "delivery" and e["status"] in ("failed", "returned"):
            failures[e["customer_id"]].append((at, f"delivery_{e['status']}", e["order_id"]))
        elif e["type"] == "delivery" and "promised_at" in e and e["promised_at"] != e["delivered_at"]:
            failures[e["customer_id"]].append((at, "delivered_late", e["order_id"]))
    core = _core(cfg)
    decisions = _apply(core, *evs) + core.advance(T0 + 400 * DAY_MS)
    for d in silences(decisions):
        last = int(d.episode)
        expected = sorted({f for f in failures[d.customer_id]
                           if last - cfg.silence_cause_lookback_ms <= f[0] < d.time_ms})
        named = [(at, kind, order) for kind, order, at in d.service_failures]
        assert [n[0] for n in named] == sorted(n[0] for n in named)  # oldest first
        assert set(named) <= set(expected)
        if len(set(failures[d.customer_id])) <= MAX_FAILURES:  # nothing was ever left out
            assert sorted(named) == expected, d
            assert d.suspected_cause == ("service" if expected else "none")
