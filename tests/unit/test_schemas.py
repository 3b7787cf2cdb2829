"""The compiled validators agree with the reference JSON Schema implementation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, EventDecoder, InvalidEvent, load_schema, schema_path
from schemas.validator import compile_schema, rfc3339_ms

VALID: list[dict[str, Any]] = [
    {"event_id": "e1", "type": "order", "customer_id": "c1", "occurred_at": "2026-01-02T03:04:05Z",
     "order_id": "o1", "category": "grocery", "amount": 12.5, "currency": "EUR"},
    {"event_id": "e2", "type": "order", "customer_id": "c1", "occurred_at": "2026-01-02T03:04:05.123456+02:00",
     "order_id": "o1", "category": "home", "amount": 0},
    {"event_id": "e3", "type": "delivery", "customer_id": "c1", "occurred_at": "2026-01-02T03:04:05Z",
     "order_id": "o1", "status": "failed"},
    {"event_id": "e4", "type": "delivery", "customer_id": "c1", "occurred_at": "2026-01-02T03:04:05Z",
     "order_id": "o1", "status": "delivered", "promised_at": "2026-01-02T03:00:00Z",
     "delivered_at": "2026-01-02T04:00:00-01:00"},
    {"event_id": "e5", "type": "courier_rating", "customer_id": "c1", "occurred_at": "2026-01-02T03:04:05Z",
     "order_id": "o1", "rating": 1, "courier_id": "k", "comment": "late again"},
    {"event_id": "e6", "type": "consent", "customer_id": "c1", "occurred_at": "2026-01-02T03:04:05Z",
     "channel": "all", "granted": False},
    {"event_id": "e8", "type": "courier_rating", "customer_id": "Zoë\u00a0K\u200b",
     "occurred_at": "2026-01-02T03:04:05Z", "order_id": "o1", "rating": 3, "courier_id": "",
     "comment": "line one\nline two\u001b"},
    {"event_id": "e7", "type": "consent", "customer_id": "c1", "occurred_at": "2026-01-02t03:04:05.1234567891z",
     "channel": "sms", "granted": True},
]

INVALID: list[tuple[dict[str, Any], str]] = [
    ({**VALID[0], "amount": -1}, "negative amount"),
    ({**VALID[0], "amount": "12"}, "amount as string"),
    ({**VALID[0], "occurred_at": "2026-01-02T03:04:05"}, "timestamp without offset"),
    ({**VALID[0], "occurred_at": "yesterday"}, "not a timestamp"),
    ({**VALID[0], "occurred_at": "2026-01-05 00:00:00Z"}, "space instead of T"),
    ({**VALID[0], "occurred_at": "2026-12-31T23:59:60Z"}, "leap second"),
    ({**VALID[0], "occurred_at": "2026-01-05T24:00:00Z"}, "hour 24"),
    ({**VALID[0], "occurred_at": "2026-01-05T00:00:00+24:00"}, "offset of 24 hours"),
    ({**VALID[0], "occurred_at": "2026-02-29T00:00:00Z"}, "no such day"),
    ({**VALID[0], "occurred_at": "0000-01-01T00:00:00Z"}, "year zero"),
    ({**VALID[0], "occurred_at": "٢٠٢٦-01-05T00:00:00Z"}, "non-ASCII digits"),
    ({**VALID[3], "promised_at": "2026-01-02T03:00Z"}, "promised_at without seconds"),
    ({**VALID[0], "customer_id": "c1\u001b[2J"}, "escape sequence in customer_id"),
    ({**VALID[0], "event_id": "e1\n"}, "trailing newline in event_id"),
    ({**VALID[0], "order_id": "o\u0000"}, "NUL in order_id"),
    ({**VALID[0], "category": "groc\u007fery"}, "DEL in category"),
    ({**VALID[4], "courier_id": "k\u009b31m"}, "C1 control in courier_id"),
    ({**VALID[5], "customer_id": "\r"}, "carriage return as customer_id"),
    ({k: v for k, v in VALID[0].items() if k != "category"}, "missing category"),
    ({**VALID[0], "currency": "euro"}, "bad currency code"),
    ({**VALID[0], "customer_id": ""}, "empty customer id"),
    ({**VALID[2], "status": "lost"}, "unknown delivery status"),
    ({**VALID[4], "rating": 6}, "rating above 5"),
    ({**VALID[4], "rating": 0}, "rating below 1"),
    ({**VALID[4], "rating": 2.5}, "fractional rating"),
    ({**VALID[4], "rating": True}, "boolean rating"),
    ({**VALID[5], "granted": "yes"}, "granted as string"),
    ({**VALID[5], "channel": "E-Mail"}, "channel name with capitals"),
    ({**VALID[5], "channel": ""}, "empty channel name"),
    ({**VALID[5], "channel": "sms\u001b"}, "control character in channel"),
]


def _reference(doc: dict[str, Any]) -> bool:
    schema = load_schema(EVENT_TYPES[doc["type"]])
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS).is_valid(doc)


#: jsonschema checks `date-time` only with rfc3339-validator installed (the dev extra has it);
#: without it the format is an annotation and every differential test here would pass blind.
FORMATS = jsonschema.FormatChecker()


def test_the_reference_validator_really_checks_date_times():
    assert "date-time" in FORMATS.checkers
    assert not FORMATS.conforms("2026-01-05 00:00:00Z", "date-time")
    assert FORMATS.conforms("2026-01-05T00:00:00Z", "date-time")


@pytest.mark.parametrize("doc", VALID, ids=lambda d: d["event_id"])
def test_valid_events_pass_both_validators(doc):
    assert _reference(doc)
    ev = EventDecoder().decode(orjson.dumps(doc))
    assert (ev.event_id, ev.type, ev.customer_id) == (doc["event_id"], doc["type"], doc["customer_id"])


@pytest.mark.parametrize(("doc", "why"), INVALID, ids=[w for _, w in INVALID])
def test_invalid_events_fail_both_validators(doc, why):
    with pytest.raises(InvalidEvent) as info:
        EventDecoder().decode(orjson.dumps(doc))
    assert info.value.reason == "schema"
    assert not _reference(doc)


def test_a_control_character_in_an_id_is_named_and_shown_escaped():
    with pytest.raises(InvalidEvent) as info:
        EventDecoder().decode(orjson.dumps({**VALID[0], "customer_id": "c1\u001b[2J"}))
    assert info.value.reason == "schema"
    assert str(info.value) == ("$.customer_id: 'c1\\x1b[2J' contains a control character "
                               "(U+0000-U+001F, U+007F-U+009F)")
    assert str(info.value).isprintable()


def test_occurred_at_becomes_exact_epoch_milliseconds():
    ev = EventDecoder().decode(orjson.dumps({**VALID[1]}))
    assert ev.ts == 1767315845123  # 2026-01-02T01:04:05.123Z


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"NaN", "malformed_json"),
        (b'"a string"', "not_an_object"),
        (b'{"type": "refund", "event_id": "x"}', "unknown_type"),
        (b"{}", "unknown_type"),
        (b"[" * 5000 + b"]" * 5000, "malformed_json"),
    ],
)
def test_undecodable_messages_get_a_reason(raw, reason):
    with pytest.raises(InvalidEvent) as info:
        EventDecoder().decode(raw)
    assert info.value.reason == reason


def test_future_and_ancient_times_are_rejected_with_now_passed_in():
    dec = EventDecoder(max_future_skew_ms=60_000)
    ev = VALID[0]
    now = 1767323045000  # 2026-01-02T03:04:05Z
    assert dec.decode(orjson.dumps(ev), now_ms=now).ts == now
    with pytest.raises(InvalidEvent) as info:
        dec.decode(orjson.dumps(ev), now_ms=now - 61_000)
    assert info.value.reason == "future_time"
    with pytest.raises(InvalidEvent) as info:
        dec.decode(orjson.dumps({**ev, "occurred_at": "1985-01-01T00:00:00Z"}))
    assert info.value.reason == "ancient_time"


@pytest.mark.parametrize(("field", "value", "plausible"), [
    ("promised_at", "2099-01-01T00:00:00Z", False),        # 73 years after: "38 million minutes late"
    ("delivered_at", "2099-01-01T00:00:00Z", False),
    ("promised_at", "1990-06-01T00:00:00Z", False),        # decades before
    ("delivered_at", "2026-02-01T03:04:05Z", True),        # 30 days after occurred_at: the bound itself
    ("delivered_at", "2026-02-01T03:04:05.001Z", False),   # a millisecond past it
    ("promised_at", "2025-12-03T03:04:05Z", True),         # 30 days before
    ("promised_at", "2025-12-03T03:04:04.999+00:00", False),
])
def test_delivery_times_far_from_the_event_time_are_implausible(field, value, plausible):
    doc = {**VALID[3], field: value}  # occurred_at 2026-01-02T03:04:05Z
    assert _reference(doc)  # the schema has no say in it: a semantic check
    if plausible:
        assert EventDecoder().decode(orjson.dumps(doc)).ts == 1767323045000
        return
    with pytest.raises(InvalidEvent) as info:
        EventDecoder().decode(orjson.dumps(doc))
    assert (info.value.reason, info.value.stage) == ("implausible_time", "semantic")
    assert str(info.value).startswith(f"{field} {value} is ")
    assert "max_delivery_offset" in str(info.value)


def test_the_delivery_time_bound_is_a_setting_of_the_decoder():
    doc = {**VALID[3], "delivered_at": "2026-01-04T03:04:05Z"}  # two days after occurred_at
    assert EventDecoder().decode(orjson.dumps(doc))
    with pytest.raises(InvalidEvent) as info:
        EventDecoder(max_delivery_offset_ms=86_400_000).decode(orjson.dumps(doc))
    assert info.value.reason == "implausible_time"
    assert "at most 1 days" in str(info.value)


def test_the_playbooks_channels_are_known_viber_and_messengers_included():
    for channel in ("email", "sms", "push", "viber", "messenger", "all"):
        ev = EventDecoder().decode(orjson.dumps({**VALID[5], "channel": channel}))
        assert ev.data["channel"] == channel


def test_a_consent_event_for_a_channel_not_configured_is_invalid_with_a_reason():
    doc = {**VALID[5], "channel": "fax"}
    assert _reference(doc)  # a channel name the schema accepts: which names are known is configuration
    with pytest.raises(InvalidEvent) as info:
        EventDecoder().decode(orjson.dumps(doc))
    assert (info.value.reason, info.value.stage) == ("unknown_channel", "semantic")
    assert str(info.value) == ("consent channel 'fax' is not configured: expected one of email, sms, push, "
                               "viber, messenger or all (detector setting `channels`)")
    dec = EventDecoder(channels=("email", "fax"))
    assert dec.decode(orjson.dumps(doc)).data["channel"] == "fax"
    with pytest.raises(InvalidEvent, match="'viber' is not configured"):
        dec.decode(orjson.dumps({**doc, "channel": "viber"}))


def test_the_channel_name_pattern_is_the_consent_schemas():
    from schemas.decode import CHANNEL_NAME

    assert load_schema("consent-v1.json")["properties"]["channel"]["pattern"] == CHANNEL_NAME
    assert load_schema("trigger-v1.json")["properties"]["channels"]["items"]["pattern"] == CHANNEL_NAME


def test_oversized_messages_are_rejected_before_parsing():
    dec = EventDecoder(max_message_bytes=100)
    with pytest.raises(InvalidEvent) as info:
        dec.decode(b"x" * 101)
    assert info.value.reason == "too_large"


def test_every_schema_file_is_valid_2020_12_and_compiles():
    for path in sorted(schema_path("").glob("*.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        compile_schema(schema, path.name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _pick(options: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(options)


#: Strings shaped like date-times, right and wrong in each part.
date_times = st.builds(
    lambda *parts: "".join(parts),
    _pick(["2026", "1970", "0001", "9999", "0000", "202", "٢٠٢٦", "+2026"]), _pick(["-"]),
    _pick(["01", "02", "12", "00", "13", "1"]), _pick(["-"]), _pick(["01", "28", "29", "30", "31", "32", "00"]),
    _pick(["T", "t", " ", "_", ""]), _pick(["00", "09", "23", "24", "7"]), _pick([":"]), _pick(["00", "59", "60"]),
    _pick([":", ""]), _pick(["00", "59", "60", "5"]), _pick(["", ".1", ".123456", ".1234567890", ".", ".x"]),
    _pick(["Z", "z", "+00:00", "-23:59", "+24:00", "+05:60", "+0500", "", "Z\n", " Z"]),
)


@settings(max_examples=500, deadline=None)
@given(base=st.sampled_from(VALID), field=st.sampled_from(
    ["amount", "rating", "status", "channel", "granted", "category", "currency", "order_id", "comment", "x",
     "event_id", "customer_id", "courier_id", "occurred_at", "promised_at", "delivered_at"]),
    value=st.one_of(json_values, date_times, st.text(max_size=8)))
def test_compiled_validator_agrees_with_reference_on_mutations(base, field, value):
    doc = {**base, field: value}
    schema = load_schema(EVENT_TYPES[doc["type"]])
    ours = compile_schema(schema)(doc, "$") is None
    if isinstance(value, str) and value.endswith("\n") and field.endswith("_at"):
        return  # the reference's one known slip: test_a_trailing_newline_is_not_a_date_time
    assert ours == jsonschema.Draft202012Validator(schema, format_checker=FORMATS).is_valid(doc), doc


@settings(max_examples=500, deadline=None)
@given(value=date_times)
def test_date_times_are_what_the_reference_format_checker_accepts_at_the_instant_datetime_reads(value):
    ms = rfc3339_ms(value)
    if value.endswith("\n"):
        assert ms is None
        return
    assert (ms is not None) == FORMATS.conforms(value, "date-time"), value
    if ms is not None:
        text = value.upper().replace("Z", "+00:00")
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        assert ms == (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_a_trailing_newline_is_not_a_date_time():
    # rfc3339-validator anchors with `$`, which Python lets match before a final newline, so
    # the reference takes "...Z\n"; RFC 3339 does not, and neither does the contract here.
    value = "2026-01-05T00:00:00Z\n"
    assert FORMATS.conforms(value, "date-time")
    assert rfc3339_ms(value) is None
    with pytest.raises(InvalidEvent):
        EventDecoder().decode(orjson.dumps({**VALID[0], "occurred_at": value}))
