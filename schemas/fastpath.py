"""A generated accept path for the event schemas: one flat function per schema file.

The closures in validator.py are the reference: they give the error message
and they decide every case this module is not sure about. What is generated
here only says "certainly valid": for each event schema, one Python function
(built from the schema file with `exec`, so nothing restates a field or a
bound) checks every property inline and returns the event time in epoch
milliseconds, or None when it cannot vouch for the object. None sends the
caller to the reference check, so the generated code may be conservative
(exact `type(x) is str`, the canonical `...Z` date-time form only) but must
never accept what the reference rejects; the tests hold it to that on
generated and hand-made objects.

Why: the generic closures cost ~20 µs per event; the replay budget is 5 µs
for everything (bench/replay_bench.py).

Must never: read the clock, import from `streams/` or `detectors/`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

EventCheck = Callable[[dict[str, Any]], "int | None"]

#: Date-times the fast path reads itself: 'Z' offset, upper-case 'T', at most microseconds,
#: ASCII digits only (a strict subset of what validator._RFC3339 matches). Anything else an
#: RFC 3339 parser accepts goes to the reference path.

def _digit(s: str, i: int) -> int:
    """The ASCII digit at s[i] as 0..9, or -1 (any other character; ord(s[i]) compiles to a C read)."""
    c = ord(s[i]) - 48
    return c if 0 <= c <= 9 else -1


def _two(s: str, i: int) -> int:
    a = _digit(s, i)
    b = _digit(s, i + 1)
    return -1 if a < 0 or b < 0 else a * 10 + b


def fast_epoch_ms(value: Any) -> int | None:
    """Epoch ms of a canonical RFC 3339 UTC string (as schemas.decode.to_epoch_ms), or None if not canonical.

    Canonical: `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` with ASCII digits, read digit by digit and
    checked as `datetime.fromisoformat` checks it (year 1.., real month and day, hour
    0..23, second 0..59), so the result equals `(fromisoformat(value) - epoch) // 1 ms`
    without building a datetime (tests/unit/test_fastpath.py holds the two together).
    Anything else is None: the reference path decides it.
    """
    if type(value) is not str:
        return None
    s: str = value
    n = len(s)
    if n != 20 and not 22 <= n <= 27:
        return None
    if (ord(s[4]) != 45 or ord(s[7]) != 45 or ord(s[10]) != 84 or ord(s[13]) != 58 or ord(s[16]) != 58
            or ord(s[n - 1]) != 90):  # '-', '-', 'T', ':', ':' and the final 'Z'
        return None
    hi = _two(s, 0)
    lo = _two(s, 2)
    month = _two(s, 5)
    day = _two(s, 8)
    hour = _two(s, 11)
    minute = _two(s, 14)
    second = _two(s, 17)
    if hi < 0 or lo < 0 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23:
        return None
    if minute < 0 or minute > 59 or second < 0 or second > 59:
        return None
    year = hi * 100 + lo
    if month == 2:
        last = 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    else:
        last = 30 + ((month + (month >> 3)) & 1)  # 31 for 1, 3, 5, 7, 8, 10, 12
    if year < 1 or day > last:
        return None
    micro = 0
    if n > 20:
        if ord(s[19]) != 46:  # '.'
            return None
        for i in range(20, 26):  # up to six digits, read as microseconds
            d = 0
            if i < n - 1:
                d = _digit(s, i)
                if d < 0:
                    return None
            micro = micro * 10 + d
    # Days since 1970-01-01 of the proleptic Gregorian date (what datetime counts), by the
    # table-free civil-to-days rule (H. Hinnant, "chrono-compatible low-level date algorithms").
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + 9 if month <= 2 else month - 3) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + micro // 1000


def fast_datetime_ok(value: Any) -> bool:
    """True only if `value` is a canonical RFC 3339 UTC string the reference check accepts."""
    return fast_epoch_ms(value) is not None


class _Gen:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {"_dt": fast_datetime_ok, "_ms": fast_epoch_ms, "_isfinite": math.isfinite,
                                       "_M": object()}
        self.lines: list[str] = []

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name


def _value_test(g: _Gen, sub: dict[str, Any], x: str) -> str | None:
    """A Python expression true only if `x` certainly passes `sub`; None if the subset is exceeded."""
    allowed = {"type", "const", "enum", "minLength", "maxLength", "minimum", "maximum", "pattern", "format",
               "description", "title", "$comment", "examples", "default"}
    if set(sub) - allowed:
        return None
    tests: list[str] = []
    kind = sub.get("type")
    if isinstance(kind, list):
        return None
    # String keywords need a str; said once when the type already says it (~2% of replay time).
    is_str = "" if kind == "string" else f"type({x}) is str and "
    if kind == "string":
        tests.append(f"type({x}) is str")
    elif kind == "integer":
        tests.append(f"type({x}) is int")
    elif kind == "number":
        tests.append(f"(type({x}) is int or (type({x}) is float and _isfinite({x})))")
    elif kind == "boolean":
        tests.append(f"type({x}) is bool")
    elif kind is not None:
        return None
    if "const" in sub:
        c = sub["const"]
        if type(c) is not str:
            return None
        tests.append(f"{is_str}{x} == {g.const(c)}")
    if "enum" in sub:
        options = sub["enum"]
        if not all(type(o) is str for o in options):
            return None
        tests.append(f"{is_str}{x} in {g.const(frozenset(options))}")
    if "minLength" in sub or "maxLength" in sub:
        lo, hi = sub.get("minLength", 0), sub.get("maxLength")
        tests.append(f"{is_str}{lo} <= len({x})" + (f" <= {hi}" if hi is not None else ""))
    if "minimum" in sub or "maximum" in sub:
        if kind not in ("integer", "number"):
            return None
        if "minimum" in sub:
            tests.append(f"{x} >= {g.const(sub['minimum'])}")
        if "maximum" in sub:
            tests.append(f"{x} <= {g.const(sub['maximum'])}")
    if "pattern" in sub:
        rx = re.compile(sub["pattern"])
        tests.append(f"{is_str}{g.const(rx.search)}({x}) is not None")
    if "format" in sub:
        if sub["format"] != "date-time":
            return None
        tests.append(f"_dt({x})")
    return " and ".join(f"({t})" for t in tests) if tests else "True"


def compile_event_check(schema: dict[str, Any]) -> EventCheck | None:
    """The accept path of one event schema, or None if the schema is outside what it can generate.

    The function returns occurred_at in epoch ms when the object certainly
    satisfies the schema, else None.
    """
    top = {"$schema", "$id", "title", "description", "$comment", "examples", "default",
           "type", "required", "properties", "additionalProperties"}
    if set(schema) - top or schema.get("type") != "object" or schema.get("additionalProperties", True) is not True:
        return None
    props: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    if "occurred_at" not in required or props.get("occurred_at", {}).get("format") != "date-time":
        return None
    if any(name not in props for name in required):
        return None
    g = _Gen()
    body = ["def check(v):"]
    for i, (name, sub) in enumerate(props.items()):
        var = f"x{i}"
        if name == "occurred_at":
            # Its check is the event-time parse itself (a canonical date-time the reference accepts).
            rest = {k: v for k, v in sub.items() if k not in ("type", "format")}
            if sub.get("type") not in (None, "string") or _value_test(g, rest, var) != "True":
                return None
            body.append(f"    ts = _ms(v.get({g.const(name)}))")
            body.append("    if ts is None: return None")
            continue
        test = _value_test(g, sub, var)
        if test is None:
            return None
        body.append(f"    {var} = v.get({g.const(name)}, _M)")
        if name in required:
            body.append(f"    if {var} is _M or not ({test}): return None")
        else:
            body.append(f"    if {var} is not _M and not ({test}): return None")
    body.append("    return ts")
    namespace: dict[str, Any] = dict(g.consts)
    # The source is generated from the schema files only, never from input data.
    exec(compile("\n".join(body), f"<fastpath {schema.get('$id', 'schema')}>", "exec"), namespace)
    check: EventCheck = namespace["check"]
    check.__doc__ = "\n".join(body)
    return check
