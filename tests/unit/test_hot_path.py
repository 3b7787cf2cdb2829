"""Speed work on the replay hot path changes no result: each shortcut against the plain rule it replaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import DetectorConfig, Engine, PartitionCore
from detectors import silence as silence_mod
from detectors.envelope import iso_ms
from detectors.state import CustomerState, cat_entry
from schemas import EventDecoder
from schemas.decode import to_epoch_ms
from schemas.validator import parse_rfc3339
from streams.dev.samples import SampleGenerator


def _iso_reference(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 4_102_444_800_000))  # 1970 .. 2100
def test_iso_ms_formats_like_datetime(ms):
    assert iso_ms(ms) == _iso_reference(ms)
    assert to_epoch_ms(iso_ms(ms)) == ms


def _to_epoch_reference(value: str) -> int:
    parsed = parse_rfc3339(value)
    assert parsed is not None
    return (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1)),
       st.sampled_from(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S.%f+00:00",
                        "%Y-%m-%dt%H:%M:%Sz"]))
def test_event_time_of_every_accepted_form_is_the_reference_one(dt, fmt):
    text = dt.strftime(fmt)
    assert to_epoch_ms(text) == _to_epoch_reference(text)


def _favourite_reference(cats: dict[str, list[int]]) -> str | None:
    best, best_key = None, (-1, -1)
    for cat, (count, last) in cats.items():
        if (count, last) > best_key:
            best, best_key = cat, (count, last)
    return best


@given(st.dictionaries(st.sampled_from(["grocery", "fashion", "home", "toys", "other", "pets"]),
                       st.tuples(st.integers(1, 4), st.integers(0, 3)).map(list), max_size=6))
def test_favourite_category_is_the_most_ordered_then_the_latest(cats):
    s = CustomerState()
    s.categories = {c: cat_entry(n, t) for c, (n, t) in cats.items()}
    assert s.favourite_category() == _favourite_reference(cats)


def _states() -> list[CustomerState]:
    dec = EventDecoder()
    core = PartitionCore(Engine(), {})
    for i, e in enumerate(SampleGenerator(seed=4, customers=120).history(1_790_000_000_000, days=200)):
        core.apply(dec.validate(e))
        if i % 7 == 0:
            core.advance(core.max_event)
    return list(core.store.values())


def test_next_silence_deadline_is_the_stage_plan_deadline():
    cfg = DetectorConfig()
    checked = 0
    for s in _states():
        for stage in range(4):
            s.silence_stage = stage
            expected: Any = None
            if s.n_orders and stage < 3:
                expected = silence_mod.stage_plan(cfg, s)[stage][0]
            assert silence_mod.next_deadline(cfg, s) == expected
            checked += 1
    assert checked > 400


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["grocery", "fashion", "home", "toys", "other", "pets", "garden", "books"]),
                          st.integers(0, 40)), min_size=1, max_size=60),
       st.booleans())
def test_kept_favourite_is_the_recomputed_one_after_every_order(orders, round_trip):
    """Ties, late orders and category eviction included; also across an encode/decode."""
    engine = Engine()
    dec = EventDecoder()
    s: CustomerState | None = None
    for i, (category, day) in enumerate(orders):
        ev = dec.validate({"event_id": f"e{i}", "type": "order", "customer_id": "c", "order_id": f"o{i}",
                           "occurred_at": iso_ms(1_700_000_000_000 + day * 3_600_000), "category": category,
                           "amount": 10.0, "currency": "EUR"})
        s = engine.apply(s, ev)[0]
        if round_trip:
            s = CustomerState.decode(s.encode())
        assert s.favourite == s.favourite_category()


def test_the_deadline_index_holds_every_customers_next_deadline_after_each_event():
    """Deliveries and consent skip the deadline recomputation: it must be the one a full one gives.

    Orders rely on it too: the partition passes the index's value to the engine, which then
    skips working out whether a deadline is due before the order (Engine.fire_due's next_at).
    """
    dec = EventDecoder()
    engine = Engine()
    core = PartitionCore(engine, {})
    events = SampleGenerator(seed=9, customers=60).history(1_790_000_000_000, days=200)
    middle = len(events) // 2
    events.insert(middle, {"event_id": "consent-1", "type": "consent", "customer_id": events[0]["customer_id"],
                           "occurred_at": events[middle]["occurred_at"], "channel": "all", "granted": False})
    for i, e in enumerate(events):
        ev = dec.validate(e)
        core.apply(ev)
        assert core.index.get(ev.customer_id) == engine.next_deadline(core.store[ev.customer_id])
        if i % 5 == 0:
            core.advance(core.max_event)
    assert all(core.index.get(c) == engine.next_deadline(s) for c, s in core.store.items())
