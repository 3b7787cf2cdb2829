"""Turn raw message bytes into a validated `Event`, or raise `InvalidEvent`.

One function serves the live worker, `replay` and the tests, so a message is
judged the same way everywhere. Checks, in order (the `reason` is a bounded code
used as a metric label and a DLQ header):

    too_large       message larger than the configured cap
    malformed_json  not UTF-8 JSON (NaN and Infinity are not JSON)
    not_an_object   valid JSON but not an object
    unknown_type    `type` missing or not one of the known event types
    schema          violates the type's JSON Schema file
    future_time     occurred_at later than `now` plus the allowed clock skew
    ancient_time    occurred_at before the configured earliest plausible time
    implausible_time  a delivery's promised_at or delivered_at further from its
                    occurred_at than the configured bound (max_delivery_offset)
    unknown_channel a consent event's channel is neither one of the configured
                    channels nor `all`

The consent schema accepts any channel *name* (a pattern), and the decoder checks
it against the configured list: which channels a business uses is configuration
(the detector setting `channels`), not a new version of the contract.

Must never: read the clock (`now_ms` is passed in), import from `streams/`.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson

from schemas import checks_generated
from schemas.errors import ChurnSignalsError, InvalidEvent, SchemaLoadError
from schemas.fastpath import REGENERATE, fast_epoch_ms, schema_digest
from schemas.validator import Check, compile_schema, rfc3339_ms

#: The package's directory, from the package spec (schemas/__init__.py): the compiled core's
#: modules do not carry a reliable __file__ of their own (make core, scripts/build_core.py).
SCHEMA_DIR: Final = Path(str(importlib.resources.files("schemas")))

#: Input event types and the schema file that defines each.
EVENT_TYPES: Final[dict[str, str]] = {
    "order": "order-v1.json",
    "delivery": "delivery-v1.json",
    "courier_rating": "courier_rating-v1.json",
    "consent": "consent-v1.json",
}

#: Contact channels known unless the detector setting `channels` says otherwise: the playbooks'
#: mix, "e-mail + Viber/SMS + web push", and messengers.
DEFAULT_CHANNELS: Final = ("email", "sms", "push", "viber", "messenger")
#: The channel of a consent event that speaks for every channel, configured or not.
ALL_CHANNELS: Final = "all"
#: What a channel name looks like: `channel.pattern` of consent-v1.json (a test keeps the two equal).
CHANNEL_NAME: Final = "^[a-z][a-z0-9_-]{0,31}$"

DAY_MS: Final = 86_400_000
#: A UTF-8 byte-order mark. Editors and spreadsheet exports put one at the start of a
#: file; it is no JSON (RFC 8259 lets a parser ignore it), so file readers skip it there.
UTF8_BOM: Final = b"\xef\xbb\xbf"
#: How far a delivery's promised_at and delivered_at may lie from its occurred_at (either way).
#: A month covers any real promise or hand-over (scheduled deliveries included); a value
#: beyond it is a broken producer, and believing it made a 2099 hand-over 38 million
#: minutes late.
MAX_DELIVERY_OFFSET_MS: Final = 30 * DAY_MS

#: Bound once: a compiled module reads `module.function` from the module's dict on every call.
_loads: Final = orjson.loads


def schema_path(name: str) -> Path:
    """Path of a schema file shipped in this package."""
    return SCHEMA_DIR / name


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load one schema file; a missing or broken file is a SchemaLoadError."""
    path = schema_path(name)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaLoadError(f"cannot load schema {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SchemaLoadError(f"schema {path} is not a JSON object")
    return loaded


def to_epoch_ms(value: str) -> int:
    """Epoch milliseconds of an RFC 3339 string already checked by the schema."""
    ms = fast_epoch_ms(value)  # the canonical ...Z form, without the general parser
    if ms is not None:
        return ms
    ms = rfc3339_ms(value)
    if ms is None:  # pragma: no cover - the schema check runs first
        raise InvalidEvent("schema", f"not an RFC 3339 date-time: {value!r}")
    return ms


@cache
def generated_checks_current() -> bool:
    """True when schemas/checks_generated.py was written from the event schema files as they are now."""
    return schema_digest({t: load_schema(f) for t, f in EVENT_TYPES.items()}) == checks_generated.SCHEMA_DIGEST


class StaleChecks(ChurnSignalsError):
    """schemas/checks_generated.py was generated from other event schema files than the ones installed."""


def check_generated_fresh(made_from: str | None = None) -> None:
    """Raise StaleChecks when an event schema file changed after schemas/checks_generated.py was written.

    Checks generated from older schemas would vouch for events the schema files now reject (or
    the reverse), so every command stops here with the fix, as it does for a stale compiled core.
    `made_from` stands for the generated module's SCHEMA_DIGEST (the tests pass another one).
    """
    if made_from is None:
        fresh = generated_checks_current()
    else:
        fresh = schema_digest({t: load_schema(f) for t, f in EVENT_TYPES.items()}) == made_from
    if not fresh:
        raise StaleChecks(f"schemas/checks_generated.py was written from other event schema files: "
                          f"run `{REGENERATE}` and then `make core`")


#: Where a shell read an event: (source, line or offset, partition or None, raw bytes).
Origin = tuple[str, int, "int | None", bytes]


class Event:
    """A validated input event. `ts` is occurred_at in epoch milliseconds.

    `origin` is set by a reader that may have to reject the event after decoding (a
    re-used event_id found by the core), so the reject keeps the raw bytes and where
    they were; the core never reads it.
    """

    __slots__ = ("customer_id", "data", "event_id", "origin", "ts", "type")

    def __init__(self, event_id: str, type_: str, customer_id: str, ts: int, data: dict[str, Any]):
        self.event_id = event_id
        self.type = type_
        self.customer_id = customer_id
        self.ts = ts
        self.data = data
        self.origin: Origin | None = None

    def __repr__(self) -> str:
        return f"Event({self.type} {self.event_id} customer={self.customer_id} ts={self.ts})"


class EventDecoder:
    """Decoder configured with the plausibility limits of the deployment."""

    def __init__(
        self,
        *,
        max_future_skew_ms: int = 5 * 60_000,
        earliest_ms: int = 631_152_000_000,  # 1990-01-01T00:00:00Z
        max_message_bytes: int = 1_048_576,
        max_delivery_offset_ms: int = MAX_DELIVERY_OFFSET_MS,
        channels: tuple[str, ...] = DEFAULT_CHANNELS,
    ) -> None:
        self.max_future_skew_ms = max_future_skew_ms
        self.earliest_ms = earliest_ms
        self.max_message_bytes = max_message_bytes
        self.max_delivery_offset_ms = max_delivery_offset_ms
        #: The configured contact channels (DetectorConfig.channels): a consent event names one or `all`.
        self.channels = tuple(channels)
        self._consent_channels = frozenset((*self.channels, ALL_CHANNELS))
        self._checks: dict[str, Check] = {
            t: compile_schema(load_schema(f), f) for t, f in EVENT_TYPES.items()
        }
        # Certainly-valid events skip the reference checks: the generated accept path
        # (schemas/checks_generated.py, compiled with the core), only while it matches the schema files.
        check_generated_fresh()

    def decode(self, raw: bytes | str, now_ms: int | None = None) -> Event:
        """Validate one message. `now_ms` enables the future-time check (live only)."""
        if len(raw) > self.max_message_bytes:
            raise InvalidEvent(
                "too_large", f"message of {len(raw)} bytes exceeds {self.max_message_bytes}", "decode"
            )
        try:
            obj = _loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("malformed_json", f"malformed JSON: {exc}", "decode") from None
        return self.validate(obj, now_ms)

    def validate(self, obj: Any, now_ms: int | None = None) -> Event:
        """Validate an already parsed JSON value."""
        if type(obj) is dict:
            type_ = obj.get("type")
            ts: int | None = None
            if isinstance(type_, str):
                ts = checks_generated.check_event(type_, obj)  # a native call, not one through the dict
            if (ts is not None and ts >= self.earliest_ms and (now_ms is None or ts <= now_ms + self.max_future_skew_ms)
                    and (type_ != "delivery" or self._delivery_times_near(obj, ts))
                    and (type_ != "consent" or obj["channel"] in self._consent_channels)):
                return Event(obj["event_id"], str(type_), obj["customer_id"], ts, obj)
        if not isinstance(obj, dict):
            raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
        type_ = obj.get("type")
        check = self._checks.get(type_) if isinstance(type_, str) else None
        if check is None:
            raise InvalidEvent(
                "unknown_type", f"unknown event type {type_!r}; expected one of {sorted(EVENT_TYPES)}"
            )
        err = check(obj, "$")
        if err:
            raise InvalidEvent("schema", err)
        ts = to_epoch_ms(obj["occurred_at"])
        if now_ms is not None and ts > now_ms + self.max_future_skew_ms:
            raise InvalidEvent(
                "future_time",
                f"occurred_at {obj['occurred_at']} is more than {self.max_future_skew_ms // 1000}s in the future",
                "semantic",
            )
        if ts < self.earliest_ms:
            raise InvalidEvent("ancient_time", f"occurred_at {obj['occurred_at']} is implausibly old", "semantic")
        if type_ == "delivery":
            why = self._implausible_time(obj, ts)
            if why is not None:
                raise InvalidEvent("implausible_time", why, "semantic")
        if type_ == "consent" and obj["channel"] not in self._consent_channels:
            raise InvalidEvent(
                "unknown_channel",
                f"consent channel {obj['channel']!r} is not configured: expected one of "
                f"{', '.join(self.channels)} or {ALL_CHANNELS} (detector setting `channels`)",
                "semantic",
            )
        return Event(obj["event_id"], str(type_), obj["customer_id"], ts, obj)

    def _delivery_times_near(self, obj: dict[str, Any], ts: int) -> bool:
        """Whether a (schema-valid) delivery's promised_at and delivered_at lie within the bound of `ts`.

        Written out for the two fields, no loop: it runs for every delivery (~40% of events).
        """
        bound = self.max_delivery_offset_ms
        promised = obj.get("promised_at")
        if promised is not None and abs(to_epoch_ms(promised) - ts) > bound:
            return False
        delivered = obj.get("delivered_at")
        return delivered is None or abs(to_epoch_ms(delivered) - ts) <= bound

    def _implausible_time(self, obj: dict[str, Any], ts: int) -> str | None:
        """Why a delivery's promised_at or delivered_at cannot be believed, or None (the schema check ran)."""
        bound = self.max_delivery_offset_ms
        for name in ("promised_at", "delivered_at"):
            value = obj.get(name)
            if value is None:
                continue
            off = to_epoch_ms(value) - ts
            if abs(off) > bound:
                return (f"{name} {value} is {abs(off) / DAY_MS:,.1f} days {'after' if off > 0 else 'before'} "
                        f"occurred_at {obj['occurred_at']}; at most {bound / DAY_MS:g} days are plausible "
                        "(max_delivery_offset)")
        return None
