"""Compile the JSON Schema files in this folder into fast validation functions.

The schema files are the single source of truth: nothing here restates a field,
a bound or an enum. We compile the subset of JSON Schema 2020-12 the contract
uses into plain closures because a generic validator costs tens of microseconds
per message, which the replay speed budget (a few microseconds per event)
cannot pay. A keyword outside the subset is a load-time error, so a schema file
can never silently ask for a check that is not made. The test suite checks the
compiled validators against the reference `jsonschema` implementation.

Must never: read the clock, import from `streams/`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

from schemas.errors import SchemaLoadError

Check = Callable[[Any, str], "str | None"]

#: Keywords that only annotate and need no check.
_ANNOTATIONS: Final = frozenset({"$schema", "$id", "title", "description", "$comment", "examples", "default"})
_SUPPORTED: Final = frozenset(
    {
        "type", "required", "properties", "additionalProperties", "const", "enum",
        "minLength", "maxLength", "minimum", "maximum", "pattern", "format", "items", "not",
    }
) | _ANNOTATIONS

# RFC 3339 date-time as JSON Schema's `date-time` format means it (RFC 3339 section 5.6):
# full-date "T" full-time with a mandatory offset (Z or +hh:mm), "T" and "Z" in either case
# (the RFC's note on case), ASCII digits only, any number of fraction digits. Not a space
# between date and time: the RFC's note allows one "for readability" in other grammars, but
# the ABNF and JSON Schema's date-time do not. No leap second (:60): a datetime cannot hold
# one, and neither does the reference format checker (jsonschema with rfc3339-validator).
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt]([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d+))?"
    r"(?:[Zz]|([+-])([01]\d|2[0-3]):([0-5]\d))",
    re.ASCII,
)
_EPOCH_DAY: Final = date(1970, 1, 1).toordinal()


def _rfc3339_parts(value: str) -> tuple[int, int, int, int, int, int] | None:
    """(days since 1970-01-01, hour, minute, second, microsecond, offset seconds), or None if not a date-time."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        return None
    try:
        day = date(int(m[1]), int(m[2]), int(m[3])).toordinal() - _EPOCH_DAY  # year 1.., a real day of the month
    except ValueError:
        return None
    frac = m[7]
    micro = int((frac + "00000")[:6]) if frac else 0  # digits beyond microseconds are cut, as datetime does
    offset = 0
    if m[8]:
        offset = (int(m[9]) * 3600 + int(m[10]) * 60) * (1 if m[8] == "+" else -1)
    return day, int(m[4]), int(m[5]), int(m[6]), micro, offset


def rfc3339_ms(value: str) -> int | None:
    """Epoch milliseconds (floored) of an RFC 3339 date-time with offset, or None if `value` is not one."""
    parts = _rfc3339_parts(value)
    if parts is None:
        return None
    day, hour, minute, second, micro, offset = parts
    seconds = ((day * 24 + hour) * 60 + minute) * 60 + second - offset
    return (seconds * 1_000_000 + micro) // 1000


def parse_rfc3339(value: str) -> datetime | None:
    """Return an aware datetime for an RFC 3339 date-time with offset, or None if it is not one."""
    parts = _rfc3339_parts(value)
    if parts is None:
        return None
    day, hour, minute, second, micro, offset = parts
    d = date.fromordinal(day + _EPOCH_DAY)
    return datetime(d.year, d.month, d.day, hour, minute, second, micro, tzinfo=timezone(timedelta(seconds=offset)))


