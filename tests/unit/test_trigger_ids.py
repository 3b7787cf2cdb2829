"""One CloudEvents id per distinct trigger, and the same id for the same trigger however it is produced.

CloudEvents requires source + id to be unique per distinct event, and consumers
deduplicate by id (`INSERT ... ON CONFLICT (id) DO NOTHING`): two triggers that
shared an id would lose the later one. An id is a pure function of the
trigger's identity (detectors/envelope.py): a redelivery, a restart or a replay
gives the same id, two distinct triggers never share one.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import CustomerState, DetectorConfig, Engine, PartitionCore
from detectors.config import DAY_MS, HOUR_MS
from detectors.decision import Decision
from detectors.envelope import encode, iso_ms, to_cloudevent, trigger_id
from schemas import EventDecoder

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
UNTIL = T0 + 300 * DAY_MS
DEC = EventDecoder()
CUSTOMERS = ["alice", "bob"]
CONFIGS = {
    "default": DetectorConfig(),
    # every detector quick to fire (short windows, little history, no cooldowns): more triggers per
    # random log, more chances for two of them to meet
    "touchy": DetectorConfig.from_mapping({
        "cooldowns": dict.fromkeys(DetectorConfig().cooldowns, "0s"), "frequency_min_orders": 2,
        "frequency_min_span": "2d", "frequency_window": "5d", "basket_recent_orders": 1,
        "basket_min_baseline_orders": 1, "favourite_min_orders": 2, "silence_windows": {"grocery": "3d/6d"},
    }),
}


def ev(type_: str, cid: str, at: int, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "customer_id": cid, "occurred_at": iso_ms(at), **fields}


def order(cid: str, at: int, event_id: str, order_id: str, amount: float = 20.0) -> dict[str, Any]:
    return ev("order", cid, at, event_id, order_id=order_id, category="grocery", amount=amount)


def replay(cfg: DetectorConfig, evs: list[dict[str, Any]], until: int = UNTIL) -> list[Decision]:
    """What `replay` does: apply each event, sweep to the highest event time, then to `until`."""
    core = PartitionCore(Engine(cfg), {})
    out: list[Decision] = []
    for e in evs:
        out += core.apply(DEC.validate(e))[0]
        out += core.advance(core.max_event)
    return out + core.advance(until)


def ids(decisions: list[Decision]) -> list[str]:
    return [to_cloudevent(d, "v")["id"] for d in decisions]


def test_two_failed_deliveries_of_one_order_two_days_apart_get_two_ids():
    evs = [ev("delivery", "peggy", T0, "d1", order_id="p1", status="failed"),
           ev("delivery", "peggy", T0 + 2 * DAY_MS, "d2", order_id="p1", status="failed")]
    failed = [d for d in replay(CONFIGS["default"], evs) if d.kind == "delivery_failed"]
    # one incident, one contact: the redelivery's failure goes to the audit topic, with its own id
    assert [(d.episode, d.caused_by, d.suppressed) for d in failed] == [("p1", "d1", None),
                                                                        ("p1", "d2", "same_incident")]
    assert len(set(ids(failed))) == 2


def test_a_re_rated_order_gets_distinct_rating_and_follow_up_ids():
    """The order is rated 1, then rated 2 four days later (after the first check fired): two service
    recovery triggers and two checks, all about order o1, none sharing an id."""
    evs = [order("ivan", T0, "o", "o1"),
           ev("courier_rating", "ivan", T0 + DAY_MS, "r1", order_id="o1", rating=1),
           ev("courier_rating", "ivan", T0 + 5 * DAY_MS, "r2", order_id="o1", rating=2)]
    rating = sorted((d for d in replay(CONFIGS["default"], evs, T0 + 10 * DAY_MS) if d.kind == "negative_rating"),
                    key=lambda d: d.time_ms)
    assert [(d.stage, d.episode, d.time_ms, d.suppressed) for d in rating] == [
        ("now", "o1", T0 + DAY_MS, None), ("follow_up", "o1", T0 + 4 * DAY_MS, None),
        ("now", "o1", T0 + 5 * DAY_MS, "same_incident"),  # suppressed: on the audit topic, with its own id
        ("follow_up", "o1", T0 + 8 * DAY_MS, None)]
    assert len(set(ids(rating))) == 4


def test_two_checks_of_one_order_with_one_deadline_get_two_ids():
    """Found by searching random logs: two ratings of o1 at the same time, the second read after a
    rating of o2 three days later. Spacing is judged against the latest rating that scheduled a
    check, so both schedule one, at one deadline; the rating that scheduled each tells them apart."""
    evs = [ev("courier_rating", "ivan", T0, "r1", order_id="o1", rating=1),
           ev("courier_rating", "ivan", T0 + 100 * HOUR_MS, "r2", order_id="o2", rating=1),
           ev("courier_rating", "ivan", T0, "r3", order_id="o1", rating=2)]
    checks = [d for d in replay(CONFIGS["default"], evs) if d.stage == "follow_up" and d.episode == "o1"]
    assert [d.time_ms for d in checks] == [T0 + 72 * HOUR_MS] * 2
    assert len(set(ids(checks))) == 2


def test_a_check_scheduled_before_the_rating_was_kept_is_named_by_the_rating_time():
    """A state written by detector 2.0.0 holds [due, order id] per pending check, no rating hash."""
    st = CustomerState()
    st.follow_ups = [[T0 + 72 * HOUR_MS, "o1"]]
    core = PartitionCore(Engine(), {"ivan": CustomerState.decode(st.encode())})
    core.rebuild(core.store.items())
    (check,) = core.advance(T0 + 73 * HOUR_MS)
    assert to_cloudevent(check, "v")["id"] == trigger_id("ivan", "negative_rating", "o1", "follow_up", str(T0))


def test_a_redelivered_event_makes_no_trigger_and_a_trigger_made_again_keeps_its_id():
    rating = DEC.validate(ev("courier_rating", "c", T0, "r1", order_id="o1", rating=1))
    core = PartitionCore(Engine(), {})
    (first,), _ = core.apply(rating)
    assert core.apply(rating) == ([], "duplicate")  # the seen ring: no trigger at all
    # The same event applied again from the state before it (a crash before the offset commit)
    (again,), _ = PartitionCore(Engine(), {}).apply(rating)
    assert encode(to_cloudevent(again, "v")) == encode(to_cloudevent(first, "v"))


def test_silence_ids_are_those_of_earlier_versions_and_returns_name_them():
    """A silence stage fires once per episode (the last order's time), so customer, kind, episode and
    stage alone tell it apart: its id is what it always was, and the returns and retractions that
    name it by id still match it across versions and configurations."""
    grant = ev("consent", "grace", T0, "g0", channel="all", granted=True)  # the win-back goes out: a return
    evs = [grant, order("grace", T0, "g1", "g1"), order("grace", T0 + 10 * DAY_MS, "g2", "g2", amount=25.0)]
    decisions = replay(CONFIGS["default"], evs)
    silence, returned = decisions[0], decisions[1]
    assert (silence.kind, silence.stage, returned.kind) == ("silence", "at_risk", "customer_returned")
    old = hashlib.sha256(f"grace\x1fsilence\x1f{T0}\x1fat_risk".encode()).hexdigest()[:32]
    assert to_cloudevent(silence, "v")["id"] == old == returned.evidence["preceding_trigger_id"]
    assert trigger_id("grace", "silence", str(T0), "at_risk") == old


# Random logs over two customers and two order ids: orders, ratings and deliveries of the same
# order again and again, any of them read up to a week late (a lagging topic, an order whose
# occurred_at is older than the orders read before it), every rating and delivery status.
step = st.tuples(
    st.sampled_from(["order", "order", "order", "courier_rating", "delivery"]),
    st.sampled_from(["alice", "alice", "alice", "bob"]),
    st.one_of(st.sampled_from([0, 1, 72, 73, 150, 400]), st.integers(0, 60 * 24)),  # hours after T0
    st.integers(1, 6),                 # rating (1-5) / delivery status
    st.sampled_from(["o1", "o2"]),
    st.sampled_from([0, 0, 0, 80, 150, 300]),  # hours read late
)
logs = st.lists(step, min_size=1, max_size=25)
STATUSES = ["failed", "returned", "delivered", "cancelled", "delivered", "failed"]


def events(spec: list[tuple[str, str, int, int, str, int]]) -> list[dict[str, Any]]:
    """The log in the order it is read: by event time, each event `late` hours behind."""
    out = []
    for i, (t, cid, hours, n, order_id, late) in enumerate(spec):
        at = T0 + hours * HOUR_MS
        if t == "order":
            e = order(cid, at, f"p{i}", order_id, amount=float(n * 15))
        elif t == "courier_rating":
            e = ev(t, cid, at, f"p{i}", order_id=order_id, rating=min(n, 5))
        else:
            e = ev(t, cid, at, f"p{i}", order_id=order_id, status=STATUSES[n - 1])
            if n in (3, 5):  # delivered: late beyond the grace, or within it
                e.update(promised_at=iso_ms(at - 3 * HOUR_MS), delivered_at=iso_ms(at - (n - 3) * HOUR_MS))
        out.append((hours + late, i, e))
    return [e for _, _, e in sorted(out, key=lambda r: (r[0], r[1]))]


def live(cfg: DetectorConfig, evs: list[dict[str, Any]], ticks: list[int], commit: int, crash: int,
         gap: int) -> list[Decision]:
    """A live-like run: clock ticks between events, each event delivered again `gap` events later
    (at-least-once), and a crash after `crash` messages that restarts from the state as of `commit`
    (decoded from its bytes, as from the changelog) and reads every message after it again."""
    msgs: list[dict[str, Any]] = []
    for i, e in enumerate(evs):
        msgs.append(e)
        if gap and i >= gap:
            msgs.append(evs[i - gap])
    crash = min(crash, len(msgs))
    commit = min(commit, crash)
    core = PartitionCore(Engine(cfg), {})
    out: list[Decision] = []
    changelog: dict[str, bytes] = {}
    for n, e in enumerate(msgs[:crash]):
        if n == commit:
            changelog = {cid: s.encode() for cid, s in core.store.items()}
        out += _deliver(core, e, ticks)
    if crash == commit:
        changelog = {cid: s.encode() for cid, s in core.store.items()}
    core = PartitionCore(Engine(cfg), {cid: CustomerState.decode(raw) for cid, raw in changelog.items()})
    core.rebuild(core.store.items())
    for e in msgs[commit:]:
        out += _deliver(core, e, ticks)
    return out + core.advance(UNTIL)


def _deliver(core: PartitionCore, e: dict[str, Any], ticks: list[int]) -> list[Decision]:
    parsed = DEC.validate(e)
    out: list[Decision] = []
    for t in ticks:  # ticks never run ahead of the next order (the hybrid watermark's promise)
        if core.clock < t <= parsed.ts:
            out += core.advance(t)
    out += core.apply(parsed)[0]
    return out + core.advance(core.max_event)


@settings(max_examples=400, deadline=None)
@given(spec=logs, cfg=st.sampled_from(sorted(CONFIGS)))
def test_ids_are_unique_among_distinct_triggers(spec, cfg):
    decisions = replay(CONFIGS[cfg], events(spec))
    assert len(set(ids(decisions))) == len(decisions), [(d.kind, d.stage, d.episode, d.time_ms) for d in decisions]


@settings(max_examples=300, deadline=None)
@given(spec=logs, cfg=st.sampled_from(sorted(CONFIGS)), ticks=st.lists(st.integers(0, 60 * 24), max_size=8),
       commit=st.integers(0, 30), lost=st.integers(0, 4), gap=st.integers(0, 3))
def test_a_live_run_gives_the_replay_ids(spec, cfg, ticks, commit, lost, gap):
    """Ticks, redelivered events and a crash change no id: every trigger written more than once is
    a byte-identical copy, and after dropping copies the live run is the replay."""
    evs = events(spec)
    replayed = {to_cloudevent(d, "v")["id"]: encode(to_cloudevent(d, "v")) for d in replay(CONFIGS[cfg], evs)}
    written: dict[str, bytes] = {}
    for d in live(CONFIGS[cfg], evs, sorted(T0 + h * HOUR_MS for h in ticks), commit, commit + lost, gap):
        ce = to_cloudevent(d, "v")
        assert written.setdefault(ce["id"], encode(ce)) == encode(ce), "an id shared by two triggers"
    assert written == replayed
