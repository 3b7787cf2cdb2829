"""The packed customer state is lossless (values and their types) and within the size budget."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.statecodec import pack, unpack
from streams.replay import Replayer
from streams.samples import SampleGenerator


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


scalars = st.one_of(
    st.integers(-(1 << 59) + 1, (1 << 59) - 1), st.integers(1_500_000_000_000, 1_900_000_000_000),
    st.floats(allow_nan=True, allow_infinity=True), st.decimals(-1e6, 1e6, places=2).map(float),
    st.text(max_size=40), st.none(), st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=20), max_leaves=80)


@settings(max_examples=500, deadline=None)
@given(st.lists(values, max_size=30))
def test_packing_round_trips_any_state_shaped_value(v):
    assert _same(unpack(pack(v)), v)


def test_packed_states_of_a_replay_round_trip_and_fit_the_budget():
    gen = SampleGenerator(seed=9, customers=300)
    r = Replayer()
    res = r.run(iter(r.decoder().validate(e) for e in gen.history(1_790_000_000_000, days=365)))
    sizes = []
    for state in res.states.values():
        raw = pack(state.to_list())
        assert _same(unpack(raw), state.to_list())
        assert raw[:1] != b"["  # never mistaken for the JSON encoding
        sizes.append(len(raw))
    assert statistics.fmean(sizes) <= 300


@pytest.mark.parametrize("bad", [b"\x61", b"\x61\x80", b"\x62\x01", b"\x61\x01\x00"])
def test_truncated_or_trailing_bytes_are_errors(bad):
    with pytest.raises((ValueError, IndexError)):
        unpack(bad)


@pytest.mark.parametrize(("event_id", "expected"), [("e-1", 124442560663492), ("order-000123", 196480900161836)])
def test_event_hash_is_the_stored_blake2b_value(event_id, expected):
    """Redelivery checks compare with hashes already in the changelog: the function must never change."""
    from detectors.state import event_hash

    assert event_hash("other " + event_id) != expected
    assert event_hash(event_id) == expected  # the hash before did not leave anything behind
    assert event_hash(event_id) == expected