def _shown(value: str, limit: int = 60) -> str:
    """A value for an error message: repr (control characters escaped), cut to `limit` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        return isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "null":
        return value is None
    raise SchemaLoadError(f"unknown JSON Schema type {name!r}")


def _json_equal(a: Any, b: Any) -> bool:
    # JSON Schema equality: 1 == 1.0 but True != 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def compile_schema(schema: dict[str, Any], where: str = "schema") -> Check:
    """Compile one schema (object) into a check returning an error message or None."""
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise SchemaLoadError(f"{where}: unsupported JSON Schema keyword(s) {sorted(unknown)}")
    checks: list[Check] = []

    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for n in names:
            _is_type(None, n)  # validates the name at load time

        def check_type(v: Any, path: str, names: list[str] = names) -> str | None:
            if any(_is_type(v, n) for n in names):
                return None
            return f"{path}: expected {' or '.join(names)}, got {type(v).__name__}"

        checks.append(check_type)
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v, p: None if _json_equal(v, const) else f"{p}: must be {const!r}")
    if "enum" in schema:
        options = list(schema["enum"])
        checks.append(
            lambda v, p: None
            if any(_json_equal(v, o) for o in options)
            else f"{p}: must be one of {options}"
        )
    if "minLength" in schema or "maxLength" in schema:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", math.inf)

        def check_len(v: Any, p: str) -> str | None:
            if isinstance(v, str) and not lo <= len(v) <= hi:
                return f"{p}: length {len(v)} outside [{lo}, {hi}]"
            return None

        checks.append(check_len)
    if "minimum" in schema or "maximum" in schema:
        lo_n, hi_n = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)

        def check_range(v: Any, p: str) -> str | None:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{p}: must be a finite number"
                if not lo_n <= v <= hi_n:
                    return f"{p}: {v} outside [{lo_n}, {hi_n}]"
            return None

        checks.append(check_range)
    if "pattern" in schema:
        rx = re.compile(schema["pattern"])
        checks.append(
            lambda v, p: f"{p}: does not match {rx.pattern}"
            if isinstance(v, str) and not rx.search(v)
            else None
        )
    if "format" in schema:
        if schema["format"] != "date-time":
            raise SchemaLoadError(f"{where}: unsupported format {schema['format']!r}")
        checks.append(
            lambda v, p: f"{p}: not an RFC 3339 date-time with offset: {_shown(v)}"
            if isinstance(v, str) and rfc3339_ms(v) is None
            else None
        )
    if "not" in schema:
        checks.append(_compile_not(schema["not"], where))
    if "items" in schema:
        item_check = compile_schema(schema["items"], f"{where}.items")

        def check_items(v: Any, p: str) -> str | None:
            if isinstance(v, list):
                for i, item in enumerate(v):
                    err = item_check(item, f"{p}[{i}]")
                    if err:
                        return err
            return None

        checks.append(check_items)
    if "required" in schema or "properties" in schema or "additionalProperties" in schema:
        checks.append(_compile_object(schema, where))

    def check_all(v: Any, p: str) -> str | None:
        for c in checks:
            err = c(v, p)
            if err:
                return err
        return None

    return check_all


def _compile_not(sub: Any, where: str) -> Check:
    """`not`: the value must fail `sub`. The message is `sub`'s description (what the value must not
    be, e.g. "contains a control character"), or the pattern it must not match."""
    if not isinstance(sub, dict):
        raise SchemaLoadError(f"{where}: `not` must be a schema object")
    inner = compile_schema(sub, f"{where}.not")
    said = sub.get("description") or (f"must not match {sub['pattern']}" if "pattern" in sub else
                                      "must not match the schema under `not`")

    def check_not(v: Any, p: str) -> str | None:
        if inner(v, p) is not None:
            return None
        return f"{p}: {_shown(v) if isinstance(v, str) else repr(v)} {said}"

    return check_not


def _compile_object(schema: dict[str, Any], where: str) -> Check:
    required = list(schema.get("required", []))
    props = {
        name: compile_schema(sub, f"{where}.{name}")
        for name, sub in schema.get("properties", {}).items()
    }
    extra = schema.get("additionalProperties", True)
    extra_check: Check | None = None
    if isinstance(extra, dict):
        extra_check = compile_schema(extra, f"{where}.*")
    elif extra is not True and extra is not False:
        raise SchemaLoadError(f"{where}: additionalProperties must be a bool or a schema")

    def check_object(v: Any, p: str) -> str | None:
        if not isinstance(v, dict):
            return None
        for name in required:
            if name not in v:
                return f"{p}: missing required field {name!r}"
        for name, value in v.items():
            sub = props.get(name)
            if sub is not None:
                err = sub(value, f"{p}.{name}")
            elif extra is False:
                err = f"{p}: unexpected field {name!r}"
            elif extra_check is not None:
                err = extra_check(value, f"{p}.{name}")
            else:
                err = None
            if err:
                return err
        return None

    return check_object
