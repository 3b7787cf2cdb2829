"""The holdout split: a stable hash of salt and customer id, kept in the customer's state per salt."""

from __future__ import annotations

import hashlib

import pytest

from detectors import suppression
from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.state import CustomerState
from detectors.suppression import HOLDOUT, TREATMENT, group_of, holdout_value

pytestmark = pytest.mark.unit


def _reference(salt: str, customer_id: str) -> float:
    digest = hashlib.blake2b(f"{salt}\x1f{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def test_holdout_value_is_the_salted_hash():
    ids = [f"cust-{i}" for i in range(50)]
    for salt in ("a", "b", "a"):
        assert [holdout_value(salt, c) for c in ids] == [_reference(salt, c) for c in ids]
    assert holdout_value("a", "cust-1") != holdout_value("b", "cust-1")


def test_group_follows_the_share():
    ids = [f"cust-{i}" for i in range(2000)]
    cfg = DetectorConfig(holdout_share=0.25)
    held = [c for c in ids if group_of(cfg, c) == HOLDOUT]
    assert 0.2 < len(held) / len(ids) < 0.3
    assert all(group_of(DetectorConfig(holdout_share=0.0), c) == TREATMENT for c in ids)


def test_a_decision_takes_the_group_of_its_salt_even_when_the_state_kept_another():
    """decide() keeps the customer's value in the state; a state met under another salt must not reuse it."""
    ids = [f"cust-{i}" for i in range(200)]
    a = DetectorConfig(holdout_share=0.5, holdout_salt="a")
    b = DetectorConfig(holdout_share=0.5, holdout_salt="b")
    for c in ids:
        st = CustomerState()
        for cfg in (a, b, a):
            d = Decision(customer_id=c, kind="delivery_failed", stage="now", severity="high",
                         family="service_recovery", time_ms=1, episode="o1", reason_codes=("x",))
            suppression.decide(cfg, st, d)
            assert d.group == group_of(cfg, c)
    assert any(group_of(a, c) != group_of(b, c) for c in ids)  # the salts do split differently
