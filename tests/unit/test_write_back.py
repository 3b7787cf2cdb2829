"""The live worker's write-back cache: one changelog record per customer per commit, nothing lost.

A dict plays the table (its values are what the changelog holds once flushed),
a list plays the changelog producer, and a crash is "keep only what was flushed".
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors import CustomerState
from detectors.state import cat_entry
from streams.connection import KafkaConnection
from streams.live.metrics import Metrics
from streams.live.runtime import Runtime
from streams.live.state_store import Stored, decode_stored
from streams.settings import Settings
from tests.unit.test_crash_consistency import NOW, _events

Logged = list[tuple[int, str, bytes]]


def _runtime(table: dict[str, Stored]) -> Runtime:
    return Runtime(Settings(kafka=KafkaConnection("127.0.0.1:9092")), table, Metrics(), lambda: NOW, write_back=True)


def _flush(rt: Runtime, logged: Logged | None = None) -> int:
    """What the worker does before a commit: seal the cache, send one record per customer."""
    sealed = rt.seal_state()
    if logged is not None:
        logged.extend((partition, key, stored.raw) for partition, key, stored in sealed)
    return len(sealed)


def _feed(rt: Runtime, events: list[tuple[str, dict[str, Any]]], partition: int = 2,
          counters: dict[str, int] | None = None) -> list[bytes]:
    """Deliver events on one partition; offsets per topic continue from `counters`."""
    counters = {} if counters is None else counters
    sent: list[bytes] = []
    for topic, ev in events:
        offset = counters.get(topic, 0)
        counters[topic] = offset + 1
        records = rt.on_input(topic, partition, offset, ev["customer_id"].encode(), orjson.dumps(ev))
        sent.extend(r.value for r in records if r.value is not None)
        rt.write_state()
    return sent


#: The state's fields: __slots__ in the Python source; a class compiled by mypyc (make core)
#: lists its attributes in __mypyc_attrs__ instead.
FIELDS = tuple(getattr(CustomerState, "__slots__", ()) or
               [a for a in getattr(CustomerState, "__mypyc_attrs__", ()) if not a.startswith("__")])


def test_copies_share_no_mutable_part_with_the_original():
    assert len(FIELDS) >= 20
    st = CustomerState()
    for name in FIELDS:  # every container field filled, so every one is checked
        value = getattr(st, name)
        if isinstance(value, list):  # the shapes the core stores: follow-ups, failures, incidents are lists
            value.extend([[1, "x"]] if name == "follow_ups" else [[1, 2, "x"]] if name in ("failures", "incidents")
                         else [2, 3])
        elif isinstance(value, dict):
            value["grocery"] = cat_entry(3, 4)  # categories: packed (orders, last) ints
    st.favourite = "grocery"
    before = st.encode()  # a snapshot: to_list() hands out the state's own lists
    c = st.copy()
    assert c == st
    assert c is not st
    assert {n: getattr(c, n) for n in FIELDS} == {n: getattr(st, n) for n in FIELDS}
    for name in FIELDS:
        value = getattr(c, name)
        if isinstance(value, list):
            value.append(9)
            if isinstance(value[0], list):
                value[0].append(9)
        elif isinstance(value, dict):
            value["grocery"] = cat_entry(4, 5)
            value["new"] = cat_entry(1, 1)
    assert st.encode() == before


def test_states_reach_the_changelog_once_per_customer_at_flush_and_the_table_then_holds_them():
    table: dict[str, Stored] = {}
    logged: Logged = []
    rt = _runtime(table)
    _feed(rt, _events("a", 12) + _events("b", 9))
    assert logged == []
    assert table == {}  # finished, not flushed: nothing written per event
    assert rt.store["a"].n_orders == 4   # reads see the finished state all the same
    assert _flush(rt, logged) == 2
    assert sorted(k for _, k, _ in logged) == ["a", "b"]
    assert {p for p, _, _ in logged} == {2}  # the customer's own partition, not the current event's
    assert {k: raw for _, k, raw in logged} == {k: v.raw for k, v in table.items()}
    assert decode_stored(table["a"].raw).state.n_orders == 4
    assert _flush(rt, logged) == 0  # nothing new: nothing sent
    assert len(logged) == 2


def test_write_back_gives_the_same_state_and_triggers_as_writing_every_event():
    events = _events("a", 30)
    through: dict[str, Stored] = {}
    sent_through = _feed(Runtime(Settings(kafka=KafkaConnection("127.0.0.1:9092")), through, Metrics(), lambda: NOW),
                         events)
    back: dict[str, Stored] = {}
    rt = _runtime(back)
    counters: dict[str, int] = {}
    sent_back = []
    for i, (topic, ev) in enumerate(events):
        offset = counters.get(topic, 0)
        counters[topic] = offset + 1
        sent_back += [r.value for r in rt.on_input(topic, 2, offset, b"a", orjson.dumps(ev))]
        rt.write_state()
        if i % 7 == 6:  # flushes in between, as commits would
            _flush(rt)
    _flush(rt)
    assert sent_back == sent_through
    assert back["a"].raw == through["a"].raw


def test_an_unfinished_message_leaves_the_write_back_cache_as_it_was():
    table: dict[str, Stored] = {}
    rt = _runtime(table)
    events = _events("a", 6)
    _feed(rt, events)
    before = rt.store["a"].to_list()
    rt.write_state()
    ratings = Settings().topics.courier_ratings
    # A negative rating: its trigger is being delivered when the agent is cancelled.
    rating = {"event_id": "late-bad", "type": "courier_rating", "customer_id": "a",
              "occurred_at": events[5][1]["occurred_at"], "order_id": "o-3", "rating": 1}
    records = rt.on_input(ratings, 2, 100, b"a", orjson.dumps(rating))
    assert records  # a trigger: the state waits for its delivery
    rt.store.discard()  # the agent was cancelled before the delivery finished
    _flush(rt)
    assert table["a"].state.to_list() == before  # the unfinished rating is not in the changelog
    assert 100 not in table["a"].offsets  # nor its offset: redelivered, it is applied


def test_a_crash_before_the_flush_redoes_the_messages_and_repeats_their_triggers_with_the_same_ids():
    events = _events("a", 21)
    table: dict[str, Stored] = {}
    rt = _runtime(table)
    offsets: dict[str, int] = {}
    first = _feed(rt, events[:5], counters=offsets)
    committed = dict(offsets)
    _flush(rt)     # a commit covered the first 5 messages
    lost = _feed(rt, events[5:], counters=offsets)
    assert lost, "the events after the commit must fire something for this test to mean anything"
    # Crash: the cache is gone, the changelog holds what the commit flushed.
    recovered = {k: decode_stored(v.raw) for k, v in table.items()}
    rt2 = _runtime(recovered)
    again = _feed(rt2, events[5:], counters=committed)
    assert _ids_of(again) == _ids_of(lost)  # at-least-once: the same triggers, the same ids
    _flush(rt)
    _flush(rt2)
    assert recovered["a"].raw == table["a"].raw  # redone, the state is the one the crash lost
    assert first == []  # the negative rating is event 7: everything it fires was lost and redone


def test_revocation_forgets_the_cache_and_reads_what_the_next_owner_wrote():
    table: dict[str, Stored] = {}
    logged: Logged = []
    rt = _runtime(table)
    _feed(rt, _events("a", 5))
    _flush(rt, logged)                 # the app flushes before revoking
    _feed(rt, _events("b", 2))       # finished after the flush: not committed, delivered again
    rt.revoke_all()
    assert [k for _, k, _ in logged] == ["a"]
    assert rt.store.unflushed == 0
    assert rt.store.get("b") is None
    # The next owner changed the customer; this worker must read what the table now holds.
    changed = table["a"].state.copy()
    changed.n_orders = 99
    table["a"] = Stored(changed, table["a"].offsets)
    assert rt.store["a"].n_orders == 99


def test_a_sealed_batch_is_in_the_table_at_once_for_the_caller_to_log():
    table: dict[str, Stored] = {}
    rt = _runtime(table)
    _feed(rt, _events("a", 4))
    sealed = rt.seal_state()
    assert [k for _, k, _ in sealed] == ["a"]
    assert table["a"] is sealed[0][2]         # reads fall back to the table: nothing is lost
    assert rt.store["a"].n_orders == table["a"].state.n_orders == 2


def _ids_of(values: list[bytes]) -> list[str]:
    return [orjson.loads(v)["id"] for v in values]

