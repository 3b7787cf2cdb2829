"""The generated accept path never accepts what the reference validator rejects, and agrees on event time.

It runs in two forms, both held to the reference here: the generator's functions
(scripts/checkgen.py) run as interpreted code, and the checked-in
module written from the same source that the core compiles
(schemas/checks_generated.py), called by type or through its dispatch.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, EventDecoder, checks_generated, load_schema
from schemas.decode import SCHEMA_DIR, StaleChecks, check_generated_fresh, generated_checks_current, to_epoch_ms
from schemas.fastpath import REGENERATE, fast_epoch_ms, schema_digest
from schemas.validator import compile_schema
from scripts.checkgen import compile_event_check, generate_module
from streams.dev.samples import SampleGenerator

REFERENCE = {t: compile_schema(load_schema(f), f) for t, f in EVENT_TYPES.items()}
ACCEPT_PATHS: dict[str, dict[str, Any]] = {
    "interpreted": {t: compile_event_check(load_schema(f)) for t, f in EVENT_TYPES.items()},
    "generated": dict(checks_generated.CHECKS),
    "dispatch": {t: (lambda v, t=t: checks_generated.check_event(t, v)) for t in EVENT_TYPES},
}


def _accept(type_: str, obj: dict[str, Any]) -> int | None:
    """The accept path's answer, the same in every form."""
    answers = {form: checks[type_](obj) for form, checks in ACCEPT_PATHS.items()}
    assert len(set(answers.values())) == 1, answers
    return answers["generated"]
SAMPLES = SampleGenerator(seed=2, customers=20).history(1_790_000_000_000, days=60)
SAMPLES.append({"event_id": "c1", "type": "consent", "customer_id": "c", "occurred_at": "2026-01-01T00:00:00Z",
                "channel": "email", "granted": True})

ODD_VALUES: list[Any] = [None, True, False, 0, 1, -1, 5, 6, 2.5, 1e10, float("inf"), float("nan"), "", "x" * 129, "x",
              "EUR", "eur", "order", "delivered", "email", [], {}, ["a"], "2026-01-01T00:00:00Z",
              "2026-01-01T00:00:00.1234567Z", "2026-13-01T00:00:00Z", "2026-01-01t00:00:00z",
              "2026-01-01T00:00:00+02:00", "2026-02-30T00:00:00.000Z", "٢٠٢٦-01-01T00:00:00Z",
              "c\n", "c\x1b[2J", "\x00", "c\x7f", "c\x9b", "c\u00a0", "c\u200b", "Zoë", "2026-01-01T00:00:00Z\n"]


def test_every_event_schema_has_an_accept_path_and_it_accepts_the_samples():
    for checks in ACCEPT_PATHS.values():
        assert set(checks) == set(EVENT_TYPES)
        assert all(fast is not None for fast in checks.values())
    for e in SAMPLES:
        assert REFERENCE[e["type"]](e, "$") is None
        assert _accept(e["type"], e) == to_epoch_ms(e["occurred_at"])  # used for every realistic event


def test_the_checked_in_generated_module_is_what_the_schema_files_give_now():
    text = generate_module({t: (f, load_schema(f)) for t, f in EVENT_TYPES.items()})
    on_disk = (SCHEMA_DIR / "checks_generated.py").read_text(encoding="utf-8")
    assert on_disk == text, f"schemas/checks_generated.py is out of date: run `{REGENERATE}`, then `make core`"
    assert generated_checks_current()
    check_generated_fresh()
    EventDecoder()


def test_a_stale_generated_module_stops_the_decoder_and_every_command_with_the_fix(capsys):
    with pytest.raises(StaleChecks, match=r"run `make checks` and then `make core`"):
        check_generated_fresh("0" * 64)
    # Every command runs the same check before anything else, and reports it as one line.
    import streams.cli

    cli: Any = streams.cli
    original = cli.check_generated_fresh
    cli.check_generated_fresh = lambda: original("0" * 64)
    try:
        assert cli.main(["replay", "no-such-file.jsonl"]) == 2
    finally:
        cli.check_generated_fresh = original
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["churn-signals replay: error: schemas/checks_generated.py was written from other event "
                   "schema files: run `make checks` and then `make core`"]


def test_an_edited_schema_no_longer_matches_the_generated_module():
    schemas = {t: load_schema(f) for t, f in EVENT_TYPES.items()}
    assert schema_digest(schemas) == checks_generated.SCHEMA_DIGEST
    edited = {**schemas, "order": {**schemas["order"], "required": [*schemas["order"]["required"], "currency"]}}
    assert schema_digest(edited) != checks_generated.SCHEMA_DIGEST


def test_the_dispatch_has_no_accept_path_for_other_types():
    assert checks_generated.check_event("refund", dict(SAMPLES[0], type="refund")) is None
    assert checks_generated.check_event("", SAMPLES[0]) is None


@settings(max_examples=3000, deadline=None)
@given(base=st.sampled_from(SAMPLES), field=st.sampled_from(
    ["event_id", "type", "customer_id", "occurred_at", "order_id", "category", "amount", "currency", "status",
     "promised_at", "delivered_at", "rating", "courier_id", "comment", "channel", "granted", "extra"]),
    value=st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=40), st.integers(-10, 10**10),
                    st.floats(allow_nan=True, allow_infinity=True)),
    drop=st.booleans())
def test_accept_path_never_accepts_what_the_reference_rejects(base, field, value, drop):
    obj: dict[str, Any] = dict(base)
    if drop:
        obj.pop(field, None)
    else:
        obj[field] = value
    ts = _accept(base["type"], obj)
    if ts is not None:
        assert REFERENCE[base["type"]](obj, "$") is None
        assert ts == to_epoch_ms(obj["occurred_at"])


@pytest.mark.parametrize("value", ODD_VALUES)
def test_fast_event_time_is_the_reference_event_time_or_none(value):
    ms = fast_epoch_ms(value)
    if ms is not None:
        assert ms == to_epoch_ms(value)


def _fromiso_reference(value: str) -> int | None:
    """What the accept path read before it parsed digits itself: fromisoformat of a canonical string."""
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z", value) is None:
        return None
    try:
        return (datetime.fromisoformat(value) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    except ValueError:
        return None


@settings(max_examples=5000, deadline=None)
@given(year=st.integers(0, 9999), month=st.integers(0, 13), day=st.integers(0, 32), hour=st.integers(0, 25),
       minute=st.integers(0, 61), second=st.integers(0, 61), fraction=st.text("0123456789", max_size=8),
       dot=st.booleans(), tail=st.sampled_from(["Z", "z", "", "+00:00", "ZZ"]))
def test_fast_event_time_reads_digits_as_fromisoformat_does(year, month, day, hour, minute, second, fraction,
                                                            dot, tail):
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    text += ("." if dot else "") + fraction + tail
    assert fast_epoch_ms(text) == _fromiso_reference(text)


@settings(max_examples=3000, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)), st.integers(0, 6))
def test_fast_event_time_of_valid_canonical_times(dt, digits):
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}"[: digits + 1] if digits else "") + "Z"
    if dt.year < 1000:
        text = f"{dt.year:04d}" + text[text.index("-"):]
    assert fast_epoch_ms(text) == _fromiso_reference(text)
    assert fast_epoch_ms(text.replace("T", "t")) is None
    assert fast_epoch_ms(text.replace("-", "\u0662", 1)) is None
